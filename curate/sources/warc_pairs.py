"""Pages out of WARC and WAT files (Common Crawl's formats, plain or gzipped), read with fastwarc.

WARC: response records whose HTTP payload is HTML; the page URL is WARC-Target-URI.
WAT: metadata records holding Common Crawl's JSON envelope; its "Links" list already has the page's images
("path": "IMG@/src" with "url" and "alt"), so those pages skip HTML parsing.

A malformed record is skipped and counted as "warc_bad_records". fastwarc cannot continue after a bad record, so
the reading resynchronises itself: a .gz file is split into its gzip members (WARC's record-at-a-time compression,
so one member is one record); a corrupt or cut-short member, or junk between members, is skipped by scanning for the
next gzip header (1f 8b 08) whose member inflates to a "WARC/1." line. Within a member or a plain file the reading
restarts at the next "WARC/1.x" version line. Consecutive bad records in an uncompressed stream count as one.
The scans run only after an error, so intact files are read straight through.
"""

from __future__ import annotations

import io
import json
import mmap
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin

from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from curate.sources.html_pairs import ImageCandidate, Page

WARC_SUFFIXES = (".warc", ".warc.gz", ".wat", ".wat.gz")
HTML_TYPES = ("text/html", "application/xhtml+xml")
_VERSION_LINE = b"WARC/1."
_READ_CHUNK = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b\x08"  # gzip member header: magic number + deflate
_PROBE_CHUNK = 512  # a member's gzip and deflate headers fit in a few hundred bytes...
_PROBE_LIMIT = 1 << 16  # ...so a candidate that yields no "WARC/1." within this much is not one
_MAX_HEADER = 1 << 16  # a WARC record header is far shorter; bounds the search for its end
Buffer = bytes | mmap.mmap


def is_warc_path(path: Path) -> bool:
    return path.name.lower().endswith(WARC_SUFFIXES)


# ---- resilient record reading ------------------------------------------------------------------------------------


def _is_parse_failure(exc: BaseException) -> bool:
    # fastwarc reports bad input as OSError/ValueError, and a few inputs as a Rust panic (a BaseException)
    return isinstance(exc, (OSError, ValueError)) or type(exc).__name__ == "PanicException"


def _records(open_at: Callable[[int], BinaryIO], data: Buffer, counts: Counter) -> Iterator[WarcRecord]:
    """Every record from offset 0 on; after a parse error, restart at the next version line and count the bad one.

    `open_at(offset)` gives a stream positioned at offset, so record.stream_pos (taken from tell()) is absolute.
    A record the data ends inside of is counted as bad and not handed on.
    """
    offset, first_attempt = 0, True
    while True:
        last_start = None
        stream = open_at(offset)
        try:
            for record in ArchiveIterator(stream, parse_http=False, strict_mode=True):
                last_start = record.stream_pos
                if _is_cut_short(record, data):
                    counts["warc_bad_records"] += 1
                else:
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
        resume = _next_version_line(data, (last_start if last_start is not None else offset) + 1)
        if resume < 0:
            return
        offset = resume


def _is_cut_short(record: WarcRecord, data: Buffer) -> bool:
    """Whether the data ends before the record's declared Content-Length (fastwarc hands such a record over with a
    short payload, without an error). The header ends at the first blank line; one find per record, cheap."""
    start = record.stream_pos
    header_ends = [
        at + len(blank)
        for blank in (b"\r\n\r\n", b"\n\n")
        if (at := data.find(blank, start, start + _MAX_HEADER)) >= 0
    ]
    return bool(header_ends) and min(header_ends) + record.content_length > len(data)


def _next_version_line(data: Buffer, start: int) -> int:
    """Offset of the next "WARC/1.<digit>" that ends its line ("WARC/1.0\\r\\n"), at or after start; -1 if none.

    Requiring the line end keeps a payload that merely mentions "WARC/1.0" in a sentence from being taken for a
    record; a line start is not required, since junk before a record need not end with a line break.
    """
    position = data.find(_VERSION_LINE, start)
    while position >= 0:
        tail = data[position + len(_VERSION_LINE) : position + len(_VERSION_LINE) + 3]
        if tail[:1].isdigit() and (tail[1:3] == b"\r\n" or tail[1:2] == b"\n"):
            return position
        position = data.find(_VERSION_LINE, position + 1)
    return -1


def _open_bytes_at(data: bytes, offset: int) -> BinaryIO:
    stream = io.BytesIO(data)
    stream.seek(offset)
    return stream


def _records_in_bytes(data: bytes, counts: Counter) -> Iterator[WarcRecord]:
    return _records(lambda offset: _open_bytes_at(data, offset), data, counts)


def _inflate_member(data: Buffer, start: int) -> tuple[bytes, int] | None:
    """(decompressed bytes, offset just past the member) of the gzip member at start; None when it is corrupt or the
    data ends inside it."""
    decompressor, out, position = zlib.decompressobj(wbits=31), [], start
    try:
        while not decompressor.eof:
            chunk = data[position : position + _READ_CHUNK]
            if not chunk:
                return None
            out.append(decompressor.decompress(chunk))
            position += len(chunk)
    except zlib.error:
        return None
    return b"".join(out), position - len(decompressor.unused_data)


def _starts_warc_member(data: Buffer, start: int) -> bool:
    """Whether a gzip member that inflates to a "WARC/1." line begins at start (a 1f 8b 08 inside compressed data or
    junk is usually not one). Only the first bytes are inflated."""
    decompressor, position, head = zlib.decompressobj(wbits=31), start, b""
    try:
        while len(head) < len(_VERSION_LINE) and position < start + _PROBE_LIMIT and not decompressor.eof:
            chunk = data[position : position + _PROBE_CHUNK]
            if not chunk:
                break
            head += decompressor.decompress(chunk, len(_VERSION_LINE) - len(head))
            position += len(chunk)
    except zlib.error:
        return False
    return head == _VERSION_LINE


def _next_warc_member(data: Buffer, start: int) -> int:
    """Offset of the next gzip member at or after start that holds a WARC record, or -1."""
    position = data.find(_GZIP_MAGIC, start)
    while position >= 0 and not _starts_warc_member(data, position):
        position = data.find(_GZIP_MAGIC, position + 1)
    return position


def _gzip_members(data: Buffer, counts: Counter) -> Iterator[bytes]:
    """Decompressed bytes of each gzip member. A corrupt or cut-short member, or junk between members, counts as one
    bad record; reading goes on at the next member that starts a WARC record. Normal files never scan."""
    position = 0
    while position < len(data):
        member = _inflate_member(data, position)
        if member is not None:
            body, position = member
            yield body
            continue
        counts["warc_bad_records"] += 1
        position = _next_warc_member(data, position + 1)
        if position < 0:
            return


def iter_records(path: Path, counts: Counter) -> Iterator[WarcRecord]:
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        if path.name.lower().endswith(".gz"):
            for member in _gzip_members(mapped, counts):
                yield from _records_in_bytes(member, counts)
            return

        def open_at(offset: int) -> BinaryIO:
            stream = open(path, "rb")  # noqa: SIM115 - closed by _records
            stream.seek(offset)
            return stream

        yield from _records(open_at, mapped, counts)


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
    status = record.http_headers.status_code
    if status is None:  # a status line fastwarc could not read
        counts["warc_bad_records"] += 1
        return None
    if not 200 <= status < 300 or (record.http_content_type or "").lower() not in HTML_TYPES:
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
