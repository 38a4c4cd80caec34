"""The score stage on real Parquet shards built from the bundled sample, with the tiny CLIP trained on it."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from curate import tables
from curate.score.clip_model import TEST_MODEL
from curate.options import ScoreOptions
from curate.schemas import SHARDS, STATUS_FAILED_DOWNLOAD
from curate.score.stage import score
from tests.tiny_clip import sample_pairs, shards_table, tiny_clip_checkpoint, write_sample_shards  # noqa: F401


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # the tiny model is faster on one thread, and far faster when the CPU is shared with other jobs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _opts(checkpoint: Path | None, **kw) -> ScoreOptions:
    base = dict(model=TEST_MODEL, pretrained=None, checkpoint=str(checkpoint) if checkpoint else None, device="cpu",
                batch_size=16, workers=0)
    return ScoreOptions(**{**base, **kw})


@pytest.fixture(scope="module")
def scored_run(tmp_path_factory, tiny_clip_checkpoint):
    run = tmp_path_factory.mktemp("score") / "run"
    write_sample_shards(run, sample_pairs(), rows_per_part=40)
    counts = score(run, _opts(tiny_clip_checkpoint))
    return run, counts


def _joined(run: Path):
    clip = tables.read_table(run, "clip").to_pandas()
    emb = tables.read_table(run, "embeddings").to_pandas()
    shards = tables.read_table(run, "shards", ["uid", "url", "caption", "image"]).to_pandas()
    return clip.merge(emb, on="uid").merge(shards, on="uid")


def test_clip_score_is_the_cosine_of_stored_embeddings_and_of_plain_open_clip(scored_run, tiny_clip_checkpoint):
    run, counts = scored_run
    df = _joined(run)
    assert len(df) == 98 and counts["rows"] == counts["scored"] == 98 and counts["failed"] == 0
    assert pq.read_schema(tables.part_path(run, "clip", 0)).field("clip_score").type == pa.float32()
    image_emb = np.stack(df["image_embedding"].to_numpy()).astype(np.float32)
    text_emb = np.stack(df["text_embedding"].to_numpy()).astype(np.float32)
    assert image_emb.shape == (98, 64)
    np.testing.assert_allclose(np.linalg.norm(image_emb, axis=1), 1.0, atol=2e-3)  # float16 storage
    np.testing.assert_allclose(df["clip_score"], (image_emb * text_emb).sum(axis=1), atol=2e-3)

    # the same numbers from open_clip alone: model from the checkpoint, its own transform and tokenizer
    model, _, preprocess = open_clip.create_model_and_transforms(TEST_MODEL, pretrained=str(tiny_clip_checkpoint))
    model.eval()
    pixels = torch.stack([preprocess(Image.open(io.BytesIO(b))) for b in df["image"]])
    with torch.no_grad():
        img = model.encode_image(pixels, normalize=True)
        txt = model.encode_text(open_clip.get_tokenizer(TEST_MODEL)(list(df["caption"])), normalize=True)
    np.testing.assert_allclose(df["clip_score"], (img * txt).sum(-1).numpy(), atol=1e-4)


def test_trained_model_scores_matched_captions_above_shuffled_ones(scored_run, tiny_clip_checkpoint, tmp_path):
    run, _ = scored_run
    pairs = sample_pairs()
    order = np.random.default_rng(7).permutation(len(pairs))
    order = np.where(order == np.arange(len(pairs)), np.roll(order, 1), order)  # nobody keeps their own caption
    shuffled_run = tmp_path / "shuffled"
    write_sample_shards(shuffled_run, [(pairs[i][0], pairs[j][1]) for i, j in enumerate(order)], rows_per_part=40)
    score(shuffled_run, _opts(tiny_clip_checkpoint))

    matched = _joined(run).set_index("url")["clip_score"]
    shuffled = _joined(shuffled_run).set_index("url")["clip_score"]  # same url = same image position
    assert len(matched) == len(shuffled) == len(pairs)
    wins = (matched > shuffled.reindex(matched.index)).mean()
    assert wins >= 0.9, wins


def test_model_is_recorded_in_table_and_counts(scored_run):
    run, counts = scored_run
    info = counts["model"]
    assert info["is_test_model"] is True and "TEST MODEL" in info["id"]
    assert info["arch"] == TEST_MODEL and info["checkpoint"] and len(info["weights_sha256"]) == 64
    assert set(tables.read_table(run, "clip", ["model"]).column("model").to_pylist()) == {info["id"]}
    assert counts["parts"] == counts["parts_scored"] == 3 and counts["parts_skipped"] == 0
    assert 0 < counts["mean_clip_score"] <= 1


def test_rerun_resumes_lost_part_identically_and_recomputes_for_another_model(scored_run, tiny_clip_checkpoint, tmp_path):
    source, first = scored_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    before = {t: tables.read_table(run, t) for t in ("clip", "embeddings")}
    tables.part_path(run, "clip", 1).unlink()  # lost after its embeddings were written

    again = score(run, _opts(tiny_clip_checkpoint, workers=2, batch_size=16))
    assert (again["parts_scored"], again["parts_skipped"], again["parts_rescored_model_changed"]) == (1, 2, 0)
    for name, table in before.items():
        assert tables.read_table(run, name).equals(table), name
    assert {k: again[k] for k in ("rows", "scored", "mean_clip_score")} == {k: first[k] for k in ("rows", "scored", "mean_clip_score")}

    other = score(run, _opts(None))  # the random-init test model: every part must be redone
    assert other["parts_rescored_model_changed"] == 3 and other["parts_skipped"] == 0
    assert other["replaced_model"] == first["model"]["id"]
    models = set(tables.read_table(run, "clip", ["model"]).column("model").to_pylist())
    assert models == {other["model"]["id"]} and "random init" in other["model"]["id"]


def test_bad_images_get_a_null_score_and_a_note(tmp_path, tiny_clip_checkpoint):
    pairs = sample_pairs()[:5]
    good = shards_table(pairs)
    rows = good.to_pylist()
    rows[1]["image"] = rows[1]["image"][:200]  # truncated JPEG
    rows[2]["image"] = b"not an image at all"
    rows[3]["image"] = None  # says success, has no bytes
    rows.append({**rows[0], "uid": "f" * 32, "status": STATUS_FAILED_DOWNLOAD, "image": None, "error_message": "404"})
    run = tmp_path / "run"
    tables.write_part(run, "shards", 0, pa.Table.from_pylist(rows, schema=SHARDS))
    failed_only = pa.Table.from_pylist([rows[-1] | {"uid": "e" * 32}], schema=SHARDS)
    tables.write_part(run, "shards", 1, failed_only)

    counts = score(run, _opts(tiny_clip_checkpoint, workers=1, batch_size=2))
    assert (counts["rows"], counts["scored"], counts["failed"]) == (5, 2, 3)
    clip = tables.read_table(run, "clip").to_pandas().set_index("uid")
    assert "f" * 32 not in clip.index  # not downloaded: nothing to score
    uids = [r["uid"] for r in rows]
    assert clip.loc[uids[0], "clip_score"] > -1 and clip.loc[uids[0], "score_error"] is None
    for uid in uids[1:4]:
        assert np.isnan(clip.loc[uid, "clip_score"]) and clip.loc[uid, "score_error"]
    assert "cannot decode image" in clip.loc[uids[2], "score_error"]
    assert "missing" in clip.loc[uids[3], "score_error"]
    emb = tables.read_table(run, "embeddings", ["uid"]).column("uid").to_pylist()
    assert emb == [uids[0], uids[4]]
    assert tables.part_path(run, "clip", 1).is_file() and pq.read_metadata(tables.part_path(run, "clip", 1)).num_rows == 0
    assert score(run, _opts(tiny_clip_checkpoint))["parts_skipped"] == 2  # empty parts count as done too


def test_cli_score_with_the_test_model(tmp_path):
    from pipelines.cli import app

    run = tmp_path / "run"
    write_sample_shards(run, sample_pairs()[:20], rows_per_part=10)
    result = CliRunner().invoke(app, ["score", str(run), "--model", "tiny-test", "--batch-size", "16",
                                      "--workers", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["is_test_model"] is True
    assert manifest["stages"]["score"]["counts"]["scored"] == 20
    assert tables.read_table(run, "clip").num_rows == 20

    missing = CliRunner().invoke(app, ["score", str(tmp_path / "nothing"), "--model", "tiny-test"])
    assert missing.exit_code == 2 and "fairsift download" in missing.output


# -- the part model: what makes a part be redone, and engines other than serial_map ------------------------------

def _part_mtimes(run: Path) -> dict[tuple[str, str], int]:
    return {(t, p.name): p.stat().st_mtime_ns for t in ("clip", "embeddings") for p in tables.list_parts(run, t)}


def test_a_changed_shards_part_is_rescored_and_settings_change_nothing(scored_run, tiny_clip_checkpoint, tmp_path):
    source, first = scored_run
    run = tmp_path / "run"
    shutil.copytree(source, run)
    from curate.parts import read_lineage

    lineage = read_lineage(tables.part_path(run, "clip", 0))
    assert lineage["stage"] == "score" and set(lineage["inputs"]) == {"shards/part-00000.parquet"}
    assert lineage["options"]["model"] == first["model"]["id"]
    assert lineage["options"]["weights_sha256"] == first["model"]["weights_sha256"]
    assert "device" not in lineage["options"] and "batch_size" not in lineage["options"]

    # speed settings and the decode path are not in the lineage: nothing is redone
    same = score(run, _opts(tiny_clip_checkpoint, batch_size=5, workers=1, decode="pil", precision="fp32"))
    assert (same["parts_scored"], same["parts_skipped"]) == (0, 3)
    assert {k: same[k] for k in ("rows", "scored", "mean_clip_score")} == \
        {k: first[k] for k in ("rows", "scored", "mean_clip_score")}
    assert same["model"]["id"] == first["model"]["id"]  # recorded by the run that made the parts

    # the images of part 1 change (a re-download at another size): that part alone is redone
    shards = tables.read_part(tables.part_path(run, "shards", 1))
    small = [_resized_jpeg(b, 128) for b in shards.column("image").to_pylist()]
    shards = shards.set_column(shards.schema.get_field_index("image"), "image", pa.array(small, type=pa.binary()))
    tables.write_part(run, "shards", 1, shards.replace_schema_metadata(None))
    before = _part_mtimes(run)
    again = score(run, _opts(tiny_clip_checkpoint))
    assert (again["parts_scored"], again["parts_skipped"], again["parts_rescored_model_changed"]) == (1, 2, 0)
    after = _part_mtimes(run)
    assert {k for k in after if after[k] != before[k]} == {("clip", "part-00001.parquet"),
                                                          ("embeddings", "part-00001.parquet")}
    fresh = tmp_path / "fresh"  # the rerun's tables are those of a run scored from scratch on the new shards
    shutil.copytree(run / "shards", fresh / "shards")
    score(fresh, _opts(tiny_clip_checkpoint))
    for name in ("clip", "embeddings"):
        assert tables.read_table(run, name).equals(tables.read_table(fresh, name)), name

    # bf16 shapes the scores beyond the tolerance: every part is redone; a shards part removed takes its outputs along
    tables.part_path(run, "shards", 2).unlink()
    bf16 = score(run, _opts(tiny_clip_checkpoint, precision="bf16"))
    assert (bf16["parts"], bf16["parts_scored"], bf16["parts_skipped"]) == (2, 2, 0)
    assert [p.name for p in tables.list_parts(run, "clip")] == ["part-00000.parquet", "part-00001.parquet"]
    assert [p.name for p in tables.list_parts(run, "embeddings")] == ["part-00000.parquet", "part-00001.parquet"]


def _resized_jpeg(data: bytes, size: int) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").resize((size, size)).save(buf, "JPEG")
    return buf.getvalue()


_POOL_STATE = None


def _pool_init(setup):
    global _POOL_STATE
    torch.set_num_threads(1)
    _POOL_STATE = setup()


def _pool_call(fn, item):
    return fn(item, _POOL_STATE)


def _process_pool_map(fn, items, *, desc="", setup=None, resources=None):
    """A minimal engine: spawned worker processes, setup() once in each, results in item order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_pool_init, initargs=(setup,)) as pool:
        return list(pool.map(_pool_call, [fn] * len(items), items))


def test_a_process_pool_engine_gives_the_serial_engines_tables(scored_run, tiny_clip_checkpoint, tmp_path):
    source, first = scored_run
    run = tmp_path / "run"
    shutil.copytree(source / "shards", run / "shards")
    counts = score(run, _opts(tiny_clip_checkpoint, workers=1), map_parts=_process_pool_map)
    assert counts["parts_scored"] == 3
    assert {k: counts[k] for k in ("rows", "scored", "mean_clip_score")} == \
        {k: first[k] for k in ("rows", "scored", "mean_clip_score")}
    for name in ("clip", "embeddings"):
        assert tables.read_table(run, name).equals(tables.read_table(source, name)), name
