"""WARC records out of real, damaged files: fastwarc does the parsing; this module decides where it starts and what
it is handed, so that one bad record costs that record and is counted under a named reason, never the file.

How a file is read (the compressed containers are split in curate.sources.archive_streams)
- gzip: split into its members (WARC's record-at-a-time compression, so one member is one record). A corrupt or
  cut-short member, or junk between members, is skipped by scanning for the next gzip header whose member inflates
  to a record start; the scans run only after an error, so intact files are read straight through.
- LZ4 and Zstandard (.warc.lz4, .warc.zst): inflated frame after frame with fastwarc's own readers into a temporary
  file; after a corrupt frame the inflation goes on at the next frame header.
- Plain data (a file, or one inflated member/stream) is memory-mapped and handed to fastwarc from each record start.
  Before a record is handed on, its framing is checked against the bytes: the declared Content-Length must end at
  the end of the data or at the next "WARC/x.y" line (after the CRLF CRLF trailer, which some writers get wrong).
  When it does not, the reading restarts on its own at the next version line instead of trusting fastwarc to.

Bare LF line endings (ClueWeb09 and other crawls whose CRLFs were stripped): fastwarc's strict parser reads such an
HTTP header block as one long line without raising, so the content type is lost and every page would be passed over
in silence. Records whose WARC or HTTP header lines end in a bare LF are therefore parsed in fastwarc's lenient mode
(quirks_mode) and counted under `warc_bare_lf_records`. The strict parser stays the default because the lenient one
skips junk silently, which would hide damage from the counters.

Counters (all shown in the crawl summary):
- warc_bad_records, with the reason in BAD_RECORD_REASONS: corrupt_compression (a member or frame that does not
  inflate), junk (bytes between records that are no record), bad_header (a record header fastwarc cannot parse),
  cut_short (the data ends inside a record), plus bad_http and bad_wat_json counted by the page readers;
- warc_wrong_length_records: records whose Content-Length ran past the start of the next record (ClueWeb09's lengths
  still count the stripped CRs): read up to that next record instead of losing both;
- warc_bare_lf_records, as above.
"""

from __future__ import annotations

import io
import mmap
import re
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fastwarc.warc import ArchiveIterator, WarcRecord

from curate.sources.archive_streams import Buffer, BufferReader, count_bad, gzip_members, inflate_frames
from curate.sources.formats import FileFormat

_VERSION_LINE = re.compile(rb"WARC/[01]\.\d{1,2}\r?\n")
_VERSION_LINE_AT_LINE_START = re.compile(rb"\nWARC/[01]\.\d{1,2}\r?\n")
_VERSION_LINE_BYTES = 14  # the longest line the pattern above matches
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*\d+")
_MAX_HEADER = 1 << 16  # a WARC record header is far shorter; bounds the search for its end
_TRAILER_SLACK = 4  # CR/LF bytes allowed between a record's block and the next record
_MAX_CARRIED = 256 << 20  # a record split over gzip members is joined up to this size


@dataclass
class ArchiveRecord:
    """A fastwarc record plus what the framing check learnt about it."""

    record: WarcRecord
    bare_lf: bool  # header lines end in a bare LF: parse the HTTP headers leniently


# ---- plain data: records with framing checks -------------------------------------------------------------------------


def _is_parse_failure(exc: BaseException) -> bool:
    # fastwarc reports bad input as OSError/ValueError, and a few inputs as a Rust panic (a BaseException)
    return isinstance(exc, (OSError, ValueError)) or type(exc).__name__ == "PanicException"


def _next_version_line(data: Buffer, start: int) -> int:
    """Offset of the next "WARC/x.y" line at or after start; -1 if none. The line end is required, so a payload that
    mentions "WARC/1.0" in a sentence is not taken for a record; a line start is not, since junk before a record
    need not end with a line break."""
    match = _VERSION_LINE.search(data, start)
    return match.start() if match else -1


def _line_is_bare_lf(data: Buffer, start: int) -> bool:
    end = data.find(b"\n", start, start + _MAX_HEADER)
    return end > start and data[end - 1 : end] != b"\r"


@dataclass
class _Framing:
    header_end: int
    block_end: int  # where the record's block really ends (repaired when the declared length was wrong)
    next_start: int  # where the next record starts, -1 at the end of the data
    verdict: str  # "ok", "junk_after", "wrong_length" or "cut_short"


def _stripped_crs(data: Buffer, block_start: int) -> int:
    """How many CRs a bare-LF HTTP header block at block_start lost, if its line ends were CRLF once (0 otherwise):
    the length a ClueWeb09-style Content-Length overshoots by."""
    if not _line_is_bare_lf(data, block_start):
        return 0
    end = data.find(b"\n\n", block_start, block_start + _MAX_HEADER)
    return bytes(data[block_start : end + 2]).count(b"\n") if end >= 0 else 0


def _check_framing(record: WarcRecord, data: Buffer) -> _Framing:
    start = record.stream_pos
    header = _HEADER_END.search(data, start, start + _MAX_HEADER)
    if header is None:  # the data ends inside the record's header
        return _Framing(len(data), len(data), -1, "cut_short")
    header_end = header.end()
    block_end = header_end + record.content_length
    if block_end > len(data):
        # the data ends inside the record, or the length runs over a following record
        inner = _VERSION_LINE_AT_LINE_START.search(data, header_end, len(data))
        if inner is not None:
            return _Framing(header_end, inner.start() + 1, inner.start() + 1, "wrong_length")
        if block_end - len(data) <= _stripped_crs(data, header_end):
            return _Framing(header_end, len(data), -1, "wrong_length")  # the last record of a ClueWeb09-style file
        return _Framing(header_end, len(data), -1, "cut_short")
    after = block_end
    while after < len(data) and after - block_end < _TRAILER_SLACK and data[after : after + 1] in (b"\r", b"\n"):
        after += 1
    if after >= len(data) or _VERSION_LINE.match(data, after):
        return _Framing(header_end, block_end, after if after < len(data) else -1, "ok")
    inner = _VERSION_LINE_AT_LINE_START.search(data, header_end, block_end + _VERSION_LINE_BYTES)
    if inner is not None and inner.start() < block_end:  # the next record starts inside the declared block
        return _Framing(header_end, inner.start() + 1, inner.start() + 1, "wrong_length")
    return _Framing(header_end, block_end, _next_version_line(data, block_end), "junk_after")


def _repaired(data: Buffer, start: int, framing: _Framing, lenient: bool) -> WarcRecord | None:
    """The record at start with its Content-Length set to the bytes up to the next record, or None."""
    block = bytes(data[framing.header_end : framing.block_end])
    block = block[: len(block) - min(len(block) - len(block.rstrip(b"\r\n")), _TRAILER_SLACK)]  # the trailer
    header, replaced = _CONTENT_LENGTH.subn(b"Content-Length: %d" % len(block), bytes(data[start : framing.header_end]))
    if not replaced:
        return None
    try:
        return next(iter(ArchiveIterator(io.BytesIO(header + block + b"\r\n\r\n"), parse_http=False,
                                         quirks_mode=lenient)), None)
    except BaseException as exc:
        if not _is_parse_failure(exc):
            raise
        return None


def _is_http_block(record: WarcRecord) -> bool:
    return (record.headers.get("Content-Type") or "").lower().startswith("application/http")


@dataclass(frozen=True)
class _Restart:
    offset: int  # read on from this version line


@dataclass(frozen=True)
class _Tail:
    offset: int  # the data ends inside the record starting here; more data may follow it


def _records_from(data: Buffer, offset: int, counts: Counter, final: bool) -> Iterator[ArchiveRecord | _Restart | _Tail]:
    """Records of one stretch read in one parsing mode from a version line; ends with a _Restart, a _Tail (only when
    not `final`: the caller has more data to append) or nothing at the end of the data."""
    lenient = _line_is_bare_lf(data, offset)
    expected_start = offset  # where fastwarc parses next: a failure there is that record's
    try:
        for record in ArchiveIterator(BufferReader(data, offset), parse_http=False, quirks_mode=lenient):
            start = record.stream_pos
            framing = _check_framing(record, data)
            if framing.verdict == "cut_short":
                if final:
                    count_bad(counts, "cut_short")
                else:
                    yield _Tail(start)
                return
            bare_lf = lenient or (_is_http_block(record) and _line_is_bare_lf(data, framing.header_end))
            if framing.verdict == "wrong_length":
                counts["warc_wrong_length_records"] += 1
                record = _repaired(data, start, framing, lenient)
                if record is None:
                    count_bad(counts, "bad_header")
            if record is not None:
                counts["warc_bare_lf_records"] += bare_lf
                yield ArchiveRecord(record, bare_lf)
            if framing.verdict == "junk_after":
                count_bad(counts, "junk")
            mode_changes = framing.next_start >= 0 and _line_is_bare_lf(data, framing.next_start) != lenient
            if framing.verdict != "ok" or mode_changes:
                if framing.next_start >= 0:
                    yield _Restart(framing.next_start)
                return
            expected_start = framing.next_start
        if expected_start >= 0 and bytes(data[expected_start : expected_start + _MAX_HEADER]).strip():
            # a last header fastwarc gave up on without a word
            if final:
                count_bad(counts, "cut_short")
            else:
                yield _Tail(expected_start)
    except BaseException as exc:
        if not _is_parse_failure(exc):
            raise
        if not final and _HEADER_END.search(data, expected_start) is None:
            yield _Tail(expected_start)  # the data ends inside this record's header
            return
        if expected_start != offset:
            # the record before framed well, so this one starts where it should: fastwarc may have lost its place
            # (a payload it could not decode); a fresh start there decides, and counts it if it fails again
            yield _Restart(expected_start)
            return
        count_bad(counts, "bad_header")
        resume = _next_version_line(data, expected_start + 1)
        if resume >= 0:
            yield _Restart(resume)


def records_in_buffer(data: Buffer, counts: Counter, final: bool = True) -> Iterator[ArchiveRecord]:
    """Every record of plain WARC data, each bad stretch counted once. Returns (as a generator's return value) the
    offset of a record the data ends inside of when not `final`, else None."""
    offset = _next_version_line(data, 0)
    if offset != 0 and data[: offset if offset >= 0 else len(data)].strip():
        count_bad(counts, "junk")
    while offset >= 0:
        next_offset = -1
        for item in _records_from(data, offset, counts, final):
            if isinstance(item, _Tail):
                return item.offset
            if isinstance(item, _Restart):
                next_offset = item.offset
            else:
                yield item
        if 0 <= next_offset <= offset:  # never loop in place
            next_offset = _next_version_line(data, offset + 1)
        offset = next_offset
    return None


def records_in_members(members: Iterator[Buffer | None], counts: Counter) -> Iterator[ArchiveRecord]:
    """Records of inflated gzip members (None stands for a corrupt one). A record normally fills one member; one
    that runs on into the following members (some writers split records) is read across them."""
    tail: Buffer = b""
    for member in members:
        if member is None:  # counted by gzip_members; a record it cut off is lost with it
            tail = b""
            continue
        data = tail + member if tail else member
        tail_at = yield from records_in_buffer(data, counts, final=False)
        tail = data[tail_at:] if tail_at is not None else b""
        if len(tail) > _MAX_CARRIED:
            count_bad(counts, "cut_short")
            tail = b""
    if tail.strip():
        yield from records_in_buffer(tail, counts, final=True)


# ---- files -----------------------------------------------------------------------------------------------------------


def iter_records(path: Path, fmt: FileFormat, counts: Counter) -> Iterator[ArchiveRecord]:
    """Every readable record of a WARC or WAT file of any supported compression."""
    if path.stat().st_size == 0:
        return
    with open(path, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        if fmt.compression == "gzip":
            yield from records_in_members(gzip_members(mapped, counts), counts)
        elif fmt.compression in ("lz4", "zstd"):
            with tempfile.TemporaryFile(prefix="fairsift-warc-") as inflated:
                inflate_frames(mapped, fmt.compression, inflated, counts)
                inflated.flush()
                if inflated.tell() == 0:
                    return
                with mmap.mmap(inflated.fileno(), 0, access=mmap.ACCESS_READ) as inflated_map:
                    yield from records_in_buffer(inflated_map, counts)
        else:
            yield from records_in_buffer(mapped, counts)
