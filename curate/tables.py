"""The run folder's tables: where each lives, how a part is written safely, how a table is read back.

A run is a folder of uid-keyed Parquet tables (see ARCHITECTURE.md). Every stage writes through `write_part`, which
writes to a temporary name and renames, so a part file that exists is complete and a killed stage resumes by
skipping the parts already present.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from curate import parts
from curate.layout import CREATED_BY, DECISION_PARTS_DIR, TABLE_PATHS, table_path  # noqa: F401  (re-exported)


class MissingTableError(FileNotFoundError):
    """A stage needs a table that an earlier stage has not written yet."""

    def __init__(self, run_dir: Path, table: str):
        self.table = table
        path = Path(run_dir) / TABLE_PATHS.get(table, table)
        super().__init__(f"table '{table}' not found at {path}; create it with `{CREATED_BY.get(table, '?')}`")


def compute_uid(url: str, caption: str | None) -> str:
    """Stable id of a pair: the same url and caption give the same uid in every run and on every machine."""
    h = hashlib.blake2b(digest_size=16)
    h.update((url or "").encode("utf-8", "surrogatepass"))
    h.update(b"\x00")
    h.update((caption or "").encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def part_path(run_dir: str | os.PathLike, table: str, part: str | int) -> Path:
    name = part_name(part) if isinstance(part, int) else part
    return table_path(run_dir, table) / name


def list_parts(run_dir: str | os.PathLike, table: str) -> list[Path]:
    """Completed part files of a folder table, in name order (temporary files are never listed)."""
    folder = table_path(run_dir, table)
    if folder.suffix == ".parquet":
        return [folder] if folder.exists() else []
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("part-*.parquet") if p.is_file())


def table_exists(run_dir: str | os.PathLike, table: str) -> bool:
    return bool(list_parts(run_dir, table))


def atomic_write_parquet(table: pa.Table, path: str | os.PathLike, lineage: dict | None = None, **kwargs) -> Path:
    """Write to a hidden temporary file in the same folder, then rename: readers never see half a file. The footer
    records the part's content digest and, when given, its lineage (curate.parts)."""
    return parts.atomic_write(table, path, lineage, **kwargs)


def write_part(run_dir: str | os.PathLike, table_name: str, part: str | int, table: pa.Table) -> Path:
    path = table_path(run_dir, table_name)
    if path.suffix != ".parquet":
        path = part_path(run_dir, table_name, part)
    return atomic_write_parquet(table, path)


def write_table(run_dir: str | os.PathLike, table_name: str, table: pa.Table) -> Path:
    """Write a whole table: the single file for file tables, or part-00000 for folder tables (old parts removed)."""
    path = table_path(run_dir, table_name)
    if path.suffix == ".parquet":
        return atomic_write_parquet(table, path)
    written = write_part(run_dir, table_name, 0, table)
    for old in list_parts(run_dir, table_name):
        if old != written:
            old.unlink()
    return written


def read_table(
    run_dir: str | os.PathLike, table: str, columns: Iterable[str] | None = None, *, required: bool = True
) -> pa.Table | None:
    """All parts of a table as one Arrow table; MissingTableError (or None) when no part exists."""
    parts = list_parts(run_dir, table)
    if not parts:
        if required:
            raise MissingTableError(Path(run_dir), table)
        return None
    cols = list(columns) if columns is not None else None
    tables = [pq.read_table(p, columns=cols) for p in parts]
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def read_part(path: str | os.PathLike, columns: Iterable[str] | None = None) -> pa.Table:
    return pq.read_table(path, columns=list(columns) if columns is not None else None)


def part_matches(path: str | os.PathLike, expected_uids) -> bool:
    """Does an existing output part hold exactly these uids, in this order? An input part rewritten since (a new
    crawl, a rebuilt download) leaves outputs whose uids no longer match: those parts are redone, not skipped."""
    path = Path(path)
    if not path.is_file():
        return False
    got = pq.read_table(path, columns=["uid"]).column("uid").combine_chunks()
    expected = expected_uids.combine_chunks() if isinstance(expected_uids, pa.ChunkedArray) else pa.array(expected_uids)
    return got.cast(pa.string()).equals(expected.cast(pa.string()))


def sql_string(text: str | os.PathLike) -> str:
    """A DuckDB string literal (a path, a setting's value), quoted."""
    return "'" + str(text).replace("'", "''") + "'"


def sql_file_list(files: Iterable[str | os.PathLike]) -> str:
    """A DuckDB list literal of file paths, for read_parquet([...])."""
    return "[" + ", ".join(sql_string(f) for f in files) + "]"


def decision_parts(run_dir: str | os.PathLike) -> list[Path] | None:
    """The filter's per-part decisions that decisions.parquet merges, when every one is present and unchanged since
    the merge (its lineage records their digests); None for a decisions table not written part by part, or stale."""
    run_dir = Path(run_dir)
    lineage = parts.read_lineage(table_path(run_dir, "decisions"))
    recorded = (lineage or {}).get("inputs", {})
    if not recorded or not all(rel.startswith(DECISION_PARTS_DIR + "/") for rel in recorded):
        return None
    if not all((run_dir / rel).is_file() and parts.part_digest(run_dir / rel) == digest
               for rel, digest in recorded.items()):
        return None
    return sorted(run_dir / rel for rel in recorded)
