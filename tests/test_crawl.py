"""crawl over real HTTP (loopback), local HTML files and a gzipped WARC/WAT written with warcio.

The fixture site (tests/data/crawl/site) holds every case of the spec: relative URLs, <base href>, figcaption and
title fallbacks, placeholder alts, a data: URI, an in-page duplicate, a windows-1252 page, malformed HTML; the test
adds a page with a 100k-character alt. Expected pairs are written out by hand below.
"""

from __future__ import annotations

import gzip
import io
import json
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
