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
