"""crawl over real HTTP (loopback), local HTML files and a gzipped WARC/WAT written with warcio.

The fixture site (tests/data/crawl/site) holds every case of the spec: relative URLs, <base href>, figcaption and
title fallbacks, placeholder alts, a data: URI, an in-page duplicate, a windows-1252 page, malformed HTML; the test
adds a page with a 100k-character alt. Expected pairs are written out by hand below.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from curate.sources.crawl import crawl
from curate.sources.html_pairs import decode_html, is_placeholder_caption
from curate.net.loopback import LoopbackServer
from curate.options import CrawlOptions
from curate.tables import compute_uid, list_parts, read_table
from pipelines.cli import app
from tests.malformed import archives

SITE = Path(__file__).parent / "data" / "crawl" / "site"
LONG_ALT = "word " * 20_000  # 100,000 characters
LONG_CAPTION = " ".join(["word"] * 200)  # cut at 1000 characters, the trailing space trimmed
WARC_ROOT = "https://site.example"

NO_DROPS = dict.fromkeys(("missing_src", "data_uri", "non_http_url", "invalid_url", "empty_alt", "placeholder_alt",
                          "duplicate_in_page", "duplicate_across_pages"), 0)
SITE_DROPS = {**NO_DROPS, "placeholder_alt": 4, "data_uri": 1, "missing_src": 1, "empty_alt": 1,
              "duplicate_in_page": 1, "non_http_url": 1, "duplicate_across_pages": 1}


def site_pairs(root: str, *, depth: int = 1, max_pages: int = 100) -> list[tuple]:
    """(url, caption, page_url, caption_source, caption_truncated) in crawl order, for the site served at root."""
    index, page2, level1 = f"{root}/index.html", f"{root}/page2.html", f"{root}/deep/level1.html"
    pages = [
        [
            (f"{root}/img/cat.jpg", "A grey cat sleeping on a windowsill", index, "alt", False),
            ("https://images.example.org/dog.jpg", "A brown dog running", index, "alt", False),
            (f"{root}/img/bridge.jpg", "The old stone bridge at dawn", index, "figcaption", False),
            (f"{root}/img/tower.jpg", "A lighthouse on a cliff", index, "title", False),
            (f"{root}/img/lazy.jpg", "A lazily loaded lake", index, "alt", False),
            (f"{root}/img/small.jpg", "A mountain at sunset", index, "alt", False),
        ],
        [("https://cafe.example.com/media/dessert.jpg", "Café crème brûlée on a table", page2, "alt", False)],
        [
            (f"{root}/img/owl.jpg", "An owl at night", level1, "alt", False),
            (f"{root}/img/fox.jpg", "Fox", level1, "alt", False),
            (f"{root}/img/heron.jpg", "A heron wading", level1, "alt", False),
        ],
        [(f"{root}/img/long.jpg", LONG_CAPTION, f"{root}/long.html", "alt", True)],
    ]
    if depth >= 2:
        pages.append([(f"{root}/deep/kiwi.jpg", "A kiwi bird", f"{root}/deep/level2.html", "alt", False)])
    return [pair for page in pages[:max_pages] for pair in page]


def pair_tuples(run: Path) -> list[tuple]:
    rows = read_table(run, "pairs").to_pylist()
    for row in rows:
        assert row["uid"] == compute_uid(row["url"], row["caption"])
    return [(r["url"], r["caption"], r["page_url"], r["caption_source"], r["caption_truncated"]) for r in rows]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site") / "site"
    shutil.copytree(SITE, folder)
    (folder / "long.html").write_text(f'<html><body><img src="img/long.jpg" alt="{LONG_ALT}"></body></html>')
    return folder


@pytest.fixture(scope="module")
def server(site):
    with LoopbackServer(site) as srv:
        yield srv


def _options(sources, **kwargs) -> CrawlOptions:
    return CrawlOptions(sources=[str(s) for s in sources], **kwargs)


# ---- http ----------------------------------------------------------------------------------------------------------


def test_http_crawl_depth_one(server, tmp_path):
    counts = crawl(tmp_path, _options([server.url("index.html")], max_depth=1, allow_private_network=True))
    assert pair_tuples(tmp_path) == site_pairs(server.base_url)
    assert set(read_table(tmp_path, "pairs", ["source"]).column("source").to_pylist()) == {"http"}
    # index, page2, level1 and long parse; missing.html is a 404; private/ is disallowed by robots.txt
    assert counts["pages"] == 4 and counts["pages_failed"] == 1 and counts["pages_refused_robots"] == 1
    assert counts["pairs"] == 11 and counts["pages_refused_private"] == 0
    assert counts["dropped"] == SITE_DROPS


def test_http_crawl_depth_two_and_page_limit(server, tmp_path):
    deep = crawl(tmp_path / "deep", _options([server.url("index.html")], max_depth=2, allow_private_network=True))
    assert pair_tuples(tmp_path / "deep") == site_pairs(server.base_url, depth=2)
    assert deep["pages"] == 5

    capped = crawl(tmp_path / "cap", _options([server.url("index.html")], max_pages=2, allow_private_network=True))
    assert pair_tuples(tmp_path / "cap") == site_pairs(server.base_url, max_pages=2)
    assert capped["pages"] == 2 and capped["pages_failed"] == 0


def test_http_crawl_refuses_loopback_by_default(server, tmp_path):
    counts = crawl(tmp_path, _options([server.url("index.html")]))
    assert counts["pages_refused_private"] == 1 and counts["pages"] == 0 and counts["pairs"] == 0
    assert read_table(tmp_path, "pairs").num_rows == 0  # an empty table, not a missing one


# ---- local files -----------------------------------------------------------------------------------------------------


def test_local_folder_and_file(site, tmp_path):
    counts = crawl(tmp_path / "folder", _options([site]))
    uri = lambda rel: (site / rel).resolve().as_uri()  # noqa: E731
    assert pair_tuples(tmp_path / "folder") == [
        ("https://images.example.org/dog.jpg", "A brown dog running", uri("index.html"), "alt", False),
        ("https://cafe.example.com/media/dessert.jpg", "Café crème brûlée on a table", uri("page2.html"), "alt", False),
        ("https://secret.example.com/garden.jpg", "A secret garden", uri("private/secret.html"), "alt", False),
    ]
    # relative image URLs of a local file resolve to file:// URLs, which no downloader fetches
    assert counts["dropped"] == {**NO_DROPS, "non_http_url": 17, "data_uri": 1, "missing_src": 1,
                                 "duplicate_across_pages": 1}
    assert counts["pages"] == 6 and set(read_table(tmp_path / "folder", "pairs").column("source").to_pylist()) == {"html"}

    single = crawl(tmp_path / "file", _options([site / "page2.html"]))
    assert single["pairs"] == 2  # dessert, and the dog: no earlier page holds it this time
    assert [r[1] for r in pair_tuples(tmp_path / "file")] == ["Café crème brûlée on a table", "A brown dog running"]


# ---- WARC / WAT ----------------------------------------------------------------------------------------------------


def _response(writer: WARCWriter, uri: str, body: bytes, content_type: str = "text/html", status: str = "200 OK"):
    headers = StatusAndHeaders(status, [("Content-Type", content_type)], protocol="HTTP/1.1")
    return writer.create_warc_record(uri, "response", payload=io.BytesIO(body), http_headers=headers)


WAT_ENVELOPE = {"Envelope": {
    "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": "https://wat.example/page"},
    "Payload-Metadata": {"HTTP-Response-Metadata": {"HTML-Metadata": {
        "Head": {"Base": "https://cdn.wat.example/"},
        "Links": [
            {"path": "A@/href", "url": "/about"},
            {"path": "IMG@/src", "url": "photos/heron.jpg", "alt": "A heron in the reeds"},
            {"path": "IMG@/src", "url": "photos/p.jpg", "alt": "photo"},
        ]}}}}}


def write_warc(site: Path, path: Path) -> Path:
    """The site's pages as Common Crawl would store them, plus records a reader must pass over or survive."""
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=True)
    writer.write_record(_response(writer, f"{WARC_ROOT}/index.html", (site / "index.html").read_bytes()))
    buffer.write(gzip.compress(b"WARC/1.0\r\nthis header line has no colon\r\n\r\ngarbage\r\n\r\n"))  # malformed
    writer.write_record(_response(writer, f"{WARC_ROOT}/page2.html", (site / "page2.html").read_bytes()))
    writer.write_record(_response(writer, f"{WARC_ROOT}/img/cat.jpg", b"\xff\xd8\xff", "image/jpeg"))
    writer.write_record(_response(writer, f"{WARC_ROOT}/gone.html", b"<img src=a.jpg alt='Not found'>",
                                  status="404 Not Found"))
    for rel in ("deep/level1.html", "long.html", "deep/level2.html"):
        writer.write_record(_response(writer, f"{WARC_ROOT}/{rel}", (site / rel).read_bytes()))
    writer.write_record(writer.create_warc_record("https://wat.example/page", "metadata",
                                                  payload=io.BytesIO(json.dumps(WAT_ENVELOPE).encode()),
                                                  warc_content_type="application/json"))
    path.write_bytes(buffer.getvalue())
    return path


def test_warc_gz_with_malformed_record_and_wat(site, tmp_path):
    warc = write_warc(site, tmp_path / "site.warc.gz")
    counts = crawl(tmp_path / "run", _options([warc]))
    wat_pair = ("https://cdn.wat.example/photos/heron.jpg", "A heron in the reeds", "https://wat.example/page", "alt", False)
    assert pair_tuples(tmp_path / "run") == site_pairs(WARC_ROOT, depth=2) + [wat_pair]
    assert counts["warc_bad_records"] == 1
    assert counts["pages"] == 6  # five HTML responses and one WAT document; the image and the 404 are passed over
    assert counts["dropped"] == {**SITE_DROPS, "placeholder_alt": 5}
    assert set(read_table(tmp_path / "run", "pairs", ["source"]).column("source").to_pylist()) == {"warc"}


def test_plain_warc_resumes_after_garbage(site, tmp_path):
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=False)
    writer.write_record(_response(writer, f"{WARC_ROOT}/deep/level2.html", (site / "deep/level2.html").read_bytes()))
    buffer.write(b"not a record at all\r\n\r\n")
    writer.write_record(_response(writer, f"{WARC_ROOT}/page2.html", (site / "page2.html").read_bytes()))
    (tmp_path / "plain.warc").write_bytes(buffer.getvalue())
    counts = crawl(tmp_path / "run", _options([tmp_path / "plain.warc"]))
    assert [r[1] for r in pair_tuples(tmp_path / "run")] == [
        "A kiwi bird", "Café crème brûlée on a table", "A brown dog running"]
    assert counts["warc_bad_records"] == 1


def _record_bytes(site: Path, rel: str, *, gzip_member: bool, edit=lambda body: body) -> bytes:
    buffer = io.BytesIO()
    writer = WARCWriter(buffer, gzip=gzip_member)
    writer.write_record(_response(writer, f"{WARC_ROOT}/{rel}", edit((site / rel).read_bytes())))
    return buffer.getvalue()


THREE_PAGES = ("deep/level2.html", "page2.html", "deep/level1.html")
CAPTIONS_OF_PAGE = [["A kiwi bird"], ["Café crème brûlée on a table", "A brown dog running"],
                    ["An owl at night", "Fox", "A heron wading"]]
# junk holding a false gzip header and no line break before the record that follows it
JUNK = b"JUNK \x00\x01 not gzip \x1f\x8b\x08\x00 a false gzip header " + bytes(range(256)) * 2


def _crawl_bytes(tmp_path: Path, name: str, data: bytes) -> tuple[dict, list[str]]:
    (tmp_path / name).write_bytes(data)
    counts = crawl(tmp_path / "run", _options([tmp_path / name]))
    return counts, [r[1] for r in pair_tuples(tmp_path / "run")] if counts["pairs"] else []


def _captions(*pages: int) -> list[str]:
    return [caption for page in pages for caption in CAPTIONS_OF_PAGE[page]]


def test_warc_gz_resynchronises_after_junk_between_members(site, tmp_path):
    members = [_record_bytes(site, rel, gzip_member=True) for rel in THREE_PAGES]
    counts, captions = _crawl_bytes(tmp_path, "junk.warc.gz", members[0] + JUNK + members[1] + members[2])
    assert captions == _captions(0, 1, 2)
    assert counts["warc_records"] == 3 and counts["warc_bad_records"] == 1


def test_warc_gz_skips_a_corrupt_member_and_a_truncated_last_one(site, tmp_path):
    members = [_record_bytes(site, rel, gzip_member=True) for rel in THREE_PAGES]
    corrupt = members[1][:40] + b"\xff" * 40 + members[1][80:]  # its deflate data overwritten
    data = members[0] + corrupt + members[2] + members[1][:-30]  # and a copy of page 2 cut off
    counts, captions = _crawl_bytes(tmp_path, "corrupt.warc.gz", data)
    assert captions == _captions(0, 2)
    assert counts["warc_records"] == 2 and counts["warc_bad_records"] == 2


def test_plain_warc_resynchronises_after_binary_junk_and_skips_a_truncated_record(site, tmp_path):
    records = [_record_bytes(site, rel, gzip_member=False) for rel in THREE_PAGES]
    # the second record's payload holds a version string: a restart scanning past it must not be derailed
    mention = _record_bytes(site, "page2.html", gzip_member=False,
                            edit=lambda body: body.replace(b"<body>", b"<body>\nWARC/1.0 is a format"))
    data = records[0] + JUNK + mention + JUNK + records[2] + records[1][:-40]
    counts, captions = _crawl_bytes(tmp_path, "junk.warc", data)
    assert captions == _captions(0, 1, 2)
    assert counts["warc_records"] == 3 and counts["warc_bad_records"] == 3  # two junk stretches, one cut record


# ---- formats by their bytes, every archive format, damaged archives (issue 9) -------------------------------------------

WARC_DATA = Path(__file__).parent / "data" / "warc"  # real files from warcio's tests (see its README)
CW_ROOT = "http://cw.example"


def cw_pages(n: int = 29) -> list[tuple[str, bytes, tuple]]:
    """(page URL, HTML, the pair it must give) for n pages with one image each."""
    pages = []
    for i in range(n):
        url, caption = f"{CW_ROOT}/p{i}.html", f"Photograph {i} of a red barn in the snow"
        pages.append((url, archives.page_html([(f"img/{i}.jpg", caption)]), (f"{CW_ROOT}/img/{i}.jpg", caption)))
    return pages


def url_captions(run: Path) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in pair_tuples(run)]


def _crawl_data(tmp_path: Path, name: str, data: bytes) -> tuple[dict, list[tuple[str, str]]]:
    (tmp_path / name).write_bytes(data)
    counts = crawl(tmp_path / f"run-{name}", _options([tmp_path / name]))
    return counts, url_captions(tmp_path / f"run-{name}")


def test_clueweb09_style_warc_with_bare_lf_headers(tmp_path):
    pages = cw_pages(29)
    expected = [pair for _, _, pair in pages]
    # CRLF WARC headers, bare-LF HTTP headers: fastwarc's strict parser lost every content type here, silently
    lf_http = b"".join(archives.warc_response(url, html, http_newline=archives.LF) for url, html, _ in pages)
    counts, pairs = _crawl_data(tmp_path, "lf-http.warc", lf_http)
    assert pairs == expected
    assert counts["warc_bare_lf_records"] == 29 and counts["warc_bad_records"] == 0 and counts["pages"] == 29

    # the ClueWeb09 files themselves: WARC/0.18, bare LF everywhere, lengths that still count the stripped CRs
    clueweb = archives.warcinfo(archives.LF, "WARC/0.18") + b"".join(
        archives.clueweb09_response(url, html, f"clueweb09-en0000-00-{i:05d}") for i, (url, html, _) in enumerate(pages))
    counts, pairs = _crawl_data(tmp_path, "clueweb.warc.gz", gzip.compress(clueweb))  # one gzip stream, as shipped
    assert pairs == expected
    assert counts["warc_records"] == 30 and counts["warc_bare_lf_records"] == 30
    assert counts["warc_wrong_length_records"] == 29 and counts["warc_bad_records"] == 0


def _archive_bytes(kind: str, pages) -> bytes:
    responses = [archives.warc_response(url, html) for url, html, _ in pages]
    if kind == "warc.gz":
        return archives.gzip_members(responses)
    if kind == "warc.lz4":
        return archives.lz4_frames(responses)
    if kind == "warc.zst":
        return archives.zstd_frames(responses)
    arc = [archives.arc_record(url, archives.http_response(html)) for url, html, _ in pages]
    return archives.arc_file(arc, gzipped=kind == "arc.gz")


def test_crawl_folder_reads_every_archive_format(tmp_path):
    pages = cw_pages(10)
    folder = tmp_path / "crawl"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.warc.gz").write_bytes(_archive_bytes("warc.gz", pages[0:2]))
    (folder / "b.arc").write_bytes(_archive_bytes("arc", pages[2:4]))
    (folder / "c.arc.gz").write_bytes(_archive_bytes("arc.gz", pages[4:6]))
    (folder / "d.warc.lz4").write_bytes(_archive_bytes("warc.lz4", pages[6:8]))
    (folder / "sub" / "e.warc.zst").write_bytes(_archive_bytes("warc.zst", pages[8:9]))
    (folder / "sub" / "f.wat.gz").write_bytes(archives.gzip_members([archives.wat_record(pages[9][0], archives.wat_envelope(
        pages[9][0], [archives.img_link("img/9.jpg", pages[9][2][1])]))]))
    (folder / "notes.txt").write_text("not a source")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    counts = crawl(tmp_path / "run", _options([folder]))
    assert url_captions(tmp_path / "run") == [pair for _, _, pair in pages]
    assert counts["archive_files"] == 6 and counts["files_skipped"] == 2 and counts["files_unreadable"] == 0
    assert counts["warc_bad_records"] == 0 and counts["sources_without_pages"] == 0


def test_folder_without_sources_is_a_warning_and_a_counter(tmp_path, caplog):
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "readme.txt").write_text("no pages here")
    counts = crawl(tmp_path / "run", _options([folder]))
    assert counts["pages"] == 0 and counts["sources_without_pages"] == 1 and counts["files_skipped"] == 1
    assert any("holds no HTML page and no WARC, WAT or ARC file" in r.getMessage() and str(folder) in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("name, kind", [
    ("plain-named.gz", "plain"), ("gzipped-named.warc", "warc.gz"), ("no-suffix", "warc.gz"),
    ("arc-named.warc.gz", "arc"), ("lz4-named.warc.gz", "warc.lz4"), ("page.html", "warc.gz"),
])
def test_format_comes_from_the_bytes_not_the_name(tmp_path, name, kind):
    pages = cw_pages(3)
    data = (b"".join(archives.warc_response(url, html) for url, html, _ in pages) if kind == "plain"
            else _archive_bytes(kind, pages))
    counts, pairs = _crawl_data(tmp_path, name, data)
    assert pairs == [pair for _, _, pair in pages]
    assert counts["warc_bad_records"] == 0 and counts["archive_files"] == 1


def test_real_archive_files(tmp_path):
    """warcio's own test files: ARC plain and gzipped, a record spread over three gzip members, a short length."""
    for name, records, bad in [("example.arc", 2, {}), ("example.arc.gz", 2, {}), ("example.warc.gz", 6, {}),
                               ("example-wrong-chunks.warc.gz", 2, {}), ("example-trunc.warc", 4, {"junk": 1})]:
        counts = crawl(tmp_path / name, _options([WARC_DATA / name]))
        assert counts["pages"] == 1, name  # http://example.com/, a page without images
        assert counts["warc_records"] == records, name
        assert {k: v for k, v in counts["warc_bad_record_reasons"].items() if v} == bad, name


def test_wat_and_warc_pages_with_an_error_status_give_no_pairs(tmp_path):
    def wat(i: int, status) -> bytes:
        url = f"{CW_ROOT}/w{i}.html"
        envelope = archives.wat_envelope(url, [archives.img_link(f"/w{i}.jpg", f"A barn owl number {i}")], status=status)
        return archives.wat_record(url, envelope)

    data = archives.gzip_members([wat(0, 404), wat(1, 200), wat(2, 500), wat(3, 301), wat(4, None), wat(5, "204"),
                                  archives.warc_response(f"{CW_ROOT}/gone.html", archives.page_html([("x.jpg", "Gone")]),
                                                         status="404 Not Found")])
    counts, pairs = _crawl_data(tmp_path, "mixed.wat.gz", data)
    assert pairs == [(f"{CW_ROOT}/w{i}.jpg", f"A barn owl number {i}") for i in (1, 4, 5)]  # no status: kept
    assert counts["warc_not_2xx"] == 4 and counts["pages"] == 3


def test_wrong_lengths_and_cut_off_compression(tmp_path):
    pages = cw_pages(4)
    good = [archives.warc_response(url, html) for url, html, _ in pages]
    too_short = archives.warc_response(pages[1][0], pages[1][1], length=len(archives.http_response(pages[1][1])) - 30)
    too_long = archives.warc_response(pages[2][0], pages[2][1], length=len(archives.http_response(pages[2][1])) + 200)
    counts, pairs = _crawl_data(tmp_path, "lengths.warc", good[0] + too_short + too_long + good[3])
    # the short record's page is cut before its image (its HTML ends early), the long one is read up to the next record
    assert pairs == [pages[0][2], pages[2][2], pages[3][2]]
    assert counts["warc_bad_record_reasons"]["junk"] == 1 and counts["warc_wrong_length_records"] == 1

    members = archives.gzip_members(good)
    cut = members[: len(members) - 25]  # the last member cut off
    counts, pairs = _crawl_data(tmp_path, "cut.warc.gz", cut)
    assert pairs == [p for _, _, p in pages[:3]] and counts["warc_bad_record_reasons"]["corrupt_compression"] == 1
    frames = archives.lz4_frames(good)
    counts, pairs = _crawl_data(tmp_path, "cut.warc.lz4", frames[: len(frames) - 25])
    assert pairs == [p for _, _, p in pages[:3]] and counts["warc_bad_record_reasons"]["corrupt_compression"] == 1


# ---- determinism, parts, rerun ---------------------------------------------------------------------------------------


def test_rerun_is_identical_and_overwrites(site, tmp_path):
    warc = write_warc(site, tmp_path / "site.warc.gz")
    run = tmp_path / "run"
    crawl(run, _options([warc], rows_per_part=4))
    first = read_table(run, "pairs")
    assert [p.name for p in list_parts(run, "pairs")] == [f"part-0000{i}.parquet" for i in range(4)]  # 13 rows
    crawl(run, _options([warc], rows_per_part=4))
    assert read_table(run, "pairs").equals(first)  # same uids, same order, same parts

    crawl(run, _options([site / "deep" / "level2.html"]))  # a smaller crawl leaves no stale parts behind
    assert len(list_parts(run, "pairs")) == 1 and read_table(run, "pairs").num_rows == 0


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="not found: .*nope.html"):
        crawl(tmp_path, _options([tmp_path / "nope.html"]))
    (tmp_path / "list.csv").write_text("url\n")
    with pytest.raises(ValueError, match="unsupported file type"):
        crawl(tmp_path, _options([tmp_path / "list.csv"]))


# ---- pieces -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["image", "IMG", "Photo 3", "picture_2", "logo", "ICON", "spacer", "thumbnail",
                                  "IMG_1234.jpg", "DSC0001", "image1.png", "holiday photo.JPEG", "12345", "-"])
def test_placeholder_captions(text):
    assert is_placeholder_caption(text)


@pytest.mark.parametrize("text", ["A photo of a cat", "Logo of the Red Cross", "1920s street scene", "猫", "Fox"])
def test_real_captions_are_not_placeholders(text):
    assert not is_placeholder_caption(text)


def test_decode_html_charsets():
    cp1252 = '<meta charset="windows-1252"><p>Caf\xe9</p>'.encode("cp1252")
    assert "Café" in decode_html(cp1252, http_charset="utf-8")  # a blanket server charset that does not fit
    assert "Café" in decode_html("<p>Café</p>".encode("utf-8"), http_charset=None)
    assert decode_html(b"<p>\xff\xfe\x81 ok</p>", http_charset="no-such-charset").endswith("ok</p>")


# ---- CLI ---------------------------------------------------------------------------------------------------------------


def test_cli_crawl(server, tmp_path):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["crawl", server.url("index.html"), "--run", str(run), "--max-depth", "1",
                                 "--allow-private-network"])
    assert result.exit_code == 0, result.output
    assert pair_tuples(run) == site_pairs(server.base_url)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["crawl"]["status"] == "done"
    assert manifest["stages"]["crawl"]["counts"]["pairs"] == 11

    refused = runner.invoke(app, ["crawl", server.url("index.html"), "--run", str(tmp_path / "refused")])
    assert refused.exit_code == 0, refused.output
    counts = json.loads((tmp_path / "refused" / "manifest.json").read_text())["stages"]["crawl"]["counts"]
    assert counts["pages_refused_private"] == 1 and counts["pairs"] == 0

    missing = runner.invoke(app, ["crawl", str(tmp_path / "absent.warc.gz"), "--run", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "absent.warc.gz" in missing.output


def test_cli_crawl_folder_of_warcs(site, tmp_path):
    folder = tmp_path / "warcs"
    folder.mkdir()
    write_warc(site, folder / "site.warc.gz")
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["crawl", str(folder), "--run", str(run)])
    assert result.exit_code == 0, result.output
    counts = json.loads((run / "manifest.json").read_text())["stages"]["crawl"]["counts"]
    assert counts["pairs"] == 13 and counts["archive_files"] == 1 and counts["warc_bad_records"] == 1
    # named counters in the summary ("name  value" lines)
    assert re.search(r"warc_bad_records\s+1\b", result.output) and re.search(r"junk\s+1\b", result.output)
