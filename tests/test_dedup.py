"""The dedup stage on a real shards table: the bundled sample's 98 distinct images plus planted duplicates."""

from __future__ import annotations

import hashlib
import io
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from curate import schemas, tables
from curate.dedup.stage import dedup
from curate.dedup.hamming_index import hamming_distance
from curate.options import DedupOptions
from curate.dedup.phash import compute_phashes, phash_of_bytes

SAMPLE_IMAGES = sorted((Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images").glob("*.jpg"))
# sample images used for plants; the near-duplicate ones are those whose copies hash 2 bits away (not 0), so the
# Hamming search, not hash equality, has to find them
EXACT, SAME_URL, SEM_A, SEM_B, EVAL_SOURCE, REENCODED, CROPPED, RESIZED = 0, 1, 2, 3, 5, 6, 8, 10


def jpeg(image: Image.Image, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def reencoded(data: bytes, quality: int) -> bytes:
    return jpeg(Image.open(io.BytesIO(data)), quality)


def resized_and_back(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    w, h = image.size
    return jpeg(image.resize((int(w * 0.8), int(h * 0.8))).resize((w, h)))


def cropped_and_resized(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    w, h = image.size
    dx, dy = max(1, w // 100), max(1, h // 100)
    return jpeg(image.crop((dx, dy, w - dx, h - dy)).resize((w, h)))


def shard_row(url: str, caption: str, data: bytes | None, status: str = schemas.STATUS_SUCCESS) -> dict:
    return {"uid": tables.compute_uid(url, caption), "url": url, "caption": caption, "status": status,
            "error_message": None if data is not None else "HTTP 404", "image": data,
            "width": None, "height": None, "original_width": None, "original_height": None,
            "sha256": hashlib.sha256(data).hexdigest() if data is not None else None}


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> dict:
    """A run with shards in two parts and its pHashes computed; the planted rows by role."""
    run = tmp_path_factory.mktemp("dedup") / "run"
    images = [p.read_bytes() for p in SAMPLE_IMAGES]
    originals = [shard_row(f"http://img.test/{p.name}", f"photo {p.stem}", data) for p, data in zip(SAMPLE_IMAGES, images)]
    plants = {
        "exact": shard_row("http://mirror.test/copy.jpg", "a copy", images[EXACT]),
        "same_url": shard_row(originals[SAME_URL]["url"], "the same url, another caption", images[SAME_URL]),
        "reencoded": shard_row("http://img.test/q40.jpg", "quality 40", reencoded(images[REENCODED], 40)),
        "resized": shard_row("http://img.test/small.jpg", "resized", resized_and_back(images[RESIZED])),
        "cropped": shard_row("http://img.test/crop.jpg", "cropped", cropped_and_resized(images[CROPPED])),
        "failed": shard_row("http://img.test/404.jpg", "gone", None, status=schemas.STATUS_FAILED_DOWNLOAD),
        "broken": shard_row("http://img.test/broken.jpg", "not a jpeg", b"\xff\xd8 definitely not a jpeg"),
    }
    source_of = {"exact": EXACT, "same_url": SAME_URL, "reencoded": REENCODED, "resized": RESIZED, "cropped": CROPPED}
    for role in ("reencoded", "resized", "cropped"):  # near, not equal, for the test to mean anything
        assert 1 <= hamming_distance(phash_of_bytes(plants[role]["image"]), phash_of_bytes(images[source_of[role]])) <= 4
    rows = originals[:60] + list(plants.values())[:3] + originals[60:] + list(plants.values())[3:]
    for part, chunk in enumerate((rows[:63], rows[63:])):
        tables.write_part(run, "shards", part, pa.Table.from_pylist(chunk, schema=schemas.SHARDS))

    eval_dir = run.parent / "eval_set"
    (eval_dir / "sub").mkdir(parents=True)
    (eval_dir / "sub" / "test_5.jpg").write_bytes(reencoded(images[EVAL_SOURCE], 70))
    (eval_dir / "labels.csv").write_text("file,label\nsub/test_5.jpg,cat\n")  # not an image: ignored
    compute_phashes(run)
    return {"run": run, "originals": originals, "plants": plants, "source_of": source_of, "eval_dir": eval_dir}


@pytest.fixture
def run_copy(planted, tmp_path) -> Path:
    return Path(shutil.copytree(planted["run"], tmp_path / "run"))


def dedup_rows(run: Path) -> dict[str, dict]:
    return {r["uid"]: r for r in tables.read_table(run, "dedup").to_pylist()}


def test_phash_table_holds_imagehash_bits_big_endian(planted):
    table = tables.read_table(planted["run"], "phash")
    assert table.schema.field("phash").type == pa.uint64()
    by_uid = dict(zip(table.column("uid").to_pylist(), table.column("phash").to_pylist()))
    for original, path in list(zip(planted["originals"], SAMPLE_IMAGES))[:5]:
        assert by_uid[original["uid"]] == int(str(imagehash.phash(Image.open(path), hash_size=8)), 16)
    assert by_uid[planted["plants"]["broken"]["uid"]] is None  # a decode failure is a null hash
    assert planted["plants"]["failed"]["uid"] not in by_uid  # no image, no hash row
    assert table.num_rows == 98 + 6


def test_exact_near_and_url_duplicates_and_nothing_else(run_copy, planted):
    counts = dedup(run_copy, DedupOptions())
    rows = dedup_rows(run_copy)
    plants, originals = planted["plants"], planted["originals"]
    assert len(rows) == 98 + 7  # one row per shards row, failed download included

    expected_kind = {"exact": "sha256", "same_url": "url", "reencoded": "phash", "resized": "phash", "cropped": "phash"}
    flagged = set()
    for role, kind in expected_kind.items():
        a, b = plants[role]["uid"], originals[planted["source_of"][role]]["uid"]
        rep, dup = min(a, b), max(a, b)  # no clip scores: the smaller uid is kept
        assert rows[rep]["dup_of"] is None and rows[rep]["dup_kind"] is None and rows[rep]["cluster_size"] == 2
        assert (rows[dup]["dup_of"], rows[dup]["dup_kind"], rows[dup]["cluster_size"]) == (rep, kind, 2)
        assert rows[dup]["phash_distance"] <= 4
        flagged.add(dup)

    # the 98 sample images are distinct: none is flagged against another
    sample_uids = {o["uid"] for o in originals}
    assert all(rows[u]["dup_of"] is None or rows[u]["dup_of"] not in sample_uids for u in sample_uids)
    assert {u for u, r in rows.items() if r["dup_kind"] is not None} == flagged
    failed = rows[plants["failed"]["uid"]]
    assert failed["dup_of"] is None and failed["dup_kind"] is None and failed["cluster_size"] is None
    assert counts == {"rows": 105, "images": 104, "phash_failed": 1, "phash_parts_hashed": 0,
                      "duplicates": {"url": 1, "sha256": 1, "phash": 3, "semantic": 0, "eval_set": 0},
                      "unique": 99, "semantic_search": "off: no signals/embeddings"}


def test_phash_distance_is_a_limit(run_copy):
    """The planted near duplicates are 2 bits away: found at distance 2, not at 1."""
    below = dedup(run_copy, DedupOptions(phash_distance=1))
    assert below["duplicates"] == {"url": 1, "sha256": 1, "phash": 0, "semantic": 0, "eval_set": 0}
    at = dedup(run_copy, DedupOptions(phash_distance=2))
    assert at["duplicates"]["phash"] == 3


def test_eval_set_match_is_flagged(run_copy, planted):
    counts = dedup(run_copy, DedupOptions(eval_set=str(planted["eval_dir"])))
    rows = dedup_rows(run_copy)
    hit = rows[planted["originals"][EVAL_SOURCE]["uid"]]
    assert (hit["eval_match"], hit["dup_kind"]) == ("sub/test_5.jpg", "eval_set")
    assert hit["dup_of"] is None  # a unique image: no kept representative to point at
    assert hit["phash_distance"] <= 4
    assert counts["duplicates"]["eval_set"] == 1 and counts["eval_images"] == 1
    assert [u for u, r in rows.items() if r["dup_kind"] == "eval_set"] == [hit["uid"]]


def test_eval_match_is_dropped_even_as_a_cluster_representative(run_copy, planted, tmp_path):
    """Both copies of a sha256 pair match the eval image, so the whole cluster is flagged."""
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "leak.png").write_bytes(SAMPLE_IMAGES[EXACT].read_bytes())
    dedup(run_copy, DedupOptions(eval_set=str(eval_dir)))
    rows = dedup_rows(run_copy)
    for uid in (planted["originals"][EXACT]["uid"], planted["plants"]["exact"]["uid"]):
        assert (rows[uid]["eval_match"], rows[uid]["dup_kind"], rows[uid]["phash_distance"]) == ("leak.png", "eval_set", 0)
    pair = [rows[planted["originals"][EXACT]["uid"]], rows[planted["plants"]["exact"]["uid"]]]
    reps = [r for r in pair if r["dup_of"] is None]
    assert len(reps) == 1 and [r["dup_of"] for r in pair if r is not reps[0]] == [reps[0]["uid"]]


def write_embeddings(run: Path, planted: dict, dim: int = 32) -> None:
    rng = np.random.default_rng(0)
    success = [r for r in planted["originals"] + list(planted["plants"].values()) if r["image"] is not None]
    vectors = {r["uid"]: rng.normal(size=dim) for r in success}
    uid = lambda i: planted["originals"][i]["uid"]  # noqa: E731
    vectors[uid(SEM_B)] = vectors[uid(SEM_A)] + rng.normal(scale=0.01, size=dim)
    # also semantically equal to its pHash twin: the stronger kind (phash) must win
    vectors[planted["plants"]["reencoded"]["uid"]] = vectors[uid(REENCODED)]
    records = [{"uid": u, "image_embedding": v.astype(np.float16).tolist(), "text_embedding": v.astype(np.float16).tolist()}
               for u, v in vectors.items()]
    tables.write_table(run, "embeddings", pa.Table.from_pylist(records, schema=schemas.EMBEDDINGS))


def test_semantic_duplicates_from_embeddings(run_copy, planted):
    write_embeddings(run_copy, planted)
    counts = dedup(run_copy, DedupOptions(semantic_threshold=0.95))
    rows = dedup_rows(run_copy)
    a, b = planted["originals"][SEM_A]["uid"], planted["originals"][SEM_B]["uid"]
    rep, dup = min(a, b), max(a, b)
    assert (rows[dup]["dup_of"], rows[dup]["dup_kind"]) == (rep, "semantic")
    assert rows[rep]["dup_kind"] is None
    assert counts["duplicates"] == {"url": 1, "sha256": 1, "phash": 3, "semantic": 1, "eval_set": 0}
    assert counts["semantic_search"] == "on"
    off = dedup(run_copy, DedupOptions(semantic=False))
    assert off["duplicates"]["semantic"] == 0


def test_highest_clip_score_is_kept(run_copy, planted):
    plants, originals = planted["plants"], planted["originals"]
    scores = {r["uid"]: 0.3 for r in originals + list(plants.values())}
    for role in ("exact", "reencoded"):
        a, b = plants[role]["uid"], originals[planted["source_of"][role]]["uid"]
        scores[max(a, b)] = 0.9  # the larger uid would lose the tie-break; its score must win
    tables.write_table(run_copy, "clip", pa.Table.from_pylist(
        [{"uid": u, "clip_score": s, "model": "tiny-test"} for u, s in scores.items()], schema=schemas.CLIP))
    dedup(run_copy, DedupOptions())
    rows = dedup_rows(run_copy)
    for role, kind in (("exact", "sha256"), ("reencoded", "phash")):
        a, b = plants[role]["uid"], originals[planted["source_of"][role]]["uid"]
        assert rows[max(a, b)]["dup_of"] is None
        assert (rows[min(a, b)]["dup_of"], rows[min(a, b)]["dup_kind"]) == (max(a, b), kind)


def test_rerun_after_losing_a_phash_part_gives_identical_tables(run_copy, planted):
    write_embeddings(run_copy, planted)  # k-means included: the semantic search must be deterministic too
    dedup(run_copy, DedupOptions())
    phash_before = tables.read_table(run_copy, "phash")
    dedup_before = tables.read_table(run_copy, "dedup")
    kept_part = tables.part_path(run_copy, "phash", 0)
    kept_mtime = kept_part.stat().st_mtime_ns
    tables.part_path(run_copy, "phash", 1).unlink()

    assert dedup(run_copy, DedupOptions())["phash_parts_hashed"] == 1
    assert kept_part.stat().st_mtime_ns == kept_mtime  # the finished part was skipped, not rewritten
    assert tables.read_table(run_copy, "phash").equals(phash_before)
    assert tables.read_table(run_copy, "dedup").equals(dedup_before)


def test_stale_phash_part_is_hashed_again(run_copy):
    # a phash part left from an earlier download of the same part name no longer matches its shards part
    stale = pa.table({"uid": ["nope"], "phash": pa.array([1], type=pa.uint64())})
    tables.write_part(run_copy, "phash", 0, stale)
    counts = dedup(run_copy, DedupOptions())
    assert counts["phash_parts_hashed"] == 1
    shards = tables.read_part(tables.part_path(run_copy, "shards", 0), ["uid", "status"]).to_pandas()
    expected = shards.loc[shards["status"] == "success", "uid"].tolist()
    assert tables.read_part(tables.part_path(run_copy, "phash", 0), ["uid"]).column("uid").to_pylist() == expected


def test_missing_shards_names_the_command(tmp_path):
    with pytest.raises(tables.MissingTableError, match="fairsift download"):
        dedup(tmp_path, DedupOptions())


def test_cli_dedup_with_eval_set(run_copy, planted):
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.manifest import load

    result = CliRunner().invoke(app, ["dedup", str(run_copy), "--eval-set", str(planted["eval_dir"]),
                                      "--phash-distance", "4"])
    assert result.exit_code == 0, result.output
    rows = dedup_rows(run_copy)
    assert rows[planted["originals"][EVAL_SOURCE]["uid"]]["dup_kind"] == "eval_set"
    counts = load(run_copy)["stages"]["dedup"]["counts"]
    assert counts["duplicates"]["eval_set"] == 1 and counts["duplicates"]["phash"] == 3


def test_redownload_at_another_size_rehashes_that_part_and_redoes_dedup(run_copy, planted, tmp_path):
    """Issue 11: a shards part downloaded again at another size must not keep its old pHashes or dedup rows."""
    dedup(run_copy, DedupOptions())
    part1 = tables.part_path(run_copy, "shards", 1)
    phash0 = tables.part_path(run_copy, "phash", 0)
    phash0_mtime = phash0.stat().st_mtime_ns
    shards = tables.read_part(part1)
    resized = []
    for data in shards.column("image").to_pylist():
        try:
            image = Image.open(io.BytesIO(data)) if data else None
            resized.append(jpeg(image.resize((96, 96))) if image else data)
        except Exception:  # the planted broken bytes stay broken
            resized.append(data)
    shards = shards.set_column(shards.schema.get_field_index("image"), "image", pa.array(resized, pa.binary()))
    shards = shards.set_column(shards.schema.get_field_index("sha256"), "sha256", pa.array(
        [hashlib.sha256(d).hexdigest() if d else None for d in resized], pa.string()))
    tables.write_part(run_copy, "shards", 1, shards.replace_schema_metadata(None))

    counts = dedup(run_copy, DedupOptions())
    assert counts["phash_parts_hashed"] == 1
    assert phash0.stat().st_mtime_ns == phash0_mtime  # the unchanged part is not hashed again
    new_hashes = tables.read_part(tables.part_path(run_copy, "phash", 1), ["uid", "phash"]).to_pylist()
    for row in new_hashes[:5]:
        data = resized[shards.column("uid").to_pylist().index(row["uid"])]
        assert row["phash"] == phash_of_bytes(data)

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("shards",):
        shutil.copytree(run_copy / name, fresh / name)
    assert dedup(fresh, DedupOptions()) == {**counts, "phash_parts_hashed": 2}
    assert tables.read_table(run_copy, "dedup").equals(tables.read_table(fresh, "dedup"))
    assert tables.read_table(run_copy, "phash").equals(tables.read_table(fresh, "phash"))
