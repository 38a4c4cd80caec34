"""Rows of the pairs table: caption clean-up shared by crawl and ingest, and a writer that cuts rows into parts."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa

from curate.schemas import PAIRS, conform
from curate.tables import list_parts, write_part

_WHITESPACE = re.compile(r"\s+")
# C0 and C1 control characters (NUL among them): no caption means them, and they break terminals, CSVs and tokenisers
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")  # from JSON "\ud800" escapes; no UTF-8 encoder takes them
# format characters that show nothing on their own (zero-width space and joiners, bidi marks, BOM, soft hyphen):
# kept inside a caption (Persian and Indic scripts need ZWNJ/ZWJ), but a caption of nothing else is empty
_INVISIBLE = ("\u00ad\u061c\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2060\u2061\u2062"
              "\u2063\u2064\u2066\u2067\u2068\u2069\ufeff")
_INVISIBLE_ENDS = re.compile(f"^[\\s{_INVISIBLE}]+|[\\s{_INVISIBLE}]+$")


def normalise_whitespace(text: str | None) -> str:
    """A caption as stored: control characters become spaces, lone surrogates U+FFFD, runs of whitespace one space,
    whitespace and invisible format characters trimmed from both ends (so a text of nothing else is empty)."""
    text = _CONTROL.sub(" ", text or "")
    return _INVISIBLE_ENDS.sub("", _WHITESPACE.sub(" ", _LONE_SURROGATE.sub("\ufffd", text)))


def clip_caption(caption: str, max_chars: int) -> tuple[str, bool]:
    """(caption cut to max_chars, whether it was cut)."""
    if len(caption) <= max_chars:
        return caption, False
    return caption[:max_chars].rstrip(), True


_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def clean_url(url: str | None) -> str:
    """The URL as a browser would request it: trimmed (of a BOM and zero-width characters too), tabs/newlines removed,
    inner spaces as %20 (WHATWG URL), lone surrogates as U+FFFD (they cannot be encoded)."""
    url = _LONE_SURROGATE.sub("\ufffd", _TAB_NEWLINE.sub("", _INVISIBLE_ENDS.sub("", url or "")))
    return url.replace(" ", "%20") if " " in url else url


def is_http_url(url: str) -> bool:
    """An absolute http(s) URL with a host and no control characters or spaces (which no fetcher would accept)."""
    if not url or _CONTROL_OR_SPACE.search(url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
        return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def remove_parts(run_dir: str | Path, table: str = "pairs") -> None:
    """First stages rewrite their table from scratch: a shorter rerun must not leave old parts behind."""
    for old in list_parts(run_dir, table):
        old.unlink()


class PartWriter:
    """Buffers pair rows (contract columns first, any extra columns after) and writes every `rows_per_part`
    rows as the next part; `close` writes the rest, or one empty part so that an empty result is still a table."""

    def __init__(self, run_dir: str | Path, rows_per_part: int, table: str = "pairs"):
        self.run_dir = run_dir
        self.table = table
        self.rows_per_part = rows_per_part
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.parts_written = 0
        self.rows_written = 0

    def add_rows(self, rows: list[dict]) -> None:
        if rows:
            self.add_table(pa.Table.from_pylist(rows, schema=PAIRS))

    def add_table(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        self._pending.append(conform(table, PAIRS))
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.rows_per_part:
            self._write(self.rows_per_part)

    def _write(self, n_rows: int) -> None:
        buffered = pa.concat_tables(self._pending)
        part, rest = buffered.slice(0, n_rows), buffered.slice(n_rows)
        write_part(self.run_dir, self.table, self.parts_written, part.combine_chunks())
        self.parts_written += 1
        self.rows_written += part.num_rows
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def close(self, empty_schema: pa.Schema = PAIRS) -> None:
        if self._pending_rows:
            self._write(self._pending_rows)
        if self.parts_written == 0:
            write_part(self.run_dir, self.table, 0, empty_schema.empty_table())
            self.parts_written = 1
