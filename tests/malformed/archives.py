"""Web-archive bytes written by hand, so that tests can make every defect real files carry: bare LF line endings,
ClueWeb09's WARC/0.18 and its Content-Lengths, wrong lengths, cut-off and corrupt compression, WAT envelopes with any
HTTP status, ARC files. Well-formed records are checked against warcio in tests/test_crawl.py.
"""

from __future__ import annotations

import gzip
import io
import json
import uuid

from fastwarc.stream_io import Lz4Writer, ZstdWriter

CRLF = b"\r\n"
LF = b"\n"


def page_html(images: list[tuple[str, str]], *, title: str = "A page", charset: str = "utf-8") -> bytes:
    """A small HTML page with one <img src alt> per (src, alt)."""
    imgs = "\n".join(f'<img src="{src}" alt="{alt}">' for src, alt in images)
    return (f'<!doctype html><html><head><meta charset="{charset}"><title>{title}</title></head>'
            f"<body>\n{imgs}\n</body></html>\n").encode(charset)


def http_response(body: bytes, *, status: str = "200 OK", content_type: str = "text/html; charset=utf-8",
                  newline: bytes = CRLF, extra_headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in extra_headers)]
    return newline.join(line.encode("latin-1") for line in lines) + newline + newline + body


def warc_record(uri: str | None, block: bytes, *, record_type: str = "response",
                content_type: str = "application/http; msgtype=response", version: str = "WARC/1.0",
                newline: bytes = CRLF, length: int | None = None, extra: tuple[tuple[str, str], ...] = (),
                trailer: bytes | None = None) -> bytes:
    """One WARC record; `length` overrides the Content-Length (a wrong one), `trailer` the CRLF CRLF after it."""
    headers = [version, f"WARC-Type: {record_type}", f"WARC-Record-ID: <urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{uri}|{len(block)}')}>",
               "WARC-Date: 2009-03-01T08:43:19Z"]
    if uri is not None:
        headers.append(f"WARC-Target-URI: {uri}")
    headers += [f"Content-Type: {content_type}", *(f"{k}: {v}" for k, v in extra),
                f"Content-Length: {len(block) if length is None else length}"]
    head = newline.join(h.encode("utf-8") for h in headers) + newline + newline
    return head + block + (newline + newline if trailer is None else trailer)


def warc_response(uri: str, body: bytes, *, status: str = "200 OK", content_type: str = "text/html; charset=utf-8",
                  http_newline: bytes = CRLF, **record_kwargs) -> bytes:
    return warc_record(uri, http_response(body, status=status, content_type=content_type, newline=http_newline),
                       **record_kwargs)


def clueweb09_response(uri: str, body: bytes, trec_id: str) -> bytes:
    """A response as the ClueWeb09 files hold it: WARC/0.18, every header line ending in a bare LF, and a
    Content-Length that still counts the CRs stripped from the HTTP header lines."""
    http_crlf = http_response(body, extra_headers=(("Server", "Apache"),))
    http_lf = http_crlf.replace(b"\r\n", b"\n", http_crlf.count(b"\r\n", 0, http_crlf.index(b"\r\n\r\n") + 4))
    return warc_record(uri, http_lf, version="WARC/0.18", newline=LF, length=len(http_crlf),
                       extra=(("WARC-TREC-ID", trec_id),))


def warcinfo(newline: bytes = CRLF, version: str = "WARC/1.0") -> bytes:
    return warc_record(None, b"software: fairsift-tests" + newline + b"format: WARC File Format 1.0" + newline,
                       record_type="warcinfo", content_type="application/warc-fields", newline=newline, version=version)


def wat_envelope(url: str, links: list[dict], *, status: str | int | None = "200", base: str | None = None) -> dict:
    """A WAT JSON document as Common Crawl writes it for an HTML response (only the fields crawl reads, and a few
    around them)."""
    response = {"Headers": {"Content-Type": "text/html"}, "HTML-Metadata": {"Head": {"Title": "t"}, "Links": links}}
    if status is not None:
        response["Response-Message"] = {"Status": str(status), "Version": "HTTP/1.1", "Reason": "r"}
    if base is not None:
        response["HTML-Metadata"]["Head"]["Base"] = base
    return {"Envelope": {"Format": "WARC",
                         "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": url},
                         "Payload-Metadata": {"Actual-Content-Type": "application/http; msgtype=response",
                                              "HTTP-Response-Metadata": response}}}


def wat_record(url: str, envelope: dict | bytes, **record_kwargs) -> bytes:
    payload = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return warc_record(url, payload, record_type="metadata", content_type="application/json", **record_kwargs)


def img_link(src: str, alt: str | None = None) -> dict:
    link = {"path": "IMG@/src", "url": src}
    if alt is not None:
        link["alt"] = alt
    return link


# ---- compression -------------------------------------------------------------------------------------------------------


def gzip_members(records: list[bytes]) -> bytes:
    """One gzip member per record, as WARC writers do (mtime fixed, so the bytes are reproducible)."""
    return b"".join(gzip.compress(r, mtime=0) for r in records)


def _frames(writer_type, records: list[bytes]) -> bytes:
    buffer = io.BytesIO()
    writer = writer_type(buffer)
    for record in records:
        writer.write(record)
        writer.finish()  # one frame per record
    writer.flush()
    return buffer.getvalue()


def lz4_frames(records: list[bytes]) -> bytes:
    return _frames(Lz4Writer, records)


def zstd_frames(records: list[bytes]) -> bytes:
    return _frames(ZstdWriter, records)


# ---- ARC ---------------------------------------------------------------------------------------------------------------


def arc_record(url: str, block: bytes, *, ip: str = "192.0.2.1", date: str = "20090101000000",
               content_type: str = "text/html", length: int | None = None) -> bytes:
    """One ARC (version 1) record: a header line "URL IP date type length", the block, a newline."""
    header = f"{url} {ip} {date} {content_type} {len(block) if length is None else length}\n".encode("utf-8")
    return header + block + b"\n"


def arc_filedesc(name: str = "test.arc") -> bytes:
    block = b"1 0 fairsift-tests\nURL IP-address Archive-date Content-type Archive-length\n"
    return arc_record(f"filedesc://{name}", block, ip="0.0.0.0", content_type="text/plain")


def arc_file(records: list[bytes], *, gzipped: bool = False) -> bytes:
    members = [arc_filedesc(), *records]
    return gzip_members(members) if gzipped else b"".join(members)
