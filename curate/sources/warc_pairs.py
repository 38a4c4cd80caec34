"""Pages out of web archives: WARC and WAT (Common Crawl's formats) read with fastwarc, ARC read with warcio.

WARC: response records whose HTTP status is 2xx and whose payload is HTML; the page URL is WARC-Target-URI.
WAT: metadata records holding Common Crawl's JSON envelope; its "Links" list already has the page's images
("path": "IMG@/src" with "url" and "alt"), so those pages skip HTML parsing. The envelope also keeps the HTTP status
("Response-Message"), and a non-2xx page gives no pairs, as in a WARC.
ARC (the Internet Archive's format before WARC, .arc and .arc.gz): fastwarc does not read it, warcio does (as WARC
records); gzip members are split and resynchronised as for WARC (curate.sources.warc_records).

Besides the reading counters of warc_records, pages passed over are counted: `warc_not_2xx` (an error status, WARC,
WAT or ARC) and `warc_not_html` (a 2xx response of another content type).
"""

from __future__ import annotations

import json
import logging
import mmap
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from fastwarc.warc import WarcRecordType
from warcio.archiveiterator import ArchiveIterator as WarcioIterator

from curate.sources.formats import FileFormat, sniff
from curate.sources.html_pairs import ImageCandidate, Page, resolve_base
from curate.sources.archive_streams import BufferReader, count_bad, gzip_members
from curate.sources.warc_records import ArchiveRecord, iter_records

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml")
_ARC_HEADER_LINE = re.compile(rb"^(?:filedesc://\S*|\S+ \S+ \d{12,14}) ")
_ARC_PROBE_BYTES = 4096


def _is_2xx(status: int | None) -> bool:
    return status is not None and 200 <= status < 300


def _skip_response(status: int, content_type: str | None, counts: Counter) -> bool:
    """Whether a response is passed over (counted under its reason)."""
    if not _is_2xx(status):
        counts["warc_not_2xx"] += 1
        return True
    if (content_type or "").split(";")[0].strip().lower() not in HTML_TYPES:
        counts["warc_not_html"] += 1
        return True
    return False


# ---- WARC and WAT ------------------------------------------------------------------------------------------------------


def _response_page(item: ArchiveRecord, url: str, counts: Counter) -> Page | None:
    record = item.record
    try:
        record.parse_http(auto_decode="all", quirks_mode=item.bare_lf)
        if not record.is_http or record.http_headers is None or record.http_headers.status_code is None:
            count_bad(counts, "bad_http")  # no status line fastwarc could read
            return None
        if _skip_response(record.http_headers.status_code, record.http_content_type, counts):
            return None
        return Page(url=url, source="warc", body=record.reader.read(), http_charset=record.http_charset)
    except (OSError, ValueError):  # a header block or a content encoding that cannot be decoded
        count_bad(counts, "bad_http")
        return None


def _http_status(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def wat_page(envelope: dict, counts: Counter | None = None) -> Page | None:
    """The images of one WAT JSON document, or None when it does not describe a 2xx HTML response."""
    counts = counts if counts is not None else Counter()
    env = envelope.get("Envelope")
    env = env if isinstance(env, dict) else {}
    warc_header = env.get("WARC-Header-Metadata")
    url = warc_header.get("WARC-Target-URI") if isinstance(warc_header, dict) else None
    payload = env.get("Payload-Metadata")
    response = payload.get("HTTP-Response-Metadata") if isinstance(payload, dict) else None
    if not isinstance(url, str) or not url or not isinstance(response, dict):
        return None
    message = response.get("Response-Message")
    if isinstance(message, dict) and "Status" in message and not _is_2xx(_http_status(message.get("Status"))):
        counts["warc_not_2xx"] += 1
        return None
    html = response.get("HTML-Metadata")
    if not isinstance(html, dict):
        return None
    head = html.get("Head")
    base = resolve_base(url, head.get("Base") if isinstance(head, dict) else None)
    candidates = [
        ImageCandidate(src=_text(link.get("url")), alt=_text(link.get("alt")), title=_text(link.get("title")))
        for link in (html.get("Links") if isinstance(html.get("Links"), list) else [])
        if isinstance(link, dict) and str(link.get("path", "")).upper() == "IMG@/SRC"
    ]
    return Page(url=url, source="warc", candidates=candidates, base=base)


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def _metadata_page(item: ArchiveRecord, counts: Counter) -> Page | None:
    record = item.record
    if "json" not in (record.headers.get("Content-Type") or "").lower():
        return None
    try:
        envelope = json.loads(record.reader.read())
    except (ValueError, UnicodeDecodeError, OSError, RecursionError):
        count_bad(counts, "bad_wat_json")
        return None
    return wat_page(envelope, counts) if isinstance(envelope, dict) else None


def _warc_pages(path: Path, fmt: FileFormat, counts: Counter) -> Iterator[Page]:
    for item in iter_records(path, fmt, counts):
        counts["warc_records"] += 1
        record = item.record
        url = (record.headers.get("WARC-Target-URI") or "").strip("<> ")  # WARC 1.1 drafts wrapped it in <>
        if record.record_type == WarcRecordType.response and not url:
            count_bad(counts, "bad_header")  # a response must name its URL
            page = None
        elif record.record_type == WarcRecordType.response:
            page = _response_page(item, url, counts)
        elif record.record_type == WarcRecordType.metadata:
            page = _metadata_page(item, counts)
        else:
            page = None
        if page is not None:
            yield page


# ---- ARC -----------------------------------------------------------------------------------------------------------------


def starts_arc_record(head: bytes) -> bool:
    return bool(_ARC_HEADER_LINE.match(head))


def _arc_page(record, counts: Counter) -> Page | None:
    if record.rec_type != "response":
        return None
    url = (record.rec_headers.get_header("WARC-Target-URI") or "").strip()
    headers = record.http_headers
    if not url or headers is None:
        count_bad(counts, "bad_http")
        return None
    try:
        status = int((headers.get_statuscode() or "").strip())
    except ValueError:
        count_bad(counts, "bad_http")
        return None
    content_type = headers.get_header("Content-Type")
    if _skip_response(status, content_type, counts):
        return None
    charset = None
    if content_type and "charset=" in content_type.lower():
        charset = content_type.lower().split("charset=")[-1].split(";")[0].strip(" \"'")
    return Page(url=url, source="warc", body=record.content_stream().read(), http_charset=charset)


def _arc_pages_in(stream, counts: Counter, where: str) -> Iterator[Page]:
    """Pages of ARC data read by warcio; a record warcio cannot read ends this stretch, counted."""
    try:
        for record in WarcioIterator(stream, arc2warc=True):
            counts["warc_records"] += 1
            page = _arc_page(record, counts)
            if page is not None:
                yield page
    except Exception as exc:  # noqa: BLE001 - warcio raises many kinds (ArchiveLoadFailed, EOFError, zlib.error...)
        log.warning("crawl: %s: unreadable ARC data: %s: %s", where, type(exc).__name__, exc)
        count_bad(counts, "bad_header")


def _arc_pages(path: Path, fmt: FileFormat, counts: Counter) -> Iterator[Page]:
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        if fmt.compression == "gzip":
            for member in gzip_members(mapped, counts, starts_arc_record, _ARC_PROBE_BYTES):
                if member is not None:
                    yield from _arc_pages_in(BufferReader(member, 0), counts, str(path))
        elif fmt.compression is None:
            # a plain ARC has no member boundaries to resynchronise at: a bad record ends the file (counted)
            yield from _arc_pages_in(BufferReader(mapped, 0), counts, str(path))
        else:
            raise ValueError(f"{path}: {fmt.compression}-compressed ARC files are not supported")


def iter_archive_pages(path: Path, fmt: FileFormat, counts: Counter) -> Iterator[Page]:
    """HTML pages (WARC/ARC responses) and image lists (WAT metadata) of one file; other records are passed over."""
    if fmt.container == "arc":
        yield from _arc_pages(path, fmt, counts)
    else:
        yield from _warc_pages(path, fmt, counts)


def iter_warc_pages(path: Path, counts: Counter) -> Iterator[Page]:
    """Pages of an archive file whose format is sniffed from its bytes (WARC when they say nothing)."""
    yield from iter_archive_pages(path, sniff(path) or FileFormat("warc"), counts)

