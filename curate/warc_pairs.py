"""Pages out of WARC and WAT files (Common Crawl's formats, plain or gzipped), read with fastwarc.

WARC: response records whose HTTP payload is HTML; the page URL is WARC-Target-URI.
WAT: metadata records holding Common Crawl's JSON envelope; its "Links" list already has the page's images
("path": "IMG@/src" with "url" and "alt"), so those pages skip HTML parsing.

A malformed record is skipped and counted as "warc_bad_records". fastwarc cannot continue after a bad record, so
the reading resynchronises itself: a .gz file is split into its gzip members (WARC's record-at-a-time compression,
so one member is one record), and within a member or a plain file the reading restarts at the next "WARC/1."
version line. Consecutive bad records in an uncompressed stream count as one.
"""

from __future__ import annotations

import io
import json
import mmap
import zlib
from collections import Counter
from pathlib import Path
from typing import BinaryIO, Callable, Iterator
from urllib.parse import urljoin

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from curate.html_pairs import ImageCandidate, Page

WARC_SUFFIXES = (".warc", ".warc.gz", ".wat", ".wat.gz")
HTML_TYPES = ("text/html", "application/xhtml+xml")
_VERSION_LINE = b"WARC/1."
_READ_CHUNK = 1 << 20


def is_warc_path(path: Path) -> bool:
    return path.name.lower().endswith(WARC_SUFFIXES)


# ---- resilient record reading ------------------------------------------------------------------------------------


def _is_parse_failure(exc: BaseException) -> bool:
    # fastwarc reports bad input as OSError/ValueError, and a few inputs as a Rust panic (a BaseException)
    return isinstance(exc, (OSError, ValueError)) or type(exc).__name__ == "PanicException"


def _records(open_at: Callable[[int], BinaryIO], find: Callable[[bytes, int], int], counts: Counter) -> Iterator[WarcRecord]:
    """Every record from offset 0 on; after a parse error, restart at the next version line and count the bad one.

    `open_at(offset)` gives a stream positioned at offset, so record.stream_pos (taken from tell()) is absolute.
    """
    offset, first_attempt = 0, True
    while True:
        last_start = None
        stream = open_at(offset)
        try:
            for record in ArchiveIterator(stream, parse_http=False, strict_mode=True):
                last_start = record.stream_pos
                yield record
            return
        except BaseException as exc:
            if not _is_parse_failure(exc):
                raise
            # a restart that fails before yielding anything is still inside the same bad stretch
            if first_attempt or last_start is not None:
                counts["warc_bad_records"] += 1
        finally:
            stream.close()
        first_attempt = False
        resume = find(_VERSION_LINE, (last_start if last_start is not None else offset) + 1)
        if resume < 0:
            return
        offset = resume


def _open_bytes_at(data: bytes, offset: int) -> BinaryIO:
    stream = io.BytesIO(data)
    stream.seek(offset)
    return stream


def _records_in_bytes(data: bytes, counts: Counter) -> Iterator[WarcRecord]:
    return _records(lambda offset: _open_bytes_at(data, offset), data.find, counts)


def _gzip_members(stream: BinaryIO, counts: Counter) -> Iterator[bytes]:
    """Decompressed bytes of each gzip member; corrupt or truncated compressed data is counted and ends the file."""
    decompressor, out, pending, in_member = zlib.decompressobj(wbits=31), [], b"", False
    while True:
        data = pending or stream.read(_READ_CHUNK)
        pending = b""
        if not data:
            if in_member:
                counts["warc_bad_records"] += 1  # the file ends inside a member
            return
        in_member = True
        try:
            out.append(decompressor.decompress(data))
        except zlib.error:
            counts["warc_bad_records"] += 1
            return
        if decompressor.eof:
            yield b"".join(out)
            out, pending, in_member = [], decompressor.unused_data, False
            decompressor = zlib.decompressobj(wbits=31)


def iter_records(path: Path, counts: Counter) -> Iterator[WarcRecord]:
    with open(path, "rb") as raw:
        if path.name.lower().endswith(".gz"):
            for member in _gzip_members(raw, counts):
                yield from _records_in_bytes(member, counts)
            return
        if path.stat().st_size == 0:
            return
        with mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mapped:

            def open_at(offset: int) -> BinaryIO:
                stream = open(path, "rb")  # noqa: SIM115 - closed by _records
                stream.seek(offset)
                return stream

            yield from _records(open_at, mapped.find, counts)


# ---- records -> pages --------------------------------------------------------------------------------------------


def _response_page(record: WarcRecord, url: str, counts: Counter) -> Page | None:
    try:
        record.parse_http(auto_decode="all")
    except (OSError, ValueError):
        counts["warc_bad_records"] += 1
        return None
    if not record.is_http or record.http_headers is None:
        counts["warc_bad_records"] += 1
        return None
    if not 200 <= record.http_headers.status_code < 300 or (record.http_content_type or "").lower() not in HTML_TYPES:
        return None
    return Page(url=url, source="warc", body=record.reader.read(), http_charset=record.http_charset)


def wat_page(envelope: dict) -> Page | None:
    """The images of one WAT JSON document, or None when it does not describe an HTML response."""
    env = envelope.get("Envelope") or {}
    url = (env.get("WARC-Header-Metadata") or {}).get("WARC-Target-URI")
    html = ((env.get("Payload-Metadata") or {}).get("HTTP-Response-Metadata") or {}).get("HTML-Metadata")
    if not url or not isinstance(html, dict):
        return None
    base_href = (html.get("Head") or {}).get("Base")
    try:
        base = urljoin(url, base_href) if base_href else url
    except ValueError:
        base = url
    candidates = [
        ImageCandidate(src=link.get("url"), alt=link.get("alt"), title=link.get("title"))
        for link in html.get("Links") or []
        if isinstance(link, dict) and str(link.get("path", "")).upper() == "IMG@/SRC"
    ]
    return Page(url=url, source="warc", candidates=candidates, base=base)


def _metadata_page(record: WarcRecord, counts: Counter) -> Page | None:
    if "json" not in (record.headers.get("Content-Type") or "").lower():
        return None
    try:
        envelope = json.loads(record.reader.read())
    except (ValueError, UnicodeDecodeError):
        counts["warc_bad_records"] += 1
        return None
    return wat_page(envelope) if isinstance(envelope, dict) else None


def iter_warc_pages(path: Path, counts: Counter) -> Iterator[Page]:
    """HTML pages (WARC responses) and image lists (WAT metadata) of one file; other records are passed over."""
    for record in iter_records(path, counts):
        counts["warc_records"] += 1
        url = (record.headers.get("WARC-Target-URI") or "").strip("<> ")  # WARC 1.1 drafts wrapped it in <>
        if record.record_type == WarcRecordType.response and url:
            page = _response_page(record, url, counts)
        elif record.record_type == WarcRecordType.metadata:
            page = _metadata_page(record, counts)
        else:
            page = None
        if page is not None:
            yield page
