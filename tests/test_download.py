"""The download stage against a real loopback HTTP server: good images byte-identical to bare img2dataset's, every
row once with its status, the part model (lineage, resume, stale parts), identical shards from a serial and a
process-pool engine, and the CLI flags."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from curate import tables  # noqa: E402
from curate.download.reader import invalid_url_reason  # noqa: E402
from curate.download.stage import download, download_part  # noqa: E402
from curate.download.writer import SHARDS_COLUMNS, img2dataset_keys  # noqa: E402
from curate.net import robots  # noqa: E402
from curate.net.loopback import LoopbackServer  # noqa: E402
from curate.options import DownloadOptions  # noqa: E402
from curate.parts import read_lineage  # noqa: E402
from curate.schemas import SHARDS  # noqa: E402

SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images"
GOOD = ["ccby_0006400c1c224e19.jpg", "ccby_00416784a9cb1756.jpg", "wm_335.jpg", "ccby_001ad258e358b14a.jpg"]
IMAGE_SIZE = 64
INVALID_URLS = ["ftp://example.com/a.jpg", "http:///no-host.jpg", "just-a-path/a.jpg", None]


def _with_exif() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "FairsiftCam"  # Make
    exif[0x0110] = "Model 1"  # Model
    out = io.BytesIO()
    Image.open(SAMPLE_IMAGES / GOOD[0]).save(out, "JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("www")
    for name in GOOD:
        shutil.copy(SAMPLE_IMAGES / name, folder / name)
    good = (SAMPLE_IMAGES / GOOD[0]).read_bytes()
    (folder / "exif.jpg").write_bytes(_with_exif())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "bomb.png").write_bytes(_bomb_png())
    robots.CACHE.clear()
    with LoopbackServer(folder) as srv:
        yield srv


def _bomb_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (10_000, 9_000), 0).save(out, "PNG")  # 90M pixels, just over Pillow's limit, ~11 kB
    return out.getvalue()


def _cases(server: LoopbackServer) -> list[list[tuple[str, str]]]:
    """Two pairs parts of (url, expected status)."""
    part0 = [(server.url(GOOD[0]), "success"), (server.url(GOOD[1]), "success"), (server.url(GOOD[2]), "success"),
             (server.url("exif.jpg"), "success"),
             (server.url("status/404/x.jpg"), "failed_to_download"),
             (server.url("status/500/x.jpg"), "failed_to_download"),
             (server.url(f"slow/4/{GOOD[0]}"), "failed_to_download"),  # timeout is 1 s
             (server.url(f"optout/noai/{GOOD[1]}"), "opted_out"),
             (server.url(f"optout/noimageai/{GOOD[2]}"), "opted_out"),
             (server.url(f"optout/noindex/{GOOD[3]}"), "success")]  # not a directive this stage refuses
    part1 = [(server.url(GOOD[3]), "success"),
             (server.url(GOOD[0]), "success"),  # the same URL again, in another part
             (server.url("empty.jpg"), "failed_to_resize"),
             (server.url("truncated.jpg"), "failed_to_resize"),
             (server.url("bomb.png"), "failed_to_resize"),
             ("http://127.0.0.1:1/closed-port.jpg", "failed_to_download")]
    part1 += [(url, "invalid_url") for url in INVALID_URLS]
    return [part0, part1]


def _write_pairs(run: Path, parts: list[list[tuple[str, str]]]) -> None:
    for index, part in enumerate(parts):
        urls = [url for url, _ in part]
        captions = [f"caption {index}-{i}" for i in range(len(part))]
        table = pa.table({"uid": [tables.compute_uid(u or "", c) for u, c in zip(urls, captions)],
                          "url": pa.array(urls, pa.string()), "caption": captions, "page_url": [None] * len(part),
                          "source": ["test"] * len(part)})
        tables.write_part(run, "pairs", index, table)


def _options(**overrides) -> DownloadOptions:
    values = dict(image_size=IMAGE_SIZE, threads=8, timeout=1, allow_private_network=True)
    values.update(overrides)
    return DownloadOptions(**values)


@pytest.fixture(scope="module")
def downloaded(server, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    cases = _cases(server)
    _write_pairs(run, cases)
    counts = download(run, _options())
    return run, cases, counts


def test_every_row_once_with_its_status(downloaded):
    run, cases, counts = downloaded
    expected = [status for part in cases for _, status in part]
    assert counts["rows"] == len(expected)
    assert counts["status"] == dict(Counter(expected))
    assert counts["parts"] == 2 and counts["parts_skipped"] == 0 and counts["parts_downloaded"] == 2

    pairs = tables.read_table(run, "pairs")
    shards = tables.read_table(run, "shards")
    assert shards.column("uid").to_pylist() == pairs.column("uid").to_pylist()  # every uid once, in pairs order
    assert shards.column("url").to_pylist() == pairs.column("url").to_pylist()
    assert shards.column("status").to_pylist() == expected
    assert shards.schema.names == SHARDS_COLUMNS.names
    assert shards.schema.names[: len(SHARDS)] == SHARDS.names
    for field in SHARDS_COLUMNS:
        assert shards.schema.field(field.name).type == field.type
    keys = shards.column("key").to_pylist()
    assert keys[:3] == ["000000000", "000000001", "000000002"] and keys[len(cases[0])] == "000010000"


def test_successes_are_resized_jpegs_with_hash_of_original(downloaded, server):
    run, _, _ = downloaded
    rows = [r for r in tables.read_table(run, "shards").to_pylist() if r["status"] == "success"]
    assert len(rows) == 7
    for row in rows:
        name = row["url"].rsplit("/", 1)[1]
        original = (server.directory / name).read_bytes()
        assert row["sha256"] == hashlib.sha256(original).hexdigest()
        with Image.open(io.BytesIO(original)) as im:
            assert (row["original_width"], row["original_height"]) == im.size
        with Image.open(io.BytesIO(row["image"])) as im:
            assert im.format == "JPEG"
            assert im.size == (IMAGE_SIZE, IMAGE_SIZE) == (row["width"], row["height"])
        assert row["error_message"] is None and row["error_kind"] is None
    exif = json.loads(next(r for r in rows if r["url"].endswith("exif.jpg"))["exif"])
    assert exif["Image Make"] == "FairsiftCam" and exif["Image Model"] == "Model 1"


def test_failures_carry_messages_kinds_and_no_image(downloaded):
    run, _, counts = downloaded
    rows = {r["url"]: r for r in tables.read_table(run, "shards").to_pylist()}
    for row in rows.values():
        if row["status"] != "success":
            assert row["image"] is None and row["sha256"] is None and row["width"] is None
            assert row["error_message"] and row["error_kind"]
    by_path = {url.split("/", 3)[-1] if url and "://127.0.0.1:" in url else url: r for url, r in rows.items()}
    assert by_path["status/404/x.jpg"]["error_message"] == "HTTP Error 404: Not Found"
    assert by_path["status/500/x.jpg"]["error_kind"] == "http_500"
    assert "timed out" in by_path[f"slow/4/{GOOD[0]}"]["error_message"]
    assert "X-Robots-Tag" in by_path[f"optout/noai/{GOOD[1]}"]["error_message"]
    assert "decompression bomb" in by_path["bomb.png"]["error_message"]
    assert by_path["empty.jpg"]["error_kind"] == "empty"
    closed = rows["http://127.0.0.1:1/closed-port.jpg"]
    assert closed["error_kind"] == "refused" and "refused" in closed["error_message"]
    assert "scheme" in rows["ftp://example.com/a.jpg"]["error_message"]
    assert "no host" in rows["http:///no-host.jpg"]["error_message"]
    assert rows[None]["error_message"] == "empty url"
    assert counts["failures"] == dict(Counter(r["error_kind"] for r in rows.values() if r["error_kind"]))


def test_images_are_byte_identical_to_bare_img2dataset(downloaded, tmp_path):
    """The oracle is img2dataset itself, run on the same URLs with the same options: same JPEG bytes, sizes, hash,
    EXIF, key."""
    import img2dataset

    run, _, _ = downloaded
    ours = [r for r in tables.read_table(run, "shards", ["url", "status"]).to_pylist()]
    shards = tables.read_part(tables.part_path(run, "shards", 0)).to_pylist()
    urls = [r["url"] for r in shards if r["status"] == "success"]
    pq.write_table(pa.table({"url": urls, "caption": ["c"] * len(urls)}), tmp_path / "urls.parquet")
    img2dataset.download(url_list=str(tmp_path / "urls.parquet"), output_folder=str(tmp_path / "out"),
                         input_format="parquet", output_format="parquet", url_col="url", caption_col="caption",
                         image_size=IMAGE_SIZE, resize_mode="border", encode_quality=95, encode_format="jpg",
                         processes_count=1, thread_count=2, timeout=5, compute_hash="sha256",
                         disallowed_header_directives=["noai", "noimageai"],  # this stage's default
                         distributor="multiprocessing", enable_wandb=False)
    bare = {r["url"]: r for r in pq.read_table(tmp_path / "out" / "00000.parquet").to_pylist()}
    assert ours and len(bare) == len(urls)
    for row in shards:
        if row["status"] != "success":
            continue
        theirs = bare[row["url"]]
        assert theirs["status"] == "success"
        assert row["image"] == theirs["jpg"]
        for column in ("width", "height", "original_width", "original_height", "sha256", "exif"):
            assert row[column] == theirs[column], column


def test_rerun_skips_current_parts_and_cli_rebuilds_a_deleted_one_identically(downloaded, server):
    from pipelines.cli import app

    run, _, counts = downloaded
    before = tables.read_table(run, "shards")
    tables.part_path(run, "shards", 1).unlink()
    result = CliRunner().invoke(app, ["download", str(run), "--allow-private-network", "--image-size", "64",
                                      "--timeout", "1", "--threads", "4", "--per-host-concurrency", "3"])
    assert result.exit_code == 0, result.output
    assert tables.read_table(run, "shards").equals(before)
    recorded = json.loads((run / "manifest.json").read_text())["stages"]["download"]
    assert recorded["status"] == "done"
    assert recorded["counts"]["status"] == counts["status"] and recorded["counts"]["parts_skipped"] == 1
    assert recorded["counts"]["failures"] == counts["failures"]

    requests_before = server.count()
    again = download(run, _options(threads=2))  # nothing to do: a speed setting is not in the lineage
    assert again["parts_skipped"] == 2 and again["parts_downloaded"] == 0
    assert again["status"] == counts["status"] and again["rows"] == counts["rows"]
    assert server.count() == requests_before
    lineage = read_lineage(tables.part_path(run, "shards", 0))
    assert lineage["stage"] == "download" and "threads" not in lineage["options"]
    assert lineage["options"]["image_size"] == IMAGE_SIZE


def test_changed_output_options_redownload_and_stale_parts_go(server, tmp_path):
    _write_pairs(tmp_path, [[(server.url(name), "") for name in GOOD[:2]], [(server.url(GOOD[2]), "")]])
    first = download(tmp_path, _options(allow_private_network=False))
    assert first["status"] == {"blocked_private_network": 3}
    again = download(tmp_path, _options())
    assert again["status"] == {"success": 3} and again["parts_skipped"] == 0
    resized = download(tmp_path, _options(image_size=32))
    assert resized["parts_downloaded"] == 2
    assert set(tables.read_table(tmp_path, "shards", ["width"]).column("width").to_pylist()) == {32}
    tables.part_path(tmp_path, "pairs", 1).unlink()  # a pairs part gone: its shards part goes too
    _write_pairs(tmp_path, [[(server.url(GOOD[3]), "")]])  # and a rewritten pairs part is downloaded again
    counts = download(tmp_path, _options(image_size=32))
    assert counts["parts"] == 1 and counts["parts_downloaded"] == 1 and counts["rows"] == 1
    assert [p.name for p in tables.list_parts(tmp_path, "shards")] == ["part-00000.parquet"]
    assert tables.read_table(tmp_path, "shards").column("url").to_pylist() == [server.url(GOOD[3])]


def test_missing_pairs_and_bad_pairs_columns_are_clear_errors(tmp_path):
    with pytest.raises(tables.MissingTableError, match="fairsift crawl"):
        download(tmp_path, _options())
    tables.write_part(tmp_path, "pairs", 0, pa.table({"url": ["http://example.com/a.jpg"]}))
    with pytest.raises(ValueError, match=r"part-00000\.parquet.*uid"):
        download(tmp_path, _options())


def test_invalid_url_reasons():
    assert invalid_url_reason("https://example.com/a.jpg") is None
    assert invalid_url_reason(None) == "empty url"
    assert invalid_url_reason("  ") == "empty url"
    assert "port" in invalid_url_reason("http://example.com:99999/a.jpg").lower()
    assert "scheme" in invalid_url_reason("javascript:alert(1)")
    assert "control" in invalid_url_reason("http://example.com/a\x00.jpg")


def test_keys_follow_img2dataset():
    from img2dataset.downloader import compute_key  # the oracle: img2dataset's own key function

    assert img2dataset_keys("part-00003.parquet", 3) == [compute_key(i, 3, 4, 5) for i in range(3)]
    big = img2dataset_keys("part-00001.parquet", 12_000)
    assert big[0] == compute_key(0, 1, 5, 5) and len(set(big)) == 12_000


def _process_pool_map(fn, items, *, desc="", setup=None, resources=None):
    """A minimal stand-in for the local engine: 2 spawned processes, results in item order."""
    with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
        return list(pool.map(fn, items))


def test_serial_and_process_pool_engines_give_identical_shards(server, tmp_path):
    parts = [[(server.url(name), "") for name in GOOD] + [(server.url("status/404/a.jpg"), ""),
                                                          (server.url(f"optout/noai/{GOOD[0]}"), ""),
                                                          ("http://dead-host.invalid/a.jpg", ""),
                                                          ("http://dead-host.invalid/b.jpg", "")],
             [(server.url(name), "") for name in reversed(GOOD)] + [(server.url("truncated.jpg"), "")]]
    for run in (tmp_path / "serial", tmp_path / "pool"):
        _write_pairs(run, parts)
    serial = download(tmp_path / "serial", _options(host_failure_limit=1))
    pooled = download(tmp_path / "pool", _options(host_failure_limit=1), map_parts=_process_pool_map)
    assert serial == {**pooled, "rows_per_s": serial["rows_per_s"]}
    assert serial["status"]["host_unreachable"] == 1
    for index in range(2):
        a = pq.read_table(tables.part_path(tmp_path / "serial", "shards", index))
        b = pq.read_table(tables.part_path(tmp_path / "pool", "shards", index))
        assert a.equals(b)
        assert a.schema.metadata[b"fairsift.digest"] == b.schema.metadata[b"fairsift.digest"]


def test_download_part_is_a_picklable_module_level_function():
    import pickle

    assert pickle.loads(pickle.dumps(download_part)) is download_part
