"""The ingest stage: an existing URL list (every format img2dataset ingests) -> RUN/pairs/.

Reading the list (formats, pandas JSON orients, index columns) is curate.sources.list_reader's job; this module
turns its rows into pairs rows. Lists are read batch by batch, so a list larger than memory streams through. uid stays
unique in pairs/ without holding every uid: a batch drops its own repeats, then one DuckDB pass over the written
parts finds uids repeated across batches (a hash aggregate that spills to disk, memory bounded whatever the list's
size) and rewrites the few parts that hold a later copy. Like crawl, ingest is a first stage and rewrites pairs/
from scratch.

- URL-only lists: `caption_col: null` (`--caption-col none`), a .txt list, or a list without the default `caption`
  column give pairs with a null caption (counted as `empty_caption`).
- `save_additional_columns` (img2dataset's option of that name, `--save-additional-columns a,b`) names the list's
  other columns to carry into pairs/, after the contract columns; a name that clashes with a contract column is
  stored as `src_<name>`.
- A row with no URL (empty cell, NaN, null) or one that is not an http(s) URL is skipped and counted under its
  reason; a row without caption text is kept with a null caption. URLs are kept whole whatever their length.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from curate.options import IngestOptions
from curate.parts import atomic_write, temp_dir
from curate.sources.list_reader import TXT_URL_COLUMN, ListReader, list_format  # noqa: F401 (list_format: re-export)
from curate.sources.pair_rows import (
    PartWriter, clean_url, clip_caption, is_http_url, normalise_whitespace, remove_parts,
)
from curate.schemas import PAIRS
from curate.tables import compute_uid, list_parts, sql_file_list, sql_string

DROP_REASONS = ("empty_url", "invalid_url", "duplicate_in_list", "malformed_row")
DEFAULT_CAPTION_COL = "caption"


def _require_columns(path: Path, reader: ListReader, names: list[str], flag: str) -> None:
    missing = [n for n in names if n not in reader.columns and n not in reader.index_columns]
    if missing:
        where = f"; the list has columns {reader.columns}" + (
            f" (index columns {reader.index_columns})" if reader.index_columns else "")
        raise ValueError(f"{path}: column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(repr(m) for m in missing)} ({flag}) not found{where}")


class _PairBuilder:
    """Checks each row of a batch and builds the pairs rows: contract columns, then the saved additional columns."""

    def __init__(self, path: Path, url_col: str, caption_col: str | None, extras: list[str], max_caption_chars: int):
        self.path, self.url_col, self.caption_col = path, url_col, caption_col
        self.max_caption_chars = max_caption_chars
        self.extras = [c for c in extras if c not in (url_col, caption_col)]
        self.extra_names = [f"src_{c}" if c in PAIRS.names else c for c in self.extras]

    def _text(self, batch: pa.RecordBatch, name: str, flag: str) -> list:
        column = batch.column(name)
        try:
            return column.cast(pa.string()).to_pylist()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{self.path}: column {name!r} ({flag}) holds {column.type}, which cannot be read as "
                             f"text: {exc}") from exc

    def build(self, batch: pa.RecordBatch, dropped: Counter, noted: Counter) -> pa.Table:
        urls = self._text(batch, self.url_col, "--url-col")
        captions = (self._text(batch, self.caption_col, "--caption-col") if self.caption_col
                    else [None] * batch.num_rows)
        keep, uids, kept_urls, kept_captions, truncated = [], [], [], [], []
        seen: set[str] = set()  # repeats within the batch; across batches: drop_repeated_uids
        for index, (url, caption) in enumerate(zip(urls, captions)):
            url = clean_url(url)
            if not url:
                dropped["empty_url"] += 1
                continue
            if not is_http_url(url):
                dropped["invalid_url"] += 1
                continue
            text, was_cut = clip_caption(normalise_whitespace(caption), self.max_caption_chars)
            uid = compute_uid(url, text)
            if uid in seen:
                dropped["duplicate_in_list"] += 1
                continue
            seen.add(uid)
            if not text:
                noted["empty_caption"] += 1
            keep.append(index)
            uids.append(uid)
            kept_urls.append(url)
            kept_captions.append(text or None)
            truncated.append(was_cut)
        n = len(keep)
        columns = {
            "uid": pa.array(uids, pa.string()),
            "url": pa.array(kept_urls, pa.string()),
            "caption": pa.array(kept_captions, pa.string()),
            "page_url": pa.nulls(n, pa.string()),
            "source": pa.array(["ingest"] * n, pa.string()),
            "caption_source": pa.array(["list"] * n, pa.string()),
            "caption_truncated": pa.array(truncated, pa.bool_()),
        }
        if self.extras:
            taken = pa.Table.from_batches([batch]).select(self.extras).take(pa.array(keep, pa.int64()))
            for name, source_name in zip(self.extra_names, self.extras):
                columns[name] = taken.column(source_name)
        return pa.table(columns)


def ingest(run_dir: Path, options: IngestOptions) -> dict:
    if not options.path:
        raise ValueError("ingest needs the path of a URL list")
    path = Path(options.path)
    if not path.is_file():
        raise FileNotFoundError(f"URL list not found: {path}")
    counts: Counter = Counter()
    reader = ListReader(path, counts, options.url_col)
    url_col = TXT_URL_COLUMN if reader.format == "txt" else options.url_col
    caption_col = None if reader.format == "txt" else options.caption_col
    notes: list[str] = []
    if caption_col == DEFAULT_CAPTION_COL and caption_col not in reader.columns:
        notes.append(f"the list has no {DEFAULT_CAPTION_COL!r} column: captions are null "
                     "(pass --caption-col NAME to read them from another column)")
        caption_col = None
    _require_columns(path, reader, [url_col], "--url-col")
    if caption_col is not None:
        _require_columns(path, reader, [caption_col], "--caption-col")
    extras = list(dict.fromkeys(options.save_additional_columns or []))
    _require_columns(path, reader, extras, "--save-additional-columns")

    run_dir = Path(run_dir)
    remove_parts(run_dir, "pairs")
    builder = _PairBuilder(path, url_col, caption_col, extras, options.max_caption_chars)
    wanted = list(dict.fromkeys([url_col] + ([caption_col] if caption_col else []) + builder.extras))
    writer = PartWriter(run_dir, options.rows_per_part)
    dropped: Counter = Counter({reason: 0 for reason in DROP_REASONS})
    noted: Counter = Counter({"empty_caption": 0})
    rows = 0
    with tqdm(desc="ingest", unit="row", total=reader.total_rows, file=sys.stderr, mininterval=0.5) as progress:
        for batch in reader.batches(wanted):
            rows += batch.num_rows
            writer.add_table(builder.build(batch, dropped, noted))
            progress.update(batch.num_rows)
    writer.close()
    repeated = drop_repeated_uids(run_dir)
    dropped["duplicate_in_list"] += repeated
    if rows + counts["malformed_row"] == 0:
        raise ValueError(f"URL list {path} has no rows")
    dropped["malformed_row"] += counts["malformed_row"]
    result = {"rows": rows + counts["malformed_row"], "pairs": writer.rows_written - repeated,
              "parts": writer.parts_written,
              "dropped": dict(dropped), "empty_caption": noted["empty_caption"], "format": reader.format,
              "caption_column": caption_col, "saved_columns": builder.extra_names}
    if reader.orient:
        result["json_orient"] = reader.orient
    if reader.index_columns:
        result["index_columns_dropped"] = [c for c in reader.index_columns if c not in extras]
    if reader.examples:
        result["malformed_examples"] = reader.examples
    if notes:
        result["notes"] = notes
    return result


DUCKDB_THREADS = min(4, os.cpu_count() or 1)
DUCKDB_MEMORY_PER_THREAD_MB = 32
DROP_BATCH_ROWS = 65_536


def drop_repeated_uids(run_dir: Path) -> int:
    """Remove every later copy of a uid that an earlier batch already wrote (order: part name, row); returns how
    many rows went.

    Bounded memory for a list of any size: a DuckDB aggregate over 64-bit hashes of the uids (16 bytes of state per
    distinct uid, under a fixed memory limit, spilling to a temporary folder in the run) finds the candidate hashes
    seen more than once; only their rows are grouped by the uid itself (so a hash collision drops nothing), and the
    later copies come back sorted by position (a sort that spills too), read in batches and dropped part by part, so
    Python holds at most one part's row numbers."""
    import duckdb

    files = list_parts(run_dir, "pairs")
    if not files:
        return 0
    # position = part index << 32 | row, so "earlier" is one integer comparison and the aggregate state stays small
    indexed = ", ".join(f"({i}, {sql_string(f)})" for i, f in enumerate(files))
    dropped = 0
    with temp_dir(run_dir / "pairs", "duckdb-spill") as spill, duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        con.execute(f"SET threads = {DUCKDB_THREADS}")
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_PER_THREAD_MB * DUCKDB_THREADS}MB'")
        con.execute("SET preserve_insertion_order = false")
        con.execute(f"SET temp_directory = {sql_string(spill)}")
        result = con.execute(
            f"""WITH names(part, filename) AS (VALUES {indexed}),
                    rows AS NOT MATERIALIZED (
                        SELECT uid, hash(uid) AS h, (names.part::BIGINT << 32) | file_row_number AS pos
                        FROM read_parquet({sql_file_list(files)}, filename = true, file_row_number = true) JOIN names USING (filename)),
                    candidates AS (SELECT h FROM rows GROUP BY h HAVING count(*) > 1),
                    firsts AS (SELECT uid, min(pos) AS first FROM rows SEMI JOIN candidates USING (h)
                               GROUP BY uid HAVING count(*) > 1)
                SELECT pos FROM rows SEMI JOIN candidates USING (h) JOIN firsts USING (uid)
                WHERE pos <> first ORDER BY pos""")
        current, later_rows = None, set()
        while batch := result.fetchmany(DROP_BATCH_ROWS):
            for (pos,) in batch:
                part, row = pos >> 32, pos & 0xFFFFFFFF
                if part != current:
                    if current is not None:
                        _drop_rows(files[current], later_rows)
                    current, later_rows = part, set()
                later_rows.add(row)
                dropped += 1
        if current is not None:
            _drop_rows(files[current], later_rows)
    return dropped


def _drop_rows(path: Path, rows: set[int]) -> None:
    table = pq.read_table(path)
    keep = [i for i in range(table.num_rows) if i not in rows]
    atomic_write(table.take(pa.array(keep, pa.int64())).replace_schema_metadata(None), path)
