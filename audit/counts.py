"""Cell counts of a run, computed by DuckDB over the Parquet parts; the audit's analyses work on these counts only.

Design for 10^9 rows: no analysis needs rows, only how many rows fall into each cell. For an attribute, the cell of
a row is (its group, its pass_<step> bits, kept); one GROUP BY over decisions LEFT JOIN signals/groups gives every
cell's count (at most groups x 2^(steps+1) cells, independent of the run's size), and every rate of composition and
filter impact, marginal or sequential, is a sum over cells. DuckDB scans the parts in parallel, hash-joins on uid
and spills to disk beyond its memory limit, so the audit's memory is bounded by that limit plus the cell tables.
The counts of disjoint sets of parts add up (`merge_cubes`), so an engine may also count part by part and merge.

The threshold sweep's counts are one more GROUP BY over clip LEFT JOIN groups with one filtered count per fraction,
after the boundaries of every fraction came from one ranking (curate.selection, the one top-fraction rule).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Iterable

import duckdb
import numpy as np
import pandas as pd

from audit.frame import MISSING_GROUP
from curate import layout
from curate.tables import sql_file_list

DEFAULT_MEMORY_LIMIT = "2GB"


def quote(name: str) -> str:
    """A DuckDB identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


_q = quote




def connect(run_dir: str | os.PathLike, memory_limit: str = DEFAULT_MEMORY_LIMIT,
            tables: Iterable[str] = ("decisions", "groups", "perceived", "clip", "pairs")) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per table of the run (every part of it), memory bounded, spilling to a
    temporary folder."""
    con = duckdb.connect()
    con.execute(f"set memory_limit = '{memory_limit}'")
    con.execute(f"set temp_directory = '{tempfile.gettempdir()}/fairsift-duckdb-{os.getpid()}'")
    views = layout.view_files(run_dir)
    for name in tables:
        if name in views:
            con.execute(f"create view {name} as select * from read_parquet({sql_file_list(views[name])}, "
                        "union_by_name = true)")
    return con


def columns_of(con, view: str) -> list[str]:
    return [r[0] for r in con.execute(f"describe {view}").fetchall()]


def check_unique_uids(con, view: str, what: str) -> None:
    """A uid twice in decisions or groups would count its row twice: an error naming the uid."""
    dup = con.execute(f"select uid from {view} group by uid having count(*) > 1 limit 1").fetchall()
    if dup:
        raise ValueError(f"{what} holds uid {dup[0][0]} more than once")


@dataclass
class Cube:
    """Row counts per (group, pass bits, kept) of one attribute: `bits` is (cells, steps) bool, in step order."""

    attribute: str
    steps: list[str]
    groups: np.ndarray  # (cells,) group label of each cell
    bits: np.ndarray  # (cells, steps) bool
    kept: np.ndarray  # (cells,) bool
    n: np.ndarray  # (cells,) int64

    def labels(self) -> np.ndarray:
        return np.array(sorted(set(self.groups.tolist())), dtype=object)

    def per_group(self, labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Rows per group among the cells in `mask`, in the order of `labels`."""
        index = {g: i for i, g in enumerate(labels)}
        codes = np.array([index[g] for g in self.groups], dtype=np.int64)
        return np.bincount(codes[mask], weights=self.n[mask], minlength=len(labels)).astype(np.int64)

    def step_bit(self, step: str) -> np.ndarray:
        return self.bits[:, self.steps.index(step)]


def cube_from_frame(frame: pd.DataFrame, steps: list[str], attribute: str) -> Cube:
    """The cube of an in-memory frame (pass_<step> booleans, kept, the attribute): for tests and small inputs."""
    labels = frame[attribute].astype("object").where(frame[attribute].notna(), MISSING_GROUP).map(str)
    keys = {"group": labels.to_numpy(dtype=object)}
    for i, step in enumerate(steps):
        keys[f"b{i}"] = frame[f"pass_{step}"].fillna(False).astype(bool).to_numpy()
    keys["kept"] = (frame["kept"].fillna(False).astype(bool).to_numpy() if "kept" in frame
                    else np.logical_and.reduce([keys[f"b{i}"] for i in range(len(steps))]) if steps
                    else np.ones(len(frame), dtype=bool))
    counted = pd.DataFrame(keys).value_counts(sort=False).reset_index(name="n")
    return _cube(counted, steps, attribute)


def _cube(counted: pd.DataFrame, steps: list[str], attribute: str) -> Cube:
    counted = counted.sort_values(list(counted.columns[:-1]), kind="stable").reset_index(drop=True)
    bits = (counted[[f"b{i}" for i in range(len(steps))]].to_numpy(dtype=bool) if steps
            else np.zeros((len(counted), 0), dtype=bool))
    return Cube(attribute=attribute, steps=list(steps), groups=counted["group"].to_numpy(dtype=object),
                bits=bits, kept=counted["kept"].to_numpy(dtype=bool), n=counted["n"].to_numpy(dtype=np.int64))


def cube_from_sql(con, steps: list[str], attribute: str, decisions: str = "decisions",
                  groups: str = "groups") -> Cube:
    """The cube of one attribute by one GROUP BY over decisions LEFT JOIN groups (every part of both)."""
    bits = [f"coalesce(d.{_q('pass_' + s)}, false) as b{i}" for i, s in enumerate(steps)]
    select = ", ".join([f"coalesce(cast(g.{_q(attribute)} as varchar), '{MISSING_GROUP}') as \"group\"", *bits,
                        "coalesce(d.kept, false) as kept", "count(*)::BIGINT as n"])
    counted = con.execute(f"select {select} from {decisions} d left join {groups} g using (uid) group by all").df()
    return _cube(counted, steps, attribute)


def merge_cubes(cubes: list[Cube]) -> Cube:
    """Sum the cubes of disjoint sets of rows (e.g. one per part) of the same attribute and steps."""
    first = cubes[0]
    frames = []
    for c in cubes:
        if c.attribute != first.attribute or c.steps != first.steps:
            raise ValueError("cubes of different attributes or steps cannot be merged")
        frame = pd.DataFrame({"group": c.groups, **{f"b{i}": c.bits[:, i] for i in range(len(c.steps))},
                              "kept": c.kept, "n": c.n})
        frames.append(frame)
    keys = ["group", *[f"b{i}" for i in range(len(first.steps))], "kept"]
    summed = pd.concat(frames).groupby(keys, sort=True, as_index=False)["n"].sum()
    return _cube(summed, first.steps, first.attribute)


def pair_counts_sql(con, left_sql: str, right_sql: str, where: str = "true", decisions: str = "decisions",
                    groups: str = "groups") -> pd.DataFrame:
    """Counts of (left, right) value pairs over decisions LEFT JOIN groups, e.g. ccTLD country x caption country."""
    return con.execute(f"select {left_sql} as a, {right_sql} as b, count(*)::BIGINT as n "
                       f"from {decisions} d left join {groups} g using (uid) where {where} group by all").df()


def sweep_counts_sql(con, attribute: str, boundaries: list, clip: str = "clip",
                     groups: str = "groups") -> pd.DataFrame:
    """Per group: scored rows n and, for every boundary (curate.selection.Boundary), the rows it keeps (k0, k1...)."""
    filters = []
    params: list = []
    for i, b in enumerate(boundaries):
        if b.threshold is None:
            filters.append(f"0::BIGINT as k{i}")
        else:
            filters.append(f"count(*) filter (where s.score > ? or (s.score = ? and s.uid <= ?))::BIGINT as k{i}")
            params += [b.threshold, b.threshold, b.uid]
    select = ", ".join([f"coalesce(cast(g.{_q(attribute)} as varchar), '{MISSING_GROUP}') as \"group\"",
                        "count(*)::BIGINT as n", *filters])
    return con.execute(
        f"select {select} from (select uid, clip_score::DOUBLE as score from {clip} where clip_score is not null "
        f"and isfinite(clip_score)) s left join {groups} g using (uid) group by 1 order by 1", params).df()


def views(con) -> set[str]:
    return {r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()}


def table_schema(run_dir, table: str):
    """The Arrow schema of a table of the run (its parts unified by name), or None when the table is absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = layout.view_files(run_dir).get(table)
    if not files:
        return None
    return pa.unify_schemas([pq.read_schema(f).remove_metadata() for f in files])
