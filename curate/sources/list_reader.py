"""Reading URL lists in every format img2dataset ingests, as Arrow record batches of the columns asked for.

Formats by file name: .parquet, .csv, .tsv, .jsonl/.ndjson, .json, .txt (one URL per line); .gz versions of the
text formats. Parquet, CSV/TSV, JSON Lines and TXT stream batch by batch; a .json document is read whole.

- A .json document may be any of pandas' `DataFrame.to_json` orients: records (`[{col: v}]`, the one img2dataset
  documents), columns (`{col: {index: v}}`, pandas' default), index (`{index: {col: v}}`), split
  (`{"columns", "index", "data"}`), values (`[[v, ...]]`, columns named "0", "1", ...) and table
  (`{"schema", "data"}`). Columns vs index orient is told apart by where the URL column's name appears. A .json file
  holding JSON Lines is read as JSON Lines.
- Index columns are not data: pandas' `__index_level_N__` and the index columns named in a Parquet file's pandas
  metadata, a CSV's unnamed first column (`df.to_csv()` writes the index under an empty name; pandas reads it back as
  `Unnamed: 0`), and the index of every JSON orient. They are dropped unless asked for by name.
- Values of the text formats come back as text (a JSON number 640 as "640", an object as its JSON text), so every
  batch of a list has the same column types; Parquet keeps its own types.
- A malformed CSV row or JSON line is skipped and counted (`malformed_row`), with its line number in the first few
  `malformed_examples`; a file that cannot be read at all is an error naming the file and, for JSON, line and column.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

BATCH_ROWS = 8_192
BLOCK_BYTES = 4 << 20
TXT_URL_COLUMN = "url"
MAX_EXAMPLES = 5
# pandas writes its index into Parquet under this name; it is not data of the list
PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")
CSV_INDEX = re.compile(r"^(|Unnamed: \d+)$")
ORIENTS = ("records", "columns", "index", "split", "values", "table")


def list_format(path: Path) -> str:
    name = path.name.lower()
    name = name[:-3] if name.endswith(".gz") else name
    for suffix, fmt in ((".parquet", "parquet"), (".pq", "parquet"), (".csv", "csv"), (".tsv", "tsv"),
                        (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "json"), (".txt", "txt")):
        if name.endswith(suffix):
            return fmt
    raise ValueError(f"{path}: unsupported URL list format; expected .parquet, .csv, .tsv, .jsonl, .json or .txt "
                     "(.gz allowed for the text formats)")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _no_lone_surrogates(text: str) -> str:
    """JSON may escape half a surrogate pair ("\\ud800"; json.loads joins whole pairs), which no UTF-8 text can
    hold: each becomes U+FFFD rather than failing the whole list."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def as_text(value: Any) -> Optional[str]:
    """A JSON value as text: strings as they are, numbers and booleans as JSON writes them, objects as JSON."""
    if value is None:
        return value
    if isinstance(value, str):
        return _no_lone_surrogates(value)
    if isinstance(value, float) and value != value:  # NaN
        return None
    return json.dumps(value, ensure_ascii=False) if isinstance(value, (dict, list, bool)) else str(value)


class ListReader:
    """The columns of a URL list (index columns set apart) and its rows as batches of the columns asked for."""

    def __init__(self, path: Path, counts: Counter, url_col: str = "url"):
        self.path, self.counts, self.url_col = Path(path), counts, url_col
        self.format = list_format(self.path)
        self.total_rows: Optional[int] = None
        self.orient: Optional[str] = None
        self.examples: list[str] = []
        self._records: Optional[list[dict]] = None  # a .json document, read whole
        self._lines = False  # a .json file holding JSON Lines
        try:
            self.columns, self.index_columns = self._read_columns()
        except (pa.ArrowInvalid, OSError) as exc:
            raise ValueError(f"{self.path}: cannot read the URL list as {self.format}: {exc}") from exc

    # ---- columns ----
    def _read_columns(self) -> tuple[list[str], list[str]]:
        if self.format == "parquet":
            parquet = pq.ParquetFile(self.path)
            self.total_rows = parquet.metadata.num_rows
            names = parquet.schema_arrow.names
            index = [n for n in names if PANDAS_INDEX.match(n) or n in _pandas_index_columns(parquet.schema_arrow)]
            return [n for n in names if n not in index], index
        if self.format in ("csv", "tsv"):
            with self._open_csv(None) as reader:
                names = reader.schema.names
            # pandas writes its unnamed index first, under an empty name
            index = [names[0]] if names and CSV_INDEX.match(names[0]) and len(names) > 1 else []
            return [n for n in names if n not in index], index
        if self.format == "txt":
            return [TXT_URL_COLUMN], []
        if self.format == "json":
            self._records = self._read_json_document()
            if self._records is not None:
                return _keys(self._records), []
            self._lines = True
        first = next(self._json_line_rows(count=False), [])
        return _keys(first), []

    # ---- batches ----
    def batches(self, wanted: list[str]) -> Iterator[pa.RecordBatch]:
        """Record batches holding exactly `wanted` columns (a column a JSON row lacks is null there)."""
        if self.format == "parquet":
            try:
                yield from pq.ParquetFile(self.path).iter_batches(batch_size=BATCH_ROWS, columns=wanted)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ValueError(f"{self.path}: cannot read the URL list as parquet: {exc}") from exc
        elif self.format in ("csv", "tsv"):
            try:
                with self._open_csv(wanted) as reader:
                    yield from reader
            except pa.ArrowInvalid as exc:
                raise ValueError(f"{self.path}: cannot read the URL list as {self.format}: {exc}") from exc
        elif self.format == "txt":
            yield from self._txt_batches()
        elif self._records is not None:
            for start in range(0, len(self._records), BATCH_ROWS):
                yield _text_batch(self._records[start:start + BATCH_ROWS], wanted)
        else:
            for rows in self._json_line_rows(count=True):
                yield _text_batch(rows, wanted)

    def _open_csv(self, wanted: Optional[list[str]]):
        def skip_malformed(row) -> str:
            if wanted is not None:  # the first open only reads the header
                where = f"line {row.number}" if row.number is not None else "row"  # Arrow may not know the line
                self._malformed(f"{where} {row.text[:80]!r} has {row.actual_columns} fields, "
                                f"the header {row.expected_columns}")
            return "skip"

        convert = pa_csv.ConvertOptions(
            # every column as text: types guessed from the first block can fail on a later one
            column_types={name: pa.string() for name in wanted or []}, include_columns=wanted,
            strings_can_be_null=True, include_missing_columns=False)
        return pa_csv.open_csv(
            pa.input_stream(str(self.path), compression="detect"),
            read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter="\t" if self.format == "tsv" else ",",
                                              invalid_row_handler=skip_malformed, newlines_in_values=True),
            convert_options=convert,
        )

    def _malformed(self, message: str) -> None:
        self.counts["malformed_row"] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{self.path.name} {message}")

    def _txt_batches(self) -> Iterator[pa.RecordBatch]:
        with pa.input_stream(str(self.path), compression="detect") as raw:
            urls: list[str] = []
            for line in _lines(raw):
                urls.append(line.strip())
                if len(urls) == BATCH_ROWS:
                    yield pa.record_batch({TXT_URL_COLUMN: urls})
                    urls = []
            if urls:
                yield pa.record_batch({TXT_URL_COLUMN: urls})

    def _json_line_rows(self, count: bool) -> Iterator[list[dict]]:
        rows: list[dict] = []
        with pa.input_stream(str(self.path), compression="detect") as raw:
            for number, line in enumerate(_lines(raw), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    row, problem = None, f"is not JSON ({exc.msg} at column {exc.colno})"
                except RecursionError:
                    row, problem = None, "is nested too deeply to read"
                else:
                    if isinstance(row, str):  # a JSON Lines list of plain URLs
                        row = {self.url_col: row}
                    problem = None if isinstance(row, dict) else f"is a JSON {type(row).__name__}, not an object"
                if problem is not None:
                    if count:
                        self._malformed(f"line {number} {problem}")
                    continue
                rows.append(row)
                if len(rows) == BATCH_ROWS:
                    yield rows
                    rows = []
        if rows:
            yield rows

    def _read_json_document(self) -> Optional[list[dict]]:
        """The rows of a .json document in any pandas orient; None when the file holds JSON Lines."""
        with pa.input_stream(str(self.path), compression="detect") as raw:
            text = raw.read().decode("utf-8", errors="replace")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # one JSON value per line
                return None
            raise ValueError(f"{self.path}: not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
        except RecursionError:
            raise ValueError(f"{self.path}: the JSON is nested too deeply to be a URL list") from None
        self.orient, rows = json_rows(data, self.url_col, self.path)
        self.total_rows = len(rows)
        return rows


def json_rows(data: Any, url_col: str, path: Path) -> tuple[str, list[dict]]:
    """(orient, rows) of a JSON document written by pandas' `DataFrame.to_json` in any orient (index dropped)."""
    if isinstance(data, list):
        if all(isinstance(r, dict) for r in data):
            return "records", data
        if all(isinstance(r, list) for r in data):
            return "values", [{str(i): v for i, v in enumerate(r)} for r in data]
        if all(isinstance(r, str) for r in data):  # a JSON array of plain URLs
            return "urls", [{url_col: r} for r in data]
        raise ValueError(f"{path}: a JSON array URL list must hold objects (records) or arrays (values); "
                         f"row {next(i for i, r in enumerate(data) if not isinstance(r, (dict, list)))} is neither")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a JSON URL list must be an array or an object, not a {type(data).__name__}")
    if isinstance(data.get("schema"), dict) and isinstance(data.get("data"), list):
        index = set(data["schema"].get("primaryKey") or [])
        return "table", [{k: v for k, v in r.items() if k not in index} for r in data["data"]]
    if isinstance(data.get("columns"), list) and isinstance(data.get("data"), list):
        columns = [str(c) for c in data["columns"]]
        return "split", [dict(zip(columns, r)) for r in data["data"]]
    inner = [v for v in data.values() if isinstance(v, dict)]
    if len(inner) != len(data):
        if all(isinstance(v, list) for v in data.values()):  # {col: [values]}: not a pandas orient, but plain
            n = max((len(v) for v in data.values()), default=0)
            return "columns", [{c: (v[i] if i < len(v) else None) for c, v in data.items()} for i in range(n)]
        raise ValueError(f"{path}: cannot tell the JSON layout; expected one of pandas' orients {', '.join(ORIENTS)}")
    if url_col in data:  # {col: {index: value}}: pandas' default
        labels = list(dict.fromkeys(label for column in inner for label in column))
        return "columns", [{c: data[c].get(label) for c in data} for label in labels]
    if any(url_col in row for row in inner):  # {index: {col: value}}
        return "index", inner
    raise ValueError(f"{path}: column {url_col!r} (--url-col) is neither a key of the JSON object (columns orient) nor "
                     f"of its values (index orient); the keys are {list(data)[:10]}")


def _pandas_index_columns(schema: pa.Schema) -> list[str]:
    meta = (schema.metadata or {}).get(b"pandas")
    if not meta:
        return []
    try:
        return [c for c in json.loads(meta).get("index_columns", []) if isinstance(c, str)]
    except (ValueError, AttributeError):
        return []


def _keys(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _text_batch(rows: list[dict], wanted: list[str]) -> pa.RecordBatch:
    return pa.record_batch({name: pa.array([as_text(r.get(name)) for r in rows], pa.string()) for name in wanted})


def _lines(raw) -> Iterator[str]:
    """Lines of a binary stream, decoded as UTF-8 (bad bytes replaced), read in blocks."""
    rest = b""
    while block := raw.read(BLOCK_BYTES):
        *complete, rest = (rest + block).split(b"\n")
        for line in complete:
            yield line.decode("utf-8", errors="replace").rstrip("\r")
    if rest.strip():
        yield rest.decode("utf-8", errors="replace").rstrip("\r")
