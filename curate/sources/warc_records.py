"""WARC records out of real, damaged files: fastwarc does the parsing; this module decides where it starts and what
it is handed, so that one bad record costs that record and is counted under a named reason, never the file.

How a file is read
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
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastwarc.stream_io import Lz4Reader, ZstdReader
from fastwarc.warc import ArchiveIterator, WarcRecord

from curate.sources.formats import LZ4_MAGIC, ZSTD_MAGIC, FileFormat

BAD_RECORD_REASONS = ("corrupt_compression", "junk", "bad_header", "cut_short", "bad_http", "bad_wat_json")
Buffer = bytes | mmap.mmap

_VERSION_LINE = re.compile(rb"WARC/[01]\.\d{1,2}\r?\n")
_VERSION_LINE_AT_LINE_START = re.compile(rb"\nWARC/[01]\.\d{1,2}\r?\n")
_VERSION_LINE_BYTES = 14  # the longest line the pattern above matches
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:[ \t]*\d+")
_READ_CHUNK = 1 << 20
_SPILL_BYTES = 64 << 20  # an inflated member larger than this goes to a temporary file, not memory
_GZIP_MAGIC = b"\x1f\x8b\x08"  # gzip member header: magic number + deflate
_PROBE_CHUNK = 512  # a member's gzip and deflate headers fit in a few hundred bytes...
_PROBE_LIMIT = 1 << 16  # ...so a candidate that yields no record start within this much is not one
_MAX_HEADER = 1 << 16  # a WARC record header is far shorter; bounds the search for its end
_TRAILER_SLACK = 4  # CR/LF bytes allowed between a record's block and the next record
_MAX_CARRIED = 256 << 20  # a record split over gzip members is joined up to this size


def count_bad(counts: Counter, reason: str) -> None:
    counts["warc_bad_records"] += 1
    counts[f"warc_bad_records.{reason}"] += 1


def bad_record_reasons(counts: Counter) -> dict[str, int]:
    return {reason: counts[f"warc_bad_records.{reason}"] for reason in BAD_RECORD_REASONS}


@dataclass
class ArchiveRecord:
    """A fastwarc record plus what the framing check learnt about it."""

    record: WarcRecord
    bare_lf: bool  # header lines end in a bare LF: parse the HTTP headers leniently


# ---- a buffer as a stream ---------------------------------------------------------------------------------------------


class BufferReader(io.RawIOBase):
    """A read-only stream over bytes or an mmap, starting at `offset`, without copying the buffer."""

    def __init__(self, data: Buffer, offset: int):
        super().__init__()
        self._data, self._position = data, offset

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        chunk = self._data[self._position : self._position + len(target)]
        target[: len(chunk)] = chunk
        self._position += len(chunk)
        return len(chunk)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._data)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position


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


# ---- gzip members ----------------------------------------------------------------------------------------------------


@contextmanager
def _spill_buffer():
    """Collects inflated bytes in memory, moving them to a memory-mapped temporary file past _SPILL_BYTES."""
    state: dict = {"chunks": [], "size": 0, "file": None}

    def write(chunk: bytes) -> None:
        state["size"] += len(chunk)
        if state["file"] is None and state["size"] > _SPILL_BYTES:
            state["file"] = tempfile.TemporaryFile(prefix="fairsift-warc-")
            state["file"].writelines(state["chunks"])
            state["chunks"] = []
        if state["file"] is not None:
            state["file"].write(chunk)
        else:
            state["chunks"].append(chunk)

    def finish() -> Buffer:
        if state["file"] is None:
            return b"".join(state["chunks"])
        state["file"].flush()
        state["map"] = mmap.mmap(state["file"].fileno(), 0, access=mmap.ACCESS_READ)
        return state["map"]

    try:
        yield write, finish
    finally:
        if state.get("map") is not None:
            state["map"].close()
        if state["file"] is not None:
            state["file"].close()


def _inflate_member(data: Buffer, start: int, write: Callable[[bytes], None]) -> int | None:
    """Inflate the gzip member at start through write; the offset just past it, or None when it is corrupt or the
    data ends inside it."""
    decompressor, position = zlib.decompressobj(wbits=31), start
    try:
        while not decompressor.eof:
            chunk = data[position : position + _READ_CHUNK]
            if not chunk:
                return None
            write(decompressor.decompress(chunk))
            position += len(chunk)
    except zlib.error:
        return None
    return position - len(decompressor.unused_data)


def _member_head(data: Buffer, start: int, size: int) -> bytes:
    """The first inflated bytes of the gzip member at start (b"" when it does not inflate)."""
    decompressor, position, head = zlib.decompressobj(wbits=31), start, b""
    try:
        while len(head) < size and position < start + _PROBE_LIMIT and not decompressor.eof:
            chunk = data[position : position + _PROBE_CHUNK]
            if not chunk:
                break
            head += decompressor.decompress(chunk, size - len(head))
            position += len(chunk)
    except zlib.error:
        return b""
    return head


def starts_warc_record(head: bytes) -> bool:
    return head.startswith(b"WARC/")


def gzip_members(data: Buffer, counts: Counter, starts_record: Callable[[bytes], bool] = starts_warc_record,
                 probe_bytes: int = 8) -> Iterator[Buffer | None]:
    """Inflated bytes of each gzip member. A corrupt or cut-short member, or junk between members, counts as one bad
    record and yields None; reading goes on at the next member whose first `probe_bytes` inflated bytes start a
    record."""
    position = 0
    while position < len(data):
        with _spill_buffer() as (write, finish):
            end = _inflate_member(data, position, write)
            if end is not None:
                position = end
                yield finish()
                continue
        count_bad(counts, "corrupt_compression")
        yield None
        position = data.find(_GZIP_MAGIC, position + 1)
        while position >= 0 and not starts_record(_member_head(data, position, probe_bytes)):
            position = data.find(_GZIP_MAGIC, position + 1)
        if position < 0:
            return


# ---- LZ4 and Zstandard frames ----------------------------------------------------------------------------------------


def _lz4_frame_end(data: Buffer, start: int) -> int | None:
    """End offset of the LZ4 frame at start (read from its header and block sizes, nothing inflated), or None when
    the header is not one or the data ends inside the frame."""
    position = start + 4
    if position + 3 > len(data):
        return None
    flags = data[position]
    if flags >> 6 != 1:  # frame format version 01
        return None
    position += 2 + (8 if flags & 0x08 else 0) + (4 if flags & 0x01 else 0) + 1  # FLG BD [size] [dict id] HC
    block_checksum, content_checksum = bool(flags & 0x10), bool(flags & 0x04)
    while True:
        if position + 4 > len(data):
            return None
        size = int.from_bytes(data[position : position + 4], "little")
        position += 4
        if size == 0:  # end mark
            break
        position += (size & 0x7FFFFFFF) + (4 if block_checksum else 0)
    position += 4 if content_checksum else 0
    return position if position <= len(data) else None


def _zstd_frame_end(data: Buffer, start: int) -> int | None:
    """End offset of the Zstandard frame at start (from its header and block headers), or None."""
    position = start + 4
    if position >= len(data):
        return None
    descriptor = data[position]
    single_segment, checksum = bool(descriptor & 0x20), bool(descriptor & 0x04)
    position += 1 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    position += (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    while True:
        if position + 3 > len(data):
            return None
        header = int.from_bytes(data[position : position + 3], "little")
        position += 3
        block_type = (header >> 1) & 0x03
        if block_type == 3:  # reserved: not a frame
            return None
        position += 1 if block_type == 1 else header >> 3  # an RLE block holds one byte
        if header & 0x01:  # last block
            break
    position += 4 if checksum else 0
    return position if position <= len(data) else None


def _inflate_frames(data: Buffer, compression: str, target, counts: Counter) -> None:
    """Inflate LZ4 or Zstandard data into target, one frame at a time. fastwarc's readers inflate a stream of frames
    but neither say where a frame ends nor hand over what a read inflated before an error, so the frame ends are
    read from the frame and block headers here (a few lines of each format's spec; nothing is inflated by hand).
    A corrupt or cut-off frame, or bytes between frames that are none, count as one bad record each."""
    reader_type, magic, frame_end = ((Lz4Reader, LZ4_MAGIC, _lz4_frame_end) if compression == "lz4"
                                     else (ZstdReader, ZSTD_MAGIC, _zstd_frame_end))
    position = 0
    while position < len(data):
        end = frame_end(data, position) if data[position : position + 4] == magic else None
        if end is None:
            count_bad(counts, "corrupt_compression")
            position = data.find(magic, position + 1)
            if position < 0:
                return
            continue
        mark = target.tell()
        try:
            reader = reader_type(BufferReader(memoryview(data)[position:end], 0))
            while chunk := reader.read(_READ_CHUNK):
                target.write(chunk)
        except OSError:
            count_bad(counts, "corrupt_compression")
            target.seek(mark)
            target.truncate()
        position = end


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
                _inflate_frames(mapped, fmt.compression, inflated, counts)
                inflated.flush()
                if inflated.tell() == 0:
                    return
                with mmap.mmap(inflated.fileno(), 0, access=mmap.ACCESS_READ) as inflated_map:
                    yield from records_in_buffer(inflated_map, counts)
        else:
            yield from records_in_buffer(mapped, counts)
