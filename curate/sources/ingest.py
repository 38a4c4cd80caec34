"""The ingest stage: an existing URL list (img2dataset's formats) -> RUN/pairs/.

Formats by file name: .parquet, .csv, .tsv, .jsonl/.ndjson, .json (a JSON array, or JSON lines), .txt (one URL per
line); .gz versions of the text formats too. Lists are read batch by batch, so a list larger than memory streams
through; only the uids seen so far are held, to keep uid unique in pairs/.
Like crawl, ingest is a first stage and rewrites pairs/ from scratch.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from tqdm import tqdm

from curate.options import IngestOptions
from curate.sources.pair_rows import PartWriter, clean_url, clip_caption, is_http_url, normalise_whitespace, remove_parts
from curate.schemas import PAIRS
from curate.tables import compute_uid

BATCH_ROWS = 65_536
_BLOCK_BYTES = 4 << 20
# pandas writes its index into Parquet under this name; it is not data of the list
_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")
TXT_URL_COLUMN = "url"
DROP_REASONS = ("empty_url", "invalid_url", "duplicate_in_list", "malformed_row")


def list_format(path: Path) -> str:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    for suffix, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".tsv", "tsv"),
                        (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".txt", "txt")):
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"{path}: unsupported URL list format; expected .parquet, .csv, .tsv, .jsonl, .json or .txt "
                     "(.gz allowed for the text formats)")


class ListReader:
    """Column names of a list (known before any row is read) and its rows as Arrow record batches."""

    def __init__(self, path: Path, counts: Counter):
        self.path, self.counts, self.format = path, counts, list_format(path)
        self.total_rows: int | None = None
        self.columns = self._column_names()

    def _column_names(self) -> list[str]:
        try:
            return self._read_column_names()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{self.path}: cannot read the URL list as {self.format}: {exc}") from exc

    def _read_column_names(self) -> list[str]:
        if self.format == "parquet":
            parquet = pq.ParquetFile(self.path)
            self.total_rows = parquet.metadata.num_rows
            return parquet.schema_arrow.names
        if self.format in ("csv", "tsv"):
            with self._open_csv(count_malformed=False) as reader:
                return reader.schema.names
        if self.format == "txt":
            return [TXT_URL_COLUMN]
        first = next(self.batches(), None)
        return first.schema.names if first is not None else []

    def _parse_options(self, count_malformed: bool) -> pa_csv.ParseOptions:
        def skip_malformed(row) -> str:
            if count_malformed:
                self.counts["malformed_row"] += 1
            return "skip"

        return pa_csv.ParseOptions(delimiter="\t" if self.format == "tsv" else ",", invalid_row_handler=skip_malformed)

    def _open_csv(self, column_types: dict | None = None, count_malformed: bool = True):
        return pa_csv.open_csv(
            pa.input_stream(str(self.path), compression="detect"),
            read_options=pa_csv.ReadOptions(block_size=_BLOCK_BYTES),
            parse_options=self._parse_options(count_malformed),
            # every column as text: types guessed from the first block can fail on a later one
            convert_options=pa_csv.ConvertOptions(column_types=column_types, strings_can_be_null=True),
        )

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            if self.format == "parquet":
                yield from pq.ParquetFile(self.path).iter_batches(batch_size=BATCH_ROWS)
            elif self.format in ("csv", "tsv"):
                with self._open_csv({name: pa.string() for name in self.columns}) as reader:
                    yield from reader
            elif self.format == "txt":
                yield from self._txt_batches()
            elif self.format == "json" and self._is_json_array():
                yield from pa.Table.from_pylist(self._json_array()).to_batches(BATCH_ROWS)
            else:
                with pa_json.open_json(pa.input_stream(str(self.path), compression="detect"),
                                       read_options=pa_json.ReadOptions(block_size=_BLOCK_BYTES)) as reader:
                    yield from reader
        except (pa.ArrowInvalid, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{self.path}: cannot read the URL list as {self.format}: {exc}") from exc

    def _txt_batches(self) -> Iterator[pa.RecordBatch]:
        with pa.input_stream(str(self.path), compression="detect") as raw:
            urls: list[str] = []
            for line in _lines(raw):
                urls.append(line)
                if len(urls) == BATCH_ROWS:
                    yield pa.record_batch({TXT_URL_COLUMN: urls})
                    urls = []
            if urls:
                yield pa.record_batch({TXT_URL_COLUMN: urls})

    def _is_json_array(self) -> bool:
        with pa.input_stream(str(self.path), compression="detect") as raw:
            return raw.read(1024).lstrip()[:1] == b"["

    def _json_array(self) -> list[dict]:
        with pa.input_stream(str(self.path), compression="detect") as raw:
            rows = json.loads(raw.read())
        if not all(isinstance(row, dict) for row in rows):
            raise ValueError(f"{self.path}: a .json URL list must be an array of objects")
        return rows


def _lines(raw) -> Iterator[str]:
    """Lines of a binary stream, decoded as UTF-8 (bad bytes replaced), read in blocks."""
    rest = b""
    while block := raw.read(_BLOCK_BYTES):
        *complete, rest = (rest + block).split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace").strip()
    if rest.strip():
        yield rest.decode("utf-8", errors="replace").strip()


def _require_column(path: Path, columns: list[str], name: str, flag: str) -> None:
    if name not in columns:
        raise ValueError(f"{path}: column {name!r} ({flag}) not found; the list has columns {columns}")


class _PairBuilder:
    """Checks each row of a batch and builds the pairs rows: contract columns, then the list's other columns."""

    def __init__(self, url_col: str, caption_col: str | None, columns: list[str], max_caption_chars: int):
        self.url_col, self.caption_col, self.max_caption_chars = url_col, caption_col, max_caption_chars
        self.extras = [c for c in columns if c not in (url_col, caption_col) and not _PANDAS_INDEX.match(c)]
        self.extra_names = [f"src_{c}" if c in PAIRS.names else c for c in self.extras]
        self.seen: set[str] = set()

    def build(self, batch: pa.RecordBatch, dropped: Counter) -> pa.Table:
        urls = batch.column(self.url_col).cast(pa.string()).to_pylist()
        captions = (batch.column(self.caption_col).cast(pa.string()).to_pylist() if self.caption_col
                    else [None] * batch.num_rows)
        keep, uids, kept_urls, kept_captions, truncated = [], [], [], [], []
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
            if uid in self.seen:
                dropped["duplicate_in_list"] += 1
                continue
            self.seen.add(uid)
            keep.append(index)
            uids.append(uid)
            kept_urls.append(url)
            kept_captions.append(text)
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
        taken = batch.select(self.extras).take(pa.array(keep, pa.int64())) if self.extras else None
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
    reader = ListReader(path, counts)
    url_col = TXT_URL_COLUMN if reader.format == "txt" else options.url_col
    caption_col = None if reader.format == "txt" else options.caption_col
    _require_column(path, reader.columns, url_col, "--url-col")
    if caption_col is not None:
        _require_column(path, reader.columns, caption_col, "--caption-col")

    run_dir = Path(run_dir)
    remove_parts(run_dir, "pairs")
    builder = _PairBuilder(url_col, caption_col, reader.columns, options.max_caption_chars)
    writer = PartWriter(run_dir, options.rows_per_part)
    dropped: Counter = Counter({reason: 0 for reason in DROP_REASONS})
    rows = 0
    with tqdm(desc="ingest", unit="row", total=reader.total_rows, file=sys.stderr, mininterval=0.5) as progress:
        for batch in reader.batches():
            rows += batch.num_rows
            writer.add_table(builder.build(batch, dropped))
            progress.update(batch.num_rows)
    writer.close()
    if rows + counts["malformed_row"] == 0:
        raise ValueError(f"URL list {path} has no rows")
    dropped["malformed_row"] += counts["malformed_row"]
    return {"rows": rows + counts["malformed_row"], "pairs": writer.rows_written, "parts": writer.parts_written,
            "dropped": dict(dropped), "format": reader.format}
