"""Every malformed HTTP behaviour and image of tests/malformed/ through the real download stage on loopback:
0 crashes, every row a status and a message, each case its expected status and error kind, and the stage summary
counting every failure kind."""

from __future__ import annotations

import io
import os
from collections import Counter

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from curate import tables  # noqa: E402
from curate.download.stage import download  # noqa: E402
from curate.net import robots  # noqa: E402
from curate.net.loopback import LoopbackServer  # noqa: E402
from curate.options import DownloadOptions  # noqa: E402
from tests.malformed.http_cases import CASE_OPTIONS, http_cases, write_http_fixtures  # noqa: E402
from tests.malformed.image_cases import write_image_cases  # noqa: E402


@pytest.fixture(scope="module")
def malformed(tmp_path_factory):
    www = tmp_path_factory.mktemp("www")
    write_http_fixtures(www)
    images = write_image_cases(www)
    run = tmp_path_factory.mktemp("run")
    robots.CACHE.clear()
    with LoopbackServer(www) as main, LoopbackServer(www) as other:
        rows = [(main.url(c.path) if not c.own_server else other.url(c.path), c.name, c.status, c.kind)
                for c in http_cases()]
        rows += [(main.url("img/" + c.name), c.name, c.status, c.kind) for c in images]
        half = len(rows) // 2
        for index, part in enumerate((rows[:half], rows[half:])):
            urls = [r[0] for r in part]
            captions = [r[1] for r in part]
            tables.write_part(run, "pairs", index, pa.table({
                "uid": [tables.compute_uid(u, c) for u, c in zip(urls, captions)], "url": urls, "caption": captions}))
        counts = download(run, DownloadOptions(**CASE_OPTIONS))
    shards = {r["url"]: r for r in tables.read_table(run, "shards").to_pylist()}
    return rows, shards, counts, {c.name: c for c in images}


def test_every_case_ends_in_its_status_and_kind(malformed):
    rows, shards, _, _ = malformed
    wrong = []
    for url, name, status, kind in rows:
        got = shards[url]
        if status == "any":
            ok = got["status"] in ("success", "failed_to_resize")
        else:
            ok = got["status"] == status and (kind is None or got["error_kind"] == kind)
        if not ok:
            wrong.append((name, status, kind, got["status"], got["error_kind"], got["error_message"]))
    assert not wrong, "\n".join(map(str, wrong))
    assert len(shards) == len(rows)


def test_every_row_has_a_status_and_every_failure_a_message_and_kind(malformed):
    _, shards, _, _ = malformed
    for row in shards.values():
        assert row["status"]
        if row["status"] == "success":
            assert row["image"] and row["error_message"] is None and row["error_kind"] is None
            assert row["width"] == row["height"] == CASE_OPTIONS["image_size"]
        else:
            assert row["error_message"] and row["error_kind"], row
            assert row["image"] is None and row["sha256"] is None


def test_the_summary_counts_every_status_and_failure_kind(malformed):
    _, shards, counts, _ = malformed
    assert counts["rows"] == len(shards)
    assert counts["status"] == dict(Counter(r["status"] for r in shards.values()))
    assert counts["failures"] == dict(Counter(r["error_kind"] for r in shards.values() if r["error_kind"]))
    assert {"timeout", "total_timeout", "too_large", "incomplete", "redirect_loop", "throttled", "protocol",
            "decompression_bomb", "unsupported_format", "empty"} <= set(counts["failures"])


def _decoded(row) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(row["image"])).convert("RGB")).astype(int)


def test_exif_rotated_images_come_out_upright(malformed):
    rows, shards, _, cases = malformed
    rotated = [(url, name) for url, name, *_ in rows if name in cases and cases[name].upright]
    assert len(rotated) == 9
    for url, name in rotated:
        pixels = _decoded(shards[url])
        size = CASE_OPTIONS["image_size"]
        middle = pixels[size // 2]  # upright: red on the left, blue on the right (white borders above and below)
        left, right = middle[2], middle[-3]
        assert left[0] > 150 and left[2] < 100 and right[2] > 150 and right[0] < 100, (name, left, right)
        assert shards[url]["original_width"] == 120 and shards[url]["original_height"] == 60, name


def test_16_bit_images_keep_their_brightness(malformed):
    rows, shards, _, _ = malformed
    for url, name, *_ in rows:
        if name.startswith("png16"):
            pixels = _decoded(shards[url])
            # a 0..65535 ramp: mid-grey on average once scaled to 8 bits (OpenCV alone saturates it to white),
            # white borders ('border' mode pads 64x48 to a square) lift the mean a little
            assert 110 < pixels.mean() < 175, (name, pixels.mean())
