"""The download stage against a real loopback HTTP server: good images, every kind of bad input, the private-network
guard, resuming a half-done run and the CLI. img2dataset really runs (it spawns processes, so each call costs a few
seconds; the tests share runs through module fixtures to keep the file fast)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from urllib.parse import quote

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from curate import tables  # noqa: E402
from curate.download.stage import (  # noqa: E402
    LOST_MESSAGE,
    ROW_COL,
    assemble_shards,
    download,
    read_img2dataset_output,
)
from curate.net.url_guard import UrlGuard, invalid_url_reason  # noqa: E402
from curate.net.loopback import LoopbackServer  # noqa: E402
from curate.options import DownloadOptions  # noqa: E402
from curate.net.redirect_guard import CONNECT_REFUSED, ENV_VAR, REDIRECT_REFUSED  # noqa: E402
from curate.schemas import SHARDS  # noqa: E402

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images"
GOOD = ["ccby_0006400c1c224e19.jpg", "ccby_00416784a9cb1756.jpg", "wm_335.jpg", "ccby_001ad258e358b14a.jpg"]
IMAGE_SIZE = 64
INVALID_URLS = ["ftp://example.com/a.jpg", "http:///no-host.jpg", "just-a-path/a.jpg"]


def _bad_files(folder: Path) -> None:
    good = (SAMPLE_IMAGES / GOOD[0]).read_bytes()
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "random.jpg").write_bytes(bytes(range(256)) * 20)
    (folder / "page.html").write_text("<html><body><h1>not an image</h1></body></html>")
    # 10000 x 9000 = 90M pixels, just over Pillow's MAX_IMAGE_PIXELS; 1-bit, so the file is ~11 kB
    Image.new("1", (10_000, 9_000), 0).save(folder / "bomb.png")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("www")
    for name in GOOD:
        shutil.copy(SAMPLE_IMAGES / name, folder / name)
    _bad_files(folder)
    with LoopbackServer(folder) as srv:
        yield srv


def _cases(server: LoopbackServer) -> list[list[tuple[str, str]]]:
    """Two pairs parts of (url, expected status)."""
    part0 = [(server.url(GOOD[0]), "success"), (server.url(GOOD[1]), "success"), (server.url(GOOD[2]), "success"),
             (server.url("status/404/x.jpg"), "failed_to_download"),
             (server.url("status/500/x.jpg"), "failed_to_download"),
             (server.url(f"slow/8/{GOOD[0]}"), "failed_to_download"),  # timeout is 2 s
             (server.url(f"optout/noai/{GOOD[1]}"), "opted_out"),
             (server.url(f"optout/noimageai/{GOOD[2]}"), "opted_out"),
             (server.url(f"optout/noindex/{GOOD[3]}"), "success")]  # not a directive this stage refuses
    part1 = [(server.url(GOOD[3]), "success"),
             (server.url("empty.jpg"), "failed_to_resize"),
             (server.url("truncated.jpg"), "failed_to_resize"),
             (server.url("random.jpg"), "failed_to_resize"),
             (server.url("as/text~html/page.html"), "failed_to_resize"),
             (server.url("bomb.png"), "failed_to_resize"),
             ("http://127.0.0.1:1/closed-port.jpg", "failed_to_download")]
    part1 += [(url, "invalid_url") for url in INVALID_URLS]
    return [part0, part1]


def _write_pairs(run: Path, parts: list[list[tuple[str, str]]]) -> None:
    for index, part in enumerate(parts):
        urls = [url for url, _ in part]
        captions = [f"caption {index}-{i}" for i in range(len(part))]
        table = pa.table({"uid": [tables.compute_uid(u, c) for u, c in zip(urls, captions)], "url": urls,
                          "caption": captions, "page_url": [None] * len(part), "source": ["test"] * len(part)})
        tables.write_part(run, "pairs", index, table)


def _options(**overrides) -> DownloadOptions:
    values = dict(image_size=IMAGE_SIZE, threads=8, timeout=2, processes=1)
    values.update(overrides)
    return DownloadOptions(**values)


@pytest.fixture(scope="module")
def downloaded(server, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cases = _cases(server)
    _write_pairs(run, cases)
    counts = download(run, _options(allow_private_network=True))
    return run, cases, counts


def test_every_row_once_with_its_status(downloaded):
    run, cases, counts = downloaded
    expected = [status for part in cases for _, status in part]
    assert counts["rows"] == len(expected)
    assert counts["status"] == dict(Counter(expected))
    assert counts["parts"] == 2 and counts["parts_skipped"] == 0

    pairs = tables.read_table(run, "pairs")
    shards = tables.read_table(run, "shards")
    assert shards.column("uid").to_pylist() == pairs.column("uid").to_pylist()  # every uid once, in pairs order
    assert shards.column("url").to_pylist() == pairs.column("url").to_pylist()
    assert shards.column("status").to_pylist() == expected
    assert shards.schema.names[: len(SHARDS)] == SHARDS.names
    for field in SHARDS:
        assert shards.schema.field(field.name).type == field.type


def test_successes_are_resized_jpegs_with_hash_of_original(downloaded, server):
    run, _, _ = downloaded
    rows = [r for r in tables.read_table(run, "shards").to_pylist() if r["status"] == "success"]
    assert len(rows) == 5
    for row in rows:
        name = row["url"].rsplit("/", 1)[1]
        original = (server.directory / name).read_bytes()
        assert row["sha256"] == hashlib.sha256(original).hexdigest()
        with Image.open(io.BytesIO(original)) as im:
            assert (row["original_width"], row["original_height"]) == im.size
        with Image.open(io.BytesIO(row["image"])) as im:
            assert im.format == "JPEG"
            assert im.size == (IMAGE_SIZE, IMAGE_SIZE) == (row["width"], row["height"])
        assert row["error_message"] is None


def test_failures_carry_messages_and_no_image(downloaded):
    run, _, _ = downloaded
    rows = {r["url"]: r for r in tables.read_table(run, "shards").to_pylist()}
    failures = [r for r in rows.values() if r["status"] != "success"]
    for row in failures:
        assert row["image"] is None and row["sha256"] is None and row["width"] is None
        assert row["error_message"]
    by_path = {url.split("/", 3)[-1] if "://127.0.0.1:" in url else url: r for url, r in rows.items()}
    assert "404" in by_path["status/404/x.jpg"]["error_message"]
    assert "500" in by_path["status/500/x.jpg"]["error_message"]
    assert "timed out" in by_path[f"slow/8/{GOOD[0]}"]["error_message"]
    assert "X-Robots-Tag" in by_path[f"optout/noai/{GOOD[1]}"]["error_message"]
    assert "decompression bomb" in by_path["bomb.png"]["error_message"]
    assert "refused" in rows["http://127.0.0.1:1/closed-port.jpg"]["error_message"].lower()
    assert "scheme" in rows["ftp://example.com/a.jpg"]["error_message"]
    assert "no host" in rows["http:///no-host.jpg"]["error_message"]


def test_cli_rebuilds_a_deleted_part_identically(downloaded):
    from pipelines.cli import app

    run, _, counts = downloaded
    before = tables.read_table(run, "shards")
    tables.part_path(run, "shards", 1).unlink()
    result = CliRunner().invoke(app, ["download", str(run), "--allow-private-network", "--image-size", "64", "--timeout", "2",
                                      "--threads", "4"])
    assert result.exit_code == 0, result.output
    assert tables.read_table(run, "shards").equals(before)
    recorded = json.loads((run / "manifest.json").read_text())["stages"]["download"]
    assert recorded["status"] == "done"
    assert recorded["counts"]["status"] == counts["status"] and recorded["counts"]["parts_skipped"] == 1

    again = download(run, _options(allow_private_network=True))  # nothing left to do
    assert again["parts_skipped"] == 2
    assert again["status"] == counts["status"] and again["rows"] == counts["rows"]


def test_private_network_is_blocked_by_default(server, tmp_path):
    cases = _cases(server)
    _write_pairs(tmp_path, cases)
    counts = download(tmp_path, _options())
    n_invalid = len(INVALID_URLS)
    assert counts["status"] == {"blocked_private_network": counts["rows"] - n_invalid, "invalid_url": n_invalid}
    shards = tables.read_table(tmp_path, "shards")
    assert shards.column("uid").to_pylist() == tables.read_table(tmp_path, "pairs").column("uid").to_pylist()
    blocked = [r for r in shards.to_pylist() if r["status"] == "blocked_private_network"]
    assert all("127.0.0.1" in r["error_message"] and r["image"] is None for r in blocked)


def test_rerun_with_the_guard_lifted_downloads_the_blocked_rows(server, tmp_path):
    _write_pairs(tmp_path, [[(server.url(name), "") for name in GOOD[:2]]])
    first = download(tmp_path, _options(allow_private_network=False))
    assert first["status"] == {"blocked_private_network": 2}
    again = download(tmp_path, _options(allow_private_network=True))
    assert again["rebuilt_options_changed"] == ["allow_private_network"]
    assert again["status"] == {"success": 2} and again["parts_skipped"] == 0
    unchanged = download(tmp_path, _options(allow_private_network=True, threads=2))  # speed options change nothing
    assert unchanged["parts_skipped"] == 1 and "rebuilt_options_changed" not in unchanged


def test_a_rewritten_pairs_part_is_downloaded_again(server, tmp_path):
    _write_pairs(tmp_path, [[(server.url(GOOD[0]), "")]])
    download(tmp_path, _options(allow_private_network=True))
    _write_pairs(tmp_path, [[(server.url(GOOD[1]), "")]])  # a new crawl, same part name
    counts = download(tmp_path, _options(allow_private_network=True))
    assert counts["parts_skipped"] == 0
    assert tables.read_table(tmp_path, "shards").column("uid").to_pylist() == \
        tables.read_table(tmp_path, "pairs").column("uid").to_pylist()


def test_missing_pairs_and_bad_pairs_columns_are_clear_errors(tmp_path):
    with pytest.raises(tables.MissingTableError, match="fairsift crawl"):
        download(tmp_path, _options())
    tables.write_part(tmp_path, "pairs", 0, pa.table({"url": ["http://example.com/a.jpg"]}))
    with pytest.raises(ValueError, match=r"part-00000\.parquet.*uid"):
        download(tmp_path, _options())


def test_url_guard():
    assert invalid_url_reason("https://example.com/a.jpg") is None
    assert invalid_url_reason(None) == "empty url"
    assert "port" in invalid_url_reason("http://example.com:99999/a.jpg").lower()
    guard = UrlGuard(allow_private_network=False)
    for url in ("http://127.0.0.1/a.jpg", "http://10.1.2.3/a.jpg", "http://169.254.169.254/latest/meta-data",
                "http://localhost:8080/a.jpg", "http://[::1]/a.jpg", "http://[::ffff:127.0.0.1]/a.jpg"):
        assert guard.refusal(url)[0] == "blocked_private_network", url
    assert guard.refusal("http://8.8.8.8/a.jpg") is None
    assert UrlGuard(allow_private_network=True).refusal("http://127.0.0.1/a.jpg") is None
    lookups = []
    guard = UrlGuard(False, is_private=lambda host: lookups.append(host) or host == "intranet")
    assert guard.refusal("http://intranet/a.jpg")[0] == "blocked_private_network"
    assert guard.refusal("http://intranet/b.jpg")[0] == "blocked_private_network"
    assert guard.refusal("http://public.example/b.jpg") is None
    assert lookups == ["intranet", "public.example"]  # one lookup per host


def test_rows_img2dataset_loses_come_back_as_failures(tmp_path):
    """img2dataset writes <shard>_stats.json only when a shard finishes; a shard without it (crashed mid-way, its
    parquet cut short) is not read, and its rows become failure rows instead of vanishing."""
    urls = [f"http://example.com/{i}.jpg" for i in range(4)]
    uids = [tables.compute_uid(u, "c") for u in urls]
    pairs = pa.table({"uid": uids, "url": urls, "caption": ["c"] * 4, ROW_COL: pa.array(range(4), pa.int64())})
    out = tmp_path / "out"
    out.mkdir()
    finished = pa.table({
        "uid": uids[:2], "caption": ["c", "c"], "url": urls[:2], ROW_COL: pa.array([0, 1], pa.int64()),
        "key": ["000000000", "000000001"], "status": ["success", "failed_to_download"],
        "error_message": [None, "Use of image disallowed by X-Robots-Tag directive"],
        "width": pa.array([8, None], pa.int32()), "height": pa.array([8, None], pa.int32()),
        "original_width": pa.array([10, None], pa.int32()), "original_height": pa.array([10, None], pa.int32()),
        "exif": [None, None], "sha256": ["ab" * 32, None], "jpg": pa.array([b"\xff\xd8jpeg", None], pa.binary()),
    })
    pq.write_table(finished, out / "00000.parquet")
    (out / "00000_stats.json").write_text("{}")
    (out / "00001.parquet").write_bytes(b"PAR1 cut short")  # crashed shard holding row 2: no stats file

    fetched = read_img2dataset_output(out)
    shards = assemble_shards(Path("pairs/part-00000.parquet"), pairs, {3: ("invalid_url", "url has no host")},
                             [0, 1, 2], fetched)
    assert shards.column("uid").to_pylist() == uids
    assert shards.column("status").to_pylist() == ["success", "opted_out", "failed_to_download", "invalid_url"]
    assert shards.column("error_message")[2].as_py() == LOST_MESSAGE
    assert shards.column("image").to_pylist() == [b"\xff\xd8jpeg", None, None, None]
    assert shards.column("original_width").to_pylist() == [10, None, None, None]


def test_small_parts_share_an_img2dataset_call(tmp_path, monkeypatch):
    import curate.download.stage as stage

    monkeypatch.setattr(stage, "BATCH_ROWS", 5)
    for index, n in enumerate([3, 2, 4, 7, 1]):
        urls = [f"http://example.com/{index}-{i}.jpg" for i in range(n)]
        tables.write_part(tmp_path, "pairs", index, pa.table({"uid": urls, "url": urls, "caption": urls}))
    sizes = [[p.name for p in batch] for batch in stage._batches(tables.list_parts(tmp_path, "pairs"))]
    assert sizes == [["part-00000.parquet", "part-00001.parquet"], ["part-00002.parquet"], ["part-00003.parquet"],
                     ["part-00004.parquet"]]


def test_refusals_in_img2dataset_workers_become_blocked_private_network():
    """img2dataset's rows carry the worker guard's refusals as failed_to_download with the guard's message."""
    messages = [f"HTTP Error 302: {REDIRECT_REFUSED}: http://169.254.169.254/latest/meta-data",
                f"<urlopen error {CONNECT_REFUSED}: 10.0.0.5 port 80>",
                "HTTP Error 404: Not Found", None]
    statuses = ["failed_to_download"] * 3 + ["success"]
    urls = [f"http://example.com/{i}.jpg" for i in range(4)]
    uids = [tables.compute_uid(u, "c") for u in urls]
    pairs = pa.table({"uid": uids, "url": urls, "caption": ["c"] * 4, ROW_COL: pa.array(range(4), pa.int64())})
    fetched = pa.table({"uid": uids, ROW_COL: pa.array(range(4), pa.int64()), "status": statuses,
                        "error_message": messages, "jpg": pa.array([None] * 3 + [b"\xff\xd8jpeg"], pa.binary())})
    shards = assemble_shards(Path("pairs/part-00000.parquet"), pairs, {}, [0, 1, 2, 3], fetched)
    assert shards.column("status").to_pylist() == ["blocked_private_network"] * 2 + ["failed_to_download", "success"]
    shown = shards.column("error_message").to_pylist()
    assert shown[0].startswith(messages[0]) and shown[1].startswith(messages[1])
    assert all("--allow-private-network" in m for m in shown[:2]) and shown[2:] == messages[2:]


def test_redirect_into_the_private_network_is_blocked_by_default(server, tmp_path, monkeypatch):
    """End to end: img2dataset's workers follow redirects themselves. The loopback server stands in for public hosts
    as the HTTP proxy of made-up .invalid names (which pass the up-front check: they resolve to nothing)."""
    monkeypatch.setenv("http_proxy", server.base_url)
    for name in ("HTTP_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    environment_before = {name: os.environ.get(name) for name in ("PYTHONPATH", ENV_VAR)}

    def redirect(target: str) -> str:
        return "http://public.invalid/redirect/" + quote(target, safe="")

    cases = [(redirect("http://169.254.169.254/latest/meta-data"), "blocked_private_network"),
             (redirect(f"http://10.255.255.1/{GOOD[0]}"), "blocked_private_network"),
             (f"http://public.invalid/{GOOD[0]}", "success"),
             (redirect(f"http://cdn.invalid/{GOOD[1]}"), "success")]  # a redirect between public hosts is followed
    _write_pairs(tmp_path, [cases])
    download(tmp_path, _options())
    shards = tables.read_table(tmp_path, "shards").to_pylist()
    assert [r["status"] for r in shards] == [status for _, status in cases]
    assert REDIRECT_REFUSED in shards[0]["error_message"] and "169.254.169.254" in shards[0]["error_message"]
    assert shards[1]["image"] is None and shards[3]["image"] is not None
    assert {name: os.environ.get(name) for name in environment_before} == environment_before
