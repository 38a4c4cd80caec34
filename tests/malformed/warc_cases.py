"""WARC, WAT and ARC cases: every defect of issue 9 (bare LF, ClueWeb09, names that lie, ARC, LZ4, non-2xx WAT),
wrong lengths, junk, cut-off and corrupt compression, odd HTTP blocks; each in every compression, under its right
name and a wrong one, given as a file and inside a folder."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tests.malformed import archives as A
from tests.malformed.corpus import Case, Expect

COMPRESSIONS = ("plain", "gzip", "lz4", "zstd")
RIGHT_NAME = {"plain": "x.warc", "gzip": "x.warc.gz", "lz4": "x.warc.lz4", "zstd": "x.warc.zst"}
WRONG_NAME = {"plain": "x.warc.gz", "gzip": "x.warc", "lz4": "x.wat.gz", "zstd": "x.dat"}
RIGHT_NAME_ONLY = "by_name"  # a case whose bytes do not say WARC: only its name can


@dataclass
class Pages:
    """Three pages (one image each) of a case, with the pair each must give."""

    tag: str
    n: int = 3

    def url(self, i: int) -> str:
        return f"http://{self.tag}.example/p{i}.html"

    def html(self, i: int) -> bytes:
        return A.page_html([(f"img/{i}.jpg", self.caption(i))])

    def caption(self, i: int) -> str:
        return f"Photo {i} of the harbour at {self.tag}"

    def pair(self, i: int) -> tuple[str, str]:
        return f"http://{self.tag}.example/img/{i}.jpg", self.caption(i)

    def response(self, i: int, **kwargs) -> bytes:
        return A.warc_response(self.url(i), self.html(i), **kwargs)


@dataclass
class Defect:
    """Records (and junk) of a case, and what must come of them. `chunks` are compressed one by one (one gzip member
    or LZ4/zstd frame each), as WARC writers do."""

    name: str
    chunks: Callable[[Pages], list[bytes]]
    pairs: Callable[[Pages], list[int]] = lambda p: list(range(p.n))  # pages whose pair must come out, in order
    optional: Callable[[Pages], list[int]] = lambda p: []  # pages whose pair may come out (a damaged record)
    counters: dict[str, int] = field(default_factory=dict)
    counters_min: dict[str, int] = field(default_factory=dict)
    flags: str = ""  # RIGHT_NAME_ONLY


def _three(p: Pages, **kwargs_by_index) -> list[bytes]:
    return [p.response(i, **kwargs_by_index.get(f"r{i}", {})) for i in range(p.n)]


def _replace(record: bytes, old: bytes, new: bytes) -> bytes:
    assert old in record, (old, record[:300])
    return record.replace(old, new, 1)


def _middle(p: Pages, edit: Callable[[bytes], bytes]) -> list[bytes]:
    records = _three(p)
    records[1] = edit(records[1])
    return records


def _http_len(p: Pages, i: int) -> int:
    return len(A.http_response(p.html(i)))


def _chunked(body: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(body[k:k + 50]), body[k:k + 50]) for k in range(0, len(body), 50)) + b"0\r\n\r\n"


def _custom_http(p: Pages, i: int, head: bytes, body: bytes) -> bytes:
    return A.warc_record(p.url(i), head + b"\r\n\r\n" + body)


BAD = "warc_bad_records"
REASON = "warc_bad_record_reasons."

DEFECTS: list[Defect] = [
    Defect("clean", _three, counters={BAD: 0}),
    Defect("bare_lf_http_headers", lambda p: _three(p, r0={"http_newline": A.LF}, r1={"http_newline": A.LF},
                                                    r2={"http_newline": A.LF}),
           counters={BAD: 0, "warc_bare_lf_records": 3}),
    Defect("bare_lf_everywhere", lambda p: _three(p, **{f"r{i}": {"http_newline": A.LF, "newline": A.LF}
                                                         for i in range(3)}),
           counters={BAD: 0, "warc_bare_lf_records": 3}),
    Defect("clueweb09", lambda p: [A.warcinfo(A.LF, "WARC/0.18")] + [
        A.clueweb09_response(p.url(i), p.html(i), f"clueweb09-en0000-00-{i:05d}") for i in range(3)],
           counters={BAD: 0, "warc_bare_lf_records": 4, "warc_wrong_length_records": 3}),
    Defect("mixed_line_endings", lambda p: _three(p, r1={"http_newline": A.LF, "newline": A.LF}),
           counters={BAD: 0, "warc_bare_lf_records": 1}),
    Defect("version_1_1", lambda p: _three(p, r0={"version": "WARC/1.1"}, r1={"version": "WARC/1.1"},
                                           r2={"version": "WARC/1.1"}), counters={BAD: 0}),
    Defect("version_0_17", lambda p: _three(p, r0={"version": "WARC/0.17"}, r1={"version": "WARC/0.17"},
                                            r2={"version": "WARC/0.17"}), counters={BAD: 0}),
    Defect("warcinfo_request_revisit_around", lambda p: [A.warcinfo(), p.response(0),
                                                         A.warc_record(p.url(0), b"GET / HTTP/1.1\r\n\r\n", record_type="request",
                                                                       content_type="application/http; msgtype=request"),
                                                         A.warc_record(p.url(1), b"", record_type="revisit"),
                                                         p.response(1), p.response(2)],
           counters={BAD: 0, "warc_records": 6}),
    Defect("length_too_short", lambda p: _three(p, r1={"length": _http_len(p, 1) - 30}),
           pairs=lambda p: [0, 2], optional=lambda p: [1], counters={BAD: 1, REASON + "junk": 1}),
    Defect("length_too_long", lambda p: _three(p, r1={"length": _http_len(p, 1) + 200}),
           counters={BAD: 0, "warc_wrong_length_records": 1}),
    Defect("length_too_long_last", lambda p: _three(p, r2={"length": _http_len(p, 2) + 200}),
           pairs=lambda p: [0, 1], counters={BAD: 1, REASON + "cut_short": 1}),
    Defect("length_huge", lambda p: _middle(p, lambda r: _replace(r, b"Content-Length: %d\r\n\r\nHTTP" % _http_len(p, 1),
                                                                   b"Content-Length: 999999999999999\r\n\r\nHTTP")),
           pairs=lambda p: [0, 2], optional=lambda p: [1], counters_min={}),
    Defect("length_not_a_number", lambda p: _middle(p, lambda r: _replace(r, b"Content-Length: %d\r\n\r\nHTTP" % _http_len(p, 1),
                                                                           b"Content-Length: many\r\n\r\nHTTP")),
           pairs=lambda p: [0, 2], counters_min={BAD: 1}),
    Defect("length_negative", lambda p: _middle(p, lambda r: _replace(r, b"Content-Length: %d\r\n\r\nHTTP" % _http_len(p, 1),
                                                                       b"Content-Length: -5\r\n\r\nHTTP")),
           pairs=lambda p: [0, 2], counters_min={BAD: 1}),
    Defect("length_missing", lambda p: _middle(p, lambda r: _replace(r, b"Content-Length: %d\r\n" % _http_len(p, 1), b"")),
           pairs=lambda p: [0, 2], counters_min={BAD: 1}),
    Defect("junk_text_between", lambda p: [p.response(0), b"this is not a record\r\n\r\n", p.response(1), p.response(2)],
           counters={BAD: 1}),
    Defect("junk_binary_between", lambda p: [p.response(0), bytes(range(256)) * 4, p.response(1), p.response(2)],
           counters={BAD: 1}),
    Defect("junk_before_first", lambda p: [b"GARBAGE AT THE START " * 10] + _three(p), counters={BAD: 1},
           flags=RIGHT_NAME_ONLY),
    Defect("junk_after_last", lambda p: _three(p) + [b"trailing garbage with no record"], counters={BAD: 1}),
    Defect("header_line_without_colon", lambda p: [p.response(0),
                                                   b"WARC/1.0\r\nthis header line has no colon\r\n\r\ngarbage\r\n\r\n",
                                                   p.response(1), p.response(2)], counters={BAD: 1}),
    Defect("header_line_100k", lambda p: _middle(p, lambda r: _replace(r, b"WARC-Type:", b"X-Long: " + b"y" * 100_000 + b"\r\nWARC-Type:")),
           pairs=lambda p: [0, 2], counters={BAD: 1, REASON + "bad_header": 1}),
    Defect("ten_thousand_header_lines", lambda p: _middle(p, lambda r: _replace(r, b"WARC-Type:", b"X-A: b\r\n" * 10_000 + b"WARC-Type:")),
           pairs=lambda p: [0, 2], optional=lambda p: [1], counters_min={}),
    Defect("response_without_target_uri", lambda p: [p.response(0), A.warc_record(None, A.http_response(p.html(1))),
                                                     p.response(2)],
           pairs=lambda p: [0, 2], counters={BAD: 1, REASON + "bad_header": 1}),
    Defect("http_status_not_a_number", lambda p: _middle(p, lambda r: _replace(r, b"HTTP/1.1 200 OK", b"HTTP/1.1 abc OK")),
           pairs=lambda p: [0, 2], counters={BAD: 1, REASON + "bad_http": 1}),
    Defect("http_block_without_status_line", lambda p: [p.response(0), A.warc_record(p.url(1), p.html(1)), p.response(2)],
           pairs=lambda p: [0, 2], counters={BAD: 1, REASON + "bad_http": 1}),
    Defect("empty_http_block", lambda p: [p.response(0), A.warc_record(p.url(1), b""), p.response(2)],
           pairs=lambda p: [0, 2], counters={BAD: 1, REASON + "bad_http": 1}),
    Defect("status_404", lambda p: _three(p, r1={"status": "404 Not Found"}), pairs=lambda p: [0, 2],
           counters={BAD: 0, "warc_not_2xx": 1}),
    Defect("status_500_and_301", lambda p: _three(p, r0={"status": "500 Oops"}, r1={"status": "301 Moved"}),
           pairs=lambda p: [2], counters={BAD: 0, "warc_not_2xx": 2}),
    Defect("status_204", lambda p: _three(p, r1={"status": "204 No Content"}), counters={BAD: 0}),
    Defect("not_html", lambda p: _three(p, r1={"content_type": "image/jpeg"}), pairs=lambda p: [0, 2],
           counters={BAD: 0, "warc_not_html": 1}),
    Defect("xhtml", lambda p: _three(p, r1={"content_type": "application/xhtml+xml; charset=utf-8"}), counters={BAD: 0}),
    Defect("content_type_missing", lambda p: [p.response(0), _custom_http(p, 1, b"HTTP/1.1 200 OK", p.html(1)),
                                              p.response(2)], pairs=lambda p: [0, 2], counters={BAD: 0, "warc_not_html": 1}),
    Defect("chunked_transfer_encoding", lambda p: [p.response(0), _custom_http(
        p, 1, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked", _chunked(p.html(1))),
        p.response(2)], counters={BAD: 0}),
    Defect("chunked_header_but_plain_body", lambda p: [p.response(0), _custom_http(
        p, 1, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked", p.html(1)), p.response(2)],
           pairs=lambda p: [0, 2], optional=lambda p: [1], counters_min={}),
    Defect("gzip_content_encoding", lambda p: [p.response(0), _custom_http(
        p, 1, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip", gzip.compress(p.html(1), mtime=0)),
        p.response(2)], counters={BAD: 0}),
    Defect("gzip_content_encoding_but_plain_body", lambda p: [p.response(0), _custom_http(
        p, 1, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip", p.html(1)), p.response(2)],
           pairs=lambda p: [0, 2], optional=lambda p: [1], counters_min={}),
    Defect("payload_holds_a_version_line", lambda p: _middle(p, lambda r: r), counters={BAD: 0}),  # see _pages_for
    Defect("duplicate_record", lambda p: [p.response(0), p.response(1), p.response(1), p.response(2)],
           counters={BAD: 0, "dropped.duplicate_across_pages": 1}),
    Defect("only_warcinfo", lambda p: [A.warcinfo()], pairs=lambda p: [], counters={BAD: 0, "sources_without_pages": 1}),
    Defect("binary_garbage", lambda p: [bytes(range(256)) * 40], pairs=lambda p: [],
           counters={BAD: 1, "sources_without_pages": 1}, flags=RIGHT_NAME_ONLY),
]


class _VersionLinePages(Pages):
    """Pages whose text holds "WARC/1.0" on a line of its own, as a page documenting the format would."""

    def html(self, i: int) -> bytes:
        return super().html(i).replace(b"<body>", b"<body><pre>\r\nWARC/1.0\r\nWARC-Type: response\r\n</pre>")


def _pages_for(defect: Defect, tag: str) -> Pages:
    return _VersionLinePages(tag) if defect.name == "payload_holds_a_version_line" else Pages(tag)


def compress(chunks: list[bytes], compression: str) -> bytes:
    if compression == "plain":
        return b"".join(chunks)
    if compression == "gzip":
        return A.gzip_members(chunks)
    return A.lz4_frames(chunks) if compression == "lz4" else A.zstd_frames(chunks)


def _expect(defect: Defect, pages: Pages, extra_counters: dict | None = None) -> Expect:
    required = defect.pairs(pages)
    optional = defect.optional(pages)
    counters = {"files_unreadable": 0, "archive_files": 1, **defect.counters, **(extra_counters or {})}
    if optional:
        return Expect(pairs_include=[pages.pair(i) for i in required], counters=counters,
                      counters_min=defect.counters_min)
    return Expect(pairs=[pages.pair(i) for i in required], counters=counters, counters_min=defect.counters_min)


def _record_cases() -> Iterator[Case]:
    for defect in DEFECTS:
        for compression in COMPRESSIONS:
            names = [("right_name", RIGHT_NAME[compression])]
            if defect.flags != RIGHT_NAME_ONLY:
                names.append(("wrong_name", WRONG_NAME[compression]))
            for naming, file_name in names:
                for carrier in ("file", "folder") if naming == "right_name" else ("file",):
                    tag = f"{defect.name}-{compression}-{naming}-{carrier}".replace("_", "-")
                    pages = _pages_for(defect, tag)
                    path = file_name if carrier == "file" else f"folder/{file_name}"
                    expect = _expect(defect, pages)
                    if compression != "plain" and defect.name in ("junk_before_first", "junk_after_last",
                                                                  "junk_text_between", "junk_binary_between",
                                                                  "binary_garbage"):
                        # junk compressed as a member/frame of its own inflates fine: it is junk between records
                        expect.counters[REASON + "junk"] = expect.counters.pop(BAD)
                    yield Case("warc", tag, "crawl", _builder(path, defect.chunks, pages, compression), expect,
                               sources=[path if carrier == "file" else "folder"])


def _builder(path: str, chunks: Callable[[Pages], list[bytes]], pages: Pages, compression: str):
    return lambda: {path: compress(chunks(pages), compression)}


# ---- damage to the compression itself ---------------------------------------------------------------------------------


def _compression_cases() -> Iterator[Case]:
    for compression in ("gzip", "lz4", "zstd"):
        yield from _compression_cases_for(compression)


def _compression_cases_for(compression: str) -> Iterator[Case]:
    if True:  # one scope per compression: the builders run later, when the case is written
        def one(name, build, required, counters, counters_min=None, optional=()):
            tag = f"{name}-{compression}".replace("_", "-")
            pages = Pages(tag, 4)
            counters = {"files_unreadable": 0, **counters}
            pairs = [pages.pair(i) for i in required]
            expect = (Expect(pairs_include=pairs, counters=counters, counters_min=counters_min or {}) if optional
                      else Expect(pairs=pairs, counters=counters, counters_min=counters_min or {}))
            name = RIGHT_NAME[compression]
            return Case("warc", tag, "crawl", lambda: {name: build(pages)}, expect, sources=[name])

        def frames(p: Pages) -> list[bytes]:
            return [compress([p.response(i)], compression) for i in range(p.n)]

        def corrupt_second(p: Pages) -> bytes:
            f = frames(p)
            middle = bytearray(f[1])
            for k in range(len(middle) // 3, len(middle) // 3 + 24):
                middle[k] ^= 0x5A
            return f[0] + bytes(middle) + f[2] + f[3]

        # LZ4 frames carry no checksum here: a corrupt one may inflate to junk, counted as such
        yield one("corrupt_member", corrupt_second, [0, 2, 3], {}, {BAD: 0 if compression == "lz4" else 1},
                  optional=True)
        for fraction in (0.1, 0.5, 0.9):
            yield one(f"cut_inside_last_{int(fraction * 100)}",
                      lambda p, fr=fraction: b"".join(frames(p)[:3]) + frames(p)[3][: max(1, int(len(frames(p)[3]) * fr))],
                      [0, 1, 2], {BAD: 1, REASON + "corrupt_compression": 1})
            yield one(f"cut_inside_second_{int(fraction * 100)}",
                      lambda p, fr=fraction: frames(p)[0] + frames(p)[1][: max(1, int(len(frames(p)[1]) * fr))],
                      [0], {BAD: 1, REASON + "corrupt_compression": 1})
        yield one("junk_before_first_frame", lambda p: b"JUNKJUNK" + b"".join(frames(p)), [0, 1, 2, 3],
                  {BAD: 1, REASON + "corrupt_compression": 1})
        yield one("junk_between_frames", lambda p: frames(p)[0] + b"\x00JUNK\xff" * 7 + b"".join(frames(p)[1:]),
                  [0, 1, 2, 3], {BAD: 1, REASON + "corrupt_compression": 1})
        yield one("one_stream_for_all", lambda p: compress([b"".join(p.response(i) for i in range(p.n))], compression),
                  [0, 1, 2, 3], {BAD: 0})
        yield one("zero_padding_after", lambda p: b"".join(frames(p)) + b"\x00" * 512, [0, 1, 2, 3], {},
                  {BAD: 0})
        if compression == "gzip":
            yield one("record_split_over_members", lambda p: b"".join(
                gzip.compress(piece, mtime=0) for i in range(p.n)
                for piece in _split_three(p.response(i))), [0, 1, 2, 3], {BAD: 0})
            yield one("empty_members_between", lambda p: b"".join(f + gzip.compress(b"", mtime=0) for f in frames(p)),
                      [0, 1, 2, 3], {BAD: 0})
            yield one("members_with_file_names", lambda p: b"".join(_gzip_with_name(p.response(i), f"r{i}.warc")
                                                                    for i in range(p.n)), [0, 1, 2, 3], {BAD: 0})


def _split_three(record: bytes) -> list[bytes]:
    third = len(record) // 3
    return [record[:third], record[third: 2 * third], record[2 * third:]]


def _gzip_with_name(data: bytes, name: str) -> bytes:
    import io

    buffer = io.BytesIO()
    with gzip.GzipFile(filename=name, mode="wb", fileobj=buffer, mtime=0) as handle:
        handle.write(data)
    return buffer.getvalue()


# ---- plain data cut at every kind of place ------------------------------------------------------------------------------


def _truncation_cases() -> Iterator[Case]:
    for fraction in (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95):
        tag = f"plain-cut-in-last-record-{int(fraction * 100)}"
        pages = Pages(tag, 3)
        records = [pages.response(i) for i in range(3)]
        cut = len(records[2]) - 4  # never inside the trailer only
        keep = max(1, int(cut * fraction))
        yield Case("warc", tag, "crawl", lambda r=records, k=keep: {"x.warc": r[0] + r[1] + r[2][:k]},
                   Expect(pairs=[pages.pair(0), pages.pair(1)], counters={BAD: 1, "files_unreadable": 0}),
                   sources=["x.warc"])


# ---- empty and near-empty files -----------------------------------------------------------------------------------------


def _empty_cases() -> Iterator[Case]:
    for name, data in [("empty.warc", b""), ("empty.warc.gz", b""), ("empty.wat", b""), ("empty.arc", b""),
                       ("spaces.warc", b"\r\n \r\n\t\n"), ("empty-gzip.warc.gz", gzip.compress(b"", mtime=0)),
                       ("empty-lz4.warc.lz4", A.lz4_frames([b""])), ("empty-zstd.warc.zst", A.zstd_frames([b""]))]:
        tag = "empty-" + name.replace(".", "-")
        yield Case("warc", tag, "crawl", lambda n=name, d=data: {n: d},
                   Expect(pairs=[], counters={"files_unreadable": 0, "sources_without_pages": 1, BAD: 0}),
                   sources=[name])


# ---- WAT ---------------------------------------------------------------------------------------------------------------


def _wat_cases() -> Iterator[Case]:
    def wat(tag: str, i: int, **kw) -> tuple[bytes, tuple[str, str]]:
        url = f"http://{tag}.example/w{i}.html"
        caption = f"A heron number {i} at {tag}"
        envelope = A.wat_envelope(url, [A.img_link(f"/w{i}.jpg", caption)], **kw)
        return A.wat_record(url, envelope), (f"http://{tag}.example/w{i}.jpg", caption)

    statuses = [("200", True), ("404", False), ("500", False), ("301", False), ("302", False), ("204", True),
                ("299", True), ("199", False), ("abc", False), ("", False), (404, False), (None, True)]
    for compression in COMPRESSIONS:
        for status, kept in statuses:
            label = {"": "empty", None: "missing"}.get(status, status) if not isinstance(status, int) else f"int{status}"
            tag = f"wat-status-{label}-{compression}"
            first, p0 = wat(tag, 0)
            middle, p1 = wat(tag, 1, status=status)
            last, p2 = wat(tag, 2)
            pairs = [p0, p1, p2] if kept else [p0, p2]
            yield Case("warc", tag, "crawl",
                       lambda a=first, b=middle, c=last, comp=compression: {
                           RIGHT_NAME[comp].replace("warc", "wat"): compress([a, b, c], comp)},
                       Expect(pairs=pairs, counters={BAD: 0, "warc_not_2xx": 0 if kept else 1, "files_unreadable": 0}),
                       sources=[RIGHT_NAME[compression].replace("warc", "wat")])

    def envelope_case(name: str, payload: bytes, counters: dict, middle_pairs: tuple = ()):
        tag = f"wat-{name}".replace("_", "-")
        first, p0 = wat(tag, 0)
        last, p2 = wat(tag, 2)
        middle = A.wat_record(f"http://{tag}.example/w1.html", payload)
        return Case("warc", tag, "crawl", lambda: {"x.wat.gz": A.gzip_members([first, middle, last])},
                    Expect(pairs=[p0, *middle_pairs, p2], counters={"files_unreadable": 0, **counters}),
                    sources=["x.wat.gz"])

    url = "http://e.example/w1.html"
    good_links = [A.img_link("/x.jpg", "x caption")]
    env = lambda **kw: json.dumps(A.wat_envelope(url, good_links, **kw)).encode()  # noqa: E731
    yield envelope_case("invalid_json", b'{"Envelope": {', {BAD: 1, REASON + "bad_wat_json": 1})
    yield envelope_case("not_utf8_json", b'{"Envelope": "\xff\xfe"}', {BAD: 1, REASON + "bad_wat_json": 1})
    yield envelope_case("json_array", b"[1, 2, 3]", {BAD: 0})
    yield envelope_case("json_scalar", b"42", {BAD: 0})
    yield envelope_case("deeply_nested_json", b"[" * 100_000 + b"]" * 100_000, {BAD: 1, REASON + "bad_wat_json": 1})
    yield envelope_case("envelope_is_a_list", b'{"Envelope": []}', {BAD: 0})
    yield envelope_case("links_not_a_list", json.dumps({"Envelope": {"WARC-Header-Metadata": {"WARC-Target-URI": url},
                        "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {"Links": {"a": 1}}}}}}).encode(),
                        {BAD: 0})
    yield envelope_case("no_html_metadata", json.dumps({"Envelope": {"WARC-Header-Metadata": {"WARC-Target-URI": url},
                                                                     "Payload-Metadata": {"HTTP-Response-Metadata": {}}}}).encode(),
                        {BAD: 0})
    yield envelope_case("target_uri_is_a_number", env().replace(f'"WARC-Target-URI": "{url}"'.encode(),
                                                                b'"WARC-Target-URI": 12'), {BAD: 0})
    odd_links = [{"path": "IMG@/src", "url": 5, "alt": "five"}, {"path": "IMG@/src", "url": None},
                 {"path": None, "url": "/a.jpg", "alt": "a"}, "not a dict", {"path": "IMG@/src", "alt": ["x"]},
                 {"path": "IMG@/src", "url": "/ok.jpg", "alt": {"nested": 1}}]
    yield envelope_case("links_of_odd_types", json.dumps(A.wat_envelope(url, odd_links)).encode(),
                        {BAD: 0, "dropped.missing_src": 3, "dropped.empty_alt": 1})
    # a base that is no http(s) URL is ignored, as is one that is not a string: the page URL stays the base
    yield envelope_case("base_javascript", json.dumps(A.wat_envelope(url, good_links, base="javascript:alert(1)")).encode(),
                        {BAD: 0}, [("http://e.example/x.jpg", "x caption")])
    yield envelope_case("base_not_a_string", env().replace(b'"Head": {"Title": "t"}', b'"Head": {"Base": [1]}'),
                        {BAD: 0}, [("http://e.example/x.jpg", "x caption")])
    yield envelope_case("base_relative", json.dumps(A.wat_envelope(url, good_links, base="/cdn/")).encode(),
                        {BAD: 0}, [("http://e.example/x.jpg", "x caption")])
    yield envelope_case("base_other_host", json.dumps(A.wat_envelope(url, [A.img_link("x.jpg", "x caption")],
                                                                     base="https://cdn.example/a/")).encode(),
                        {BAD: 0}, [("https://cdn.example/a/x.jpg", "x caption")])
    many = [A.img_link(f"/m{k}.jpg", f"Image {k} of many") for k in range(10_000)]
    tag = "wat-ten-thousand-images"
    yield Case("warc", tag, "crawl", lambda: {"x.wat": A.wat_record(url, A.wat_envelope(url, many))},
               Expect(pairs=[(f"http://e.example/m{k}.jpg", f"Image {k} of many") for k in range(10_000)],
                      counters={BAD: 0}), sources=["x.wat"])


# ---- ARC ---------------------------------------------------------------------------------------------------------------


def _arc_cases() -> Iterator[Case]:
    def records(p: Pages, **edits) -> list[bytes]:
        out = []
        for i in range(p.n):
            block = A.http_response(p.html(i), **edits.get(f"r{i}", {}))
            out.append(A.arc_record(p.url(i), block, **edits.get(f"a{i}", {})))
        return out

    variants = [
        ("clean", lambda p: records(p), [0, 1, 2], {BAD: 0, "warc_records": 4}),
        ("bare_lf_http", lambda p: records(p, r1={"newline": A.LF}), [0, 1, 2], {BAD: 0}),
        ("status_404", lambda p: records(p, r1={"status": "404 Not Found"}), [0, 2], {BAD: 0, "warc_not_2xx": 1}),
        ("not_html", lambda p: records(p, r1={"content_type": "image/png"}), [0, 2], {BAD: 0, "warc_not_html": 1}),
        ("only_filedesc", lambda p: [], [], {BAD: 0, "sources_without_pages": 1}),
    ]
    for gzipped in (False, True):
        for name, make, required, counters in variants:
            tag = f"arc-{name}-{'gz' if gzipped else 'plain'}".replace("_", "-")
            pages = Pages(tag)
            file_name = "x.arc.gz" if gzipped else "x.arc"
            yield Case("warc", tag, "crawl", lambda m=make, p=pages, g=gzipped, f=file_name: {f: A.arc_file(m(p), gzipped=g)},
                       Expect(pairs=[pages.pair(i) for i in required],
                              counters={"files_unreadable": 0, "archive_files": 1, **counters}),
                       sources=[file_name])
    # damage: the first page must always survive, nothing may crash, the damage must be counted
    damaged = [
        ("length_not_a_number", lambda p: records(p, a1={"length": "abc"})),
        ("length_too_long", lambda p: records(p, a1={"length": 99999})),
        ("length_too_short", lambda p: records(p, a1={"length": 20})),
        ("truncated", lambda p: [b"".join(records(p))[:-100]]),
        ("header_line_missing_fields", lambda p: [records(p)[0], b"http://x.example/ 1.2.3.4\n", *records(p)[1:]]),
    ]
    for gzipped in (False, True):
        for name, make in damaged:
            tag = f"arc-{name}-{'gz' if gzipped else 'plain'}".replace("_", "-")
            pages = Pages(tag)
            file_name = "x.arc.gz" if gzipped else "x.arc"
            yield Case("warc", tag, "crawl", lambda m=make, p=pages, g=gzipped, f=file_name: {f: A.arc_file(m(p), gzipped=g)},
                       Expect(pairs_include=[pages.pair(0)], counters={"files_unreadable": 0}), sources=[file_name])
    tag = "arc-corrupt-member-gz"
    pages = Pages(tag)

    def corrupt(p: Pages) -> bytes:
        members = [A.gzip_members([r]) for r in [A.arc_filedesc(), *records(p)]]
        bad = bytearray(members[2])
        bad[len(bad) // 2: len(bad) // 2 + 10] = b"\xff" * 10
        return members[0] + members[1] + bytes(bad) + members[3]

    yield Case("warc", tag, "crawl", lambda: {"x.arc.gz": corrupt(pages)},
               Expect(pairs=[pages.pair(0), pages.pair(2)], counters={REASON + "corrupt_compression": 1}),
               sources=["x.arc.gz"])


def cases() -> Iterator[Case]:
    yield from _record_cases()
    yield from _compression_cases()
    yield from _truncation_cases()
    yield from _empty_cases()
    yield from _wat_cases()
    yield from _arc_cases()
