"""`fairsift sql`: DuckDB over a run folder, every table a view named after it, read-only.

Views read the Parquet part files lazily (read_parquet with union_by_name, so parts written by different versions
of a stage still line up), so a query that does not select `image` never reads image bytes.
Views: pairs, shards, clip, embeddings, phash, dedup, lang, groups, perceived, decisions, corpus (those that exist),
audit_<name> for each audit/<name>.parquet and probe_<name> for each probes/<name>.parquet.

Read-only, two locks deep: only SELECT statements run (EXPLAIN, DESCRIBE, SUMMARIZE, SHOW and VALUES are SELECTs
too), so no COPY, ATTACH, INSTALL, LOAD, SET, CREATE or INSERT; and once the views exist DuckDB's external access is
switched off, with the run's Parquet files as the only allowed paths and the configuration locked, so no other
file or URL can be read even through a table function. Part files that resolve outside the run folder (a symlink
out of it) are refused.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import json
import math
import re
from pathlib import Path
from typing import Any, TextIO

import duckdb
import pyarrow as pa

from curate.layout import view_files

FORMATS = ("table", "csv", "json", "jsonl")
ALLOWED_STATEMENTS = {duckdb.StatementType.SELECT}
_EXPLAIN = re.compile(r"^\s*explain(\s+analyze)?\b", re.IGNORECASE)


class SqlError(Exception):
    """A query that DuckDB refused, or a run folder that is not there; the message is meant for the terminal."""


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_view(con: duckdb.DuckDBPyConnection, name: str, files: list[Path]) -> None:
    file_list = "[" + ", ".join(_quote_literal(str(f)) for f in files) + "]"
    con.execute(f"CREATE VIEW {_quote_identifier(name)} AS "
                f"SELECT * FROM read_parquet({file_list}, union_by_name = true)")


def view_names(run_dir: str | Path) -> dict[str, list[Path]]:
    """view name -> the Parquet files behind it (resolved), for every table the run folder has.

    A file whose real path is outside the run folder (a symlink pointing out) is an error, not a silent read."""
    root = Path(run_dir).resolve()
    views: dict[str, list[Path]] = {}
    for name, files in view_files(root).items():
        resolved = []
        for f in files:
            real = f.resolve()
            if not real.is_relative_to(root):
                raise SqlError(f"{f} points outside the run folder ({real}); fairsift sql reads the run's own files only")
            resolved.append(real)
        views[name] = resolved
    return views


def open_run(run_dir: str | Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with one view per table of the run, that can read those Parquet files and nothing else."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SqlError(f"run folder not found: {run_dir}")
    views = view_names(run_dir)
    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    con.execute("SET allowed_paths = ?", [sorted({str(f) for files in views.values() for f in files})])
    for name, files in views.items():
        _create_view(con, name, files)
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    return con


def check_read_only(con: duckdb.DuckDBPyConnection, query: str) -> None:
    """Refuse anything but SELECT statements (EXPLAIN [ANALYZE] of a SELECT included)."""
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as exc:
        raise SqlError(str(exc)) from None
    if not statements:
        raise SqlError("empty query: give one SELECT statement")
    for statement in statements:
        kind = statement.type
        if kind == duckdb.StatementType.EXPLAIN:
            inner = _EXPLAIN.sub("", statement.query, count=1)
            kind = con.extract_statements(inner)[0].type if inner.strip() else kind
        if kind not in ALLOWED_STATEMENTS:
            word = kind.name if kind != duckdb.StatementType.EXPLAIN else "EXPLAIN"
            raise SqlError(f"fairsift sql is read-only: only SELECT queries run (also EXPLAIN, DESCRIBE, SUMMARIZE), "
                           f"not {word}. To save a result, use --format csv|json|jsonl and redirect it to a file.")


def run_query(run_dir: str | Path, query: str) -> pa.Table:
    con = open_run(run_dir)
    try:
        check_read_only(con, query)
        relation = con.sql(query)  # DuckDB 2.x: a relation drains to Arrow without the DB-API copy
        if relation is None:  # no rows to show
            return pa.table({})
        return relation.to_arrow_table()
    except duckdb.PermissionException as exc:
        raise SqlError(f"{exc}\nfairsift sql reads only the run's tables (the views below), no other file or URL."
                       f"\nviews in {run_dir}: {', '.join(view_names(run_dir)) or 'none'}") from None
    except duckdb.Error as exc:
        views = ", ".join(view_names(run_dir)) or "none (the run folder has no tables yet)"
        raise SqlError(f"{exc}\nviews in {run_dir}: {views}") from None
    finally:
        con.close()


def _plain(value: Any) -> Any:
    """A value as JSON can hold it: bytes as base64, NaN as null, dates as ISO text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (dt.date, dt.datetime, dt.time, dt.timedelta)):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _cell(value: Any) -> str:
    """A value as one short text cell: images as their size, not their bytes."""
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        text = json.dumps(_plain(_bytes_as_sizes(value)))
        return text if len(text) <= 60 else text[:57] + "..."
    return str(value)


def _bytes_as_sizes(value: Any) -> Any:
    """Bytes inside a struct or list (the corpus's `image` is {bytes, path}) shown as their size, as at top level."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    if isinstance(value, dict):
        return {k: _bytes_as_sizes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bytes_as_sizes(v) for v in value]
    return value


def _csv_cell(value: Any) -> Any:
    value = _plain(value)
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def _rows(table: pa.Table):
    for batch in table.to_batches():
        yield from batch.to_pylist()


def format_result(table: pa.Table, fmt: str, stream: TextIO) -> None:
    """table: a rich table on a terminal, aligned plain text otherwise; csv: with a header; json: one JSON array of
    row objects; jsonl: one JSON object a line."""
    if fmt == "csv":
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in _rows(table):
            writer.writerow([_csv_cell(v) for v in row.values()])
    elif fmt == "jsonl":
        for row in _rows(table):
            stream.write(json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
    elif fmt == "json":  # streamed, so a large result is never one string in memory
        stream.write("[")
        for i, row in enumerate(_rows(table)):
            stream.write(("," if i else "") + "\n" + json.dumps({k: _plain(v) for k, v in row.items()}, ensure_ascii=False))
        stream.write("\n]\n")
    elif fmt == "table":
        cells = [[_cell(v) for v in row.values()] for row in _rows(table)]
        if getattr(stream, "isatty", lambda: False)():
            _print_rich(table.column_names, cells, stream)
        else:
            _print_plain(table.column_names, cells, table.schema, stream)
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def _is_numeric(field: pa.Field) -> bool:
    return pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)


def _print_plain(names: list[str], cells: list[list[str]], schema: pa.Schema, stream: TextIO) -> None:
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]
    right = [_is_numeric(f) for f in schema]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right)).rstrip()

    stream.write(line(names) + "\n")
    stream.write("  ".join("-" * w for w in widths) + "\n")
    for row in cells:
        stream.write(line(row) + "\n")
    stream.write(f"({len(cells)} row{'s' if len(cells) != 1 else ''})\n")


def _print_rich(names: list[str], cells: list[list[str]], stream: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = Table(show_lines=False, caption=f"{len(cells)} rows")
    for name in names:
        out.add_column(name, overflow="fold")
    for row in cells:
        out.add_row(*(Text(c) for c in row))  # Text: a caption like "[en]" is not markup
    Console(file=stream, highlight=False).print(out)
