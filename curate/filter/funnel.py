"""The funnel: how many rows are left after each step, from pairs through decisions to the exported corpus."""

from __future__ import annotations

from pathlib import Path

import duckdb

from curate.tables import list_parts


def _count(con: duckdb.DuckDBPyConnection, paths: list[Path], where: str = "") -> int:
    query = f"select count(*) from read_parquet(?, union_by_name=true) {where}"
    return int(con.execute(query, [[str(p) for p in paths]]).fetchall()[0][0])


def funnel_rows(run_dir: str | Path) -> list[tuple[str, int, str]]:
    """(step, rows left after it, note), in pipeline order; steps come from decisions' pass_<step> columns."""
    con = duckdb.connect()
    rows: list[tuple[str, int, str]] = []
    pairs = list_parts(run_dir, "pairs")
    if pairs:
        rows.append(("pairs", _count(con, pairs), "candidate (image URL, caption) pairs"))
    decisions = list_parts(run_dir, "decisions")
    if decisions:
        cols = [r[0] for r in con.execute("describe select * from read_parquet(?)", [str(decisions[0])]).fetchall()]
        conds: list[str] = []
        for col in (c for c in cols if c.startswith("pass_")):
            conds.append(f'coalesce("{col}", false)')
            rows.append((col.removeprefix("pass_"), _count(con, decisions, "where " + " and ".join(conds)),
                         "left after this step"))
    corpus = list_parts(run_dir, "corpus")
    if corpus:
        rows.append(("corpus", _count(con, corpus), "exported rows"))
    return rows
