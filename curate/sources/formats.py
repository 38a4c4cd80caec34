"""What a crawl source file holds, told by its first bytes; the file name decides only when the bytes cannot.

Compression by magic number: gzip (1f 8b), LZ4 frame (04 22 4d 18), Zstandard frame (28 b5 2f fd). The container by
the first decompressed bytes: "WARC/" starts a WARC or WAT file (WAT is WARC with metadata records), "filedesc://"
an ARC file, "<!doctype html" or "<html" a page. So a plain WARC named .gz, gzip data named .warc, a .warc.lz4 and
an .arc.gz are all read for what they are. A file whose bytes say nothing (an HTML fragment, a WARC that opens with
junk) falls back to its name: .html/.htm/.xhtml, .warc/.wat/.wet, .arc, each optionally followed by a compression
suffix.
"""

from __future__ import annotations

import io
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

from fastwarc.stream_io import Lz4Reader, ZstdReader

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
LZ4_MAGIC = b"\x04\x22\x4d\x18"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
COMPRESSION_SUFFIXES = {"gzip": (".gz",), "lz4": (".lz4",), "zstd": (".zst", ".zstd")}
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
WARC_SUFFIXES = (".warc", ".wat", ".wet")
ARC_SUFFIXES = (".arc",)
_HEAD_BYTES = 64  # enough for every signature below
_RAW_HEAD_BYTES = 1 << 16  # compressed bytes read to inflate _HEAD_BYTES (a gzip header may hold a long file name)
_HTML_STARTS = (b"<!doctype html", b"<html")
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True)
class FileFormat:
    container: str  # "warc" (WARC and WAT), "arc" or "html"
    compression: str | None = None  # None, "gzip", "lz4" or "zstd"
    by_name: bool = False  # the bytes did not say; the file name did

    def describe(self) -> str:
        return self.container.upper() + (f" ({self.compression})" if self.compression else "")


def compression_of(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(LZ4_MAGIC):
        return "lz4"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


def _inflated_head(path: Path, compression: str) -> bytes:
    """The first decompressed bytes of a compressed file; b"" when they cannot be had (corrupt or cut short)."""
    try:
        if compression == "gzip":
            with open(path, "rb") as raw:
                return zlib.decompressobj(wbits=31).decompress(raw.read(_RAW_HEAD_BYTES), _HEAD_BYTES)
        reader_type = Lz4Reader if compression == "lz4" else ZstdReader
        with open(path, "rb") as raw:
            return reader_type(io.BytesIO(raw.read(_RAW_HEAD_BYTES))).read(_HEAD_BYTES)
    except (OSError, ValueError, zlib.error):
        return b""


def container_of(head: bytes) -> str | None:
    """"warc", "arc" or "html" from the first (decompressed) bytes of a file; None when they say nothing."""
    for bom in _BOMS:
        if head.startswith(bom):
            head = head[len(bom):]
            break
    text = head.lstrip(b"\r\n\t ")
    if text.startswith(b"WARC/"):
        return "warc"
    if text.startswith(b"filedesc://"):
        return "arc"
    if text.lower().startswith(_HTML_STARTS):
        return "html"
    return None


def _strip_compression_suffix(name: str, compression: str | None) -> str:
    for suffixes in COMPRESSION_SUFFIXES.values() if compression is None else [COMPRESSION_SUFFIXES[compression]]:
        for suffix in suffixes:
            if name.endswith(suffix):
                return name[: -len(suffix)]
    return name


def container_by_name(name: str, compression: str | None) -> str | None:
    stem = _strip_compression_suffix(name.lower(), compression)
    if stem.endswith(WARC_SUFFIXES):
        return "warc"
    if stem.endswith(ARC_SUFFIXES):
        return "arc"
    if stem.endswith(HTML_SUFFIXES) and compression is None:
        return "html"
    return None


def sniff(path: Path) -> FileFormat | None:
    """The format of a file (OSError when it cannot be read), or None when it is none of the crawlable formats."""
    with open(path, "rb") as raw:
        head = raw.read(_HEAD_BYTES)
    compression = compression_of(head)
    inner = _inflated_head(path, compression) if compression else head
    container = container_of(inner)
    if container == "html" and compression:
        container = None  # compressed pages are not a crawl source; a stray .html.gz is passed over
    if container is not None:
        return FileFormat(container, compression)
    by_name = container_by_name(path.name, compression)
    if by_name and compression is None:  # junk before the first gzip member, say: the name's compression holds
        compression = compression_by_name(path.name)
    return FileFormat(by_name, compression, by_name=True) if by_name else None


def compression_by_name(name: str) -> str | None:
    for compression, suffixes in COMPRESSION_SUFFIXES.items():
        if name.lower().endswith(suffixes):
            return compression
    return None


def crawlable_files(folder: Path) -> tuple[list[tuple[Path, FileFormat]], int, list[tuple[Path, OSError]]]:
    """(files to crawl with their format, in sorted relative-path order; how many other files were passed over;
    files that could not be read, with the error)."""
    found, skipped, unreadable = [], 0, []
    for path in sorted((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.relative_to(folder).as_posix()):
        try:
            fmt = sniff(path)
        except OSError as exc:
            unreadable.append((path, exc))
            continue
        if fmt is None:
            skipped += 1
        else:
            found.append((path, fmt))
    return found, skipped, unreadable
