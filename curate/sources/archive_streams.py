"""The byte level of web-archive reading: bad-record counters, a zero-copy stream over a buffer, and the compressed
containers (gzip members, LZ4 and Zstandard frames) split so that one corrupt member or frame costs only itself.
See curate.sources.warc_records for how records are read out of the inflated bytes.
"""

from __future__ import annotations

import io
import mmap
import tempfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from fastwarc.stream_io import Lz4Reader, ZstdReader

from curate.sources.formats import LZ4_MAGIC, ZSTD_MAGIC

BAD_RECORD_REASONS = ("corrupt_compression", "junk", "bad_header", "cut_short", "bad_http", "bad_wat_json")
Buffer = bytes | mmap.mmap

READ_CHUNK = 1 << 20
_SPILL_BYTES = 64 << 20  # an inflated member larger than this goes to a temporary file, not memory
_GZIP_MAGIC = b"\x1f\x8b\x08"  # gzip member header: magic number + deflate
_PROBE_CHUNK = 512  # a member's gzip and deflate headers fit in a few hundred bytes...
_PROBE_LIMIT = 1 << 16  # ...so a candidate that yields no record start within this much is not one


def count_bad(counts: Counter, reason: str) -> None:
    counts["warc_bad_records"] += 1
    counts[f"warc_bad_records.{reason}"] += 1


def bad_record_reasons(counts: Counter) -> dict[str, int]:
    return {reason: counts[f"warc_bad_records.{reason}"] for reason in BAD_RECORD_REASONS}


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
            chunk = data[position : position + READ_CHUNK]
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


def inflate_frames(data: Buffer, compression: str, target, counts: Counter) -> None:
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
            while chunk := reader.read(READ_CHUNK):
                target.write(chunk)
        except OSError:
            count_bad(counts, "corrupt_compression")
            target.seek(mark)
            target.truncate()
        position = end
