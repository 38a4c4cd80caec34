"""The global step of the CLIP top-fraction filter: the exact k-th best (clip_score, uid) over every clip part, out of
core, so that each part can then be decided on its own (score above the cut, or equal with a uid not after it).

Design (10^9 rows; the search is curate.selection.kth_best_in, which the audit's sweep uses too). Sorting all scores is
what a single process cannot do; the cut needs only the rows near it.
1. One DuckDB pass over the clip parts counts the scored rows n and takes a t-digest estimate of the scores at
   ranks k - w and k + w (`approx_quantile`, bounded memory).
2. A second pass counts the rows above the upper estimate (`a`) and the rows between the two (`m`). When
   a < k <= a + m, the k-th row lies in that window: only those m rows are sorted (by score desc, uid asc) to find
   it exactly. Otherwise the window is widened (x8) and the step repeats; the last resort is the whole column.
So memory is bounded by the window (about 2w rows; w = n / 1000 + 1000 by default), not by n, and the answer is exact:
the same cut an in-memory sort of all n rows gives (tests/test_global_cut.py checks it against numpy on random
scores with many ties). Measured here (2 cores): see benchmarks/README.md, "Global top-fraction cut".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import duckdb

from curate.selection import kth_best_in
from curate.tables import sql_file_list

WINDOW_FRACTION = 0.001  # half-width of the first window, as a fraction of n
MIN_WINDOW_ROWS = 1000




def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def scored_rows_sql(clip_files: Sequence[str | os.PathLike]) -> str:
    """The scored rows of the clip parts, as a DuckDB relation with columns clip_score (double) and uid."""
    return (f"(SELECT CAST(clip_score AS DOUBLE) AS clip_score, uid FROM read_parquet({sql_file_list(clip_files)}, "
            f"union_by_name = true) WHERE clip_score IS NOT NULL AND isfinite(clip_score))")


def count_scored(clip_files: Sequence[str | os.PathLike]) -> int:
    if not clip_files:
        return 0
    with _connect() as con:
        return int(con.execute(f"SELECT count(*) FROM {scored_rows_sql(clip_files)}").fetchall()[0][0])


def kth_best(clip_files: Sequence[str | os.PathLike], k: int, n: Optional[int] = None) -> Optional[tuple[float, str]]:
    """The k-th best (clip_score, uid) in the order clip_score desc, uid asc (1-based); None when k < 1."""
    if k < 1 or not clip_files:
        return None
    rows = f"(SELECT clip_score AS score, uid FROM {scored_rows_sql(clip_files)})"
    with _connect() as con:
        n = n if n is not None else int(con.execute(f"SELECT count(*) FROM {rows}").fetchall()[0][0])
        return kth_best_in(con, rows, k, n, min_window=MIN_WINDOW_ROWS, window_fraction=WINDOW_FRACTION)


def at_or_above(score: float, uid: Optional[str], cut: Optional[tuple[float, str]]) -> bool:
    """Is (score, uid) at or before the cut in the order clip_score desc, uid asc?"""
    if cut is None:
        return False
    cut_score, cut_uid = cut
    return score > cut_score or (score == cut_score and (uid or "") <= cut_uid)


def part_files(run_dir: str | os.PathLike, rel: str) -> list[Path]:
    folder = Path(run_dir) / rel
    return sorted(p for p in folder.glob("part-*.parquet") if p.is_file()) if folder.is_dir() else []
