"""Perceived attributes from pixels on a real shards table (sample images and FairFace faces), tiny test model."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from audit.perceived import build_perceived_signals
from audit.prompts import load_prompt_file
from curate.score.clip_model import encode_images, encode_texts, load_clip
from curate.schemas import SHARDS
from curate.tables import MissingTableError, compute_uid, read_table, table_path, write_part

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipelines" / "sample" / "images"
FAIRFACE = REPO / "tests" / "data" / "fairface" / "images"
TEST_MODEL = {"id": "tiny-test", "arch": "tiny-test", "pretrained": None, "checkpoint": None}


def image_files() -> list[Path]:
    files = sorted(SAMPLE.glob("wm_*.jpg"))[:4] + sorted(SAMPLE.glob("ccby_*.jpg"))[:2]
    files += sorted(FAIRFACE.glob("*.jpg"))[:4] if FAIRFACE.is_dir() else []
    return files


def make_run(run: Path, with_model: bool = True) -> list[dict]:
    rows = []
    for i, path in enumerate(image_files()):
        url = f"http://127.0.0.1/{path.name}"
        rows.append({"uid": compute_uid(url, f"caption {i}"), "url": url, "caption": f"caption {i}",
                     "status": "success", "image": path.read_bytes()})
    rows.append({"uid": compute_uid("http://127.0.0.1/404", "gone"), "url": "http://127.0.0.1/404", "caption": "gone",
                 "status": "failed_to_download", "error_message": "404", "image": None})
    rows.append({"uid": compute_uid("http://127.0.0.1/bad", "bad"), "url": "http://127.0.0.1/bad", "caption": "bad",
                 "status": "success", "image": b"not a jpeg at all"})
    full = [{name: row.get(name) for name in SHARDS.names} for row in rows]
    # two parts, as a download writes them
    write_part(run, "shards", 0, pa.Table.from_pylist(full[:5], schema=SHARDS))
    write_part(run, "shards", 1, pa.Table.from_pylist(full[5:], schema=SHARDS))
    if with_model:
        (run / "manifest.json").write_text(json.dumps({"model": TEST_MODEL, "stages": {}}))
    return rows


@pytest.fixture(scope="module")
def perceived(tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    rows = make_run(run)
    counts = build_perceived_signals(run, device="cpu")
    return {"run": run, "rows": rows, "counts": counts, "table": read_table(run, "perceived").to_pandas()}


def test_one_row_per_downloaded_image_with_perceived_columns(perceived):
    table, rows = perceived["table"], perceived["rows"]
    downloaded = [r["uid"] for r in rows if r["status"] == "success"]
    assert table["uid"].tolist() == downloaded
    for column in ("perceived_person", "perceived_person_prob", "perceived_gender_presentation",
                   "perceived_gender_presentation_prob", "perceived_age_group", "perceived_age_group_prob"):
        assert column in table.columns
    assert table_path(perceived["run"], "perceived") == perceived["run"] / "signals" / "perceived"


def test_labels_follow_the_person_decision(perceived):
    table = perceived["table"]
    readable = table[table["perceived_status"] == "success"]
    prompts = load_prompt_file("perceived")
    assert (readable["perceived_person"] == (readable["perceived_person_prob"] >= prompts["person_threshold"])).all()
    person, nobody = readable[readable["perceived_person"]], readable[~readable["perceived_person"].astype(bool)]
    assert set(person["perceived_gender_presentation"]) <= {"male", "female"}
    assert set(person["perceived_age_group"]) <= {"child", "young_adult", "adult", "older_adult"}
    assert person["perceived_gender_presentation_prob"].between(0, 1).all()
    assert (nobody["perceived_gender_presentation"] == "no_person").all()
    assert (nobody["perceived_age_group"] == "no_person").all()
    assert nobody["perceived_age_group_prob"].isna().all()
    counts = perceived["counts"]
    assert counts["perceived_person"] + counts["perceived_no_person"] == len(readable)


def test_unreadable_image_is_a_row_with_a_status(perceived):
    table = perceived["table"].set_index("uid")
    bad = table.loc[compute_uid("http://127.0.0.1/bad", "bad")]
    assert bad["perceived_status"] == "failed_to_read_image" and bad["perceived_error"]
    assert bad["perceived_person"] is None or np.isnan(bad["perceived_person_prob"])
    assert perceived["counts"]["perceived_unreadable"] == 1


def test_person_probability_recomputed_independently(perceived):
    """Softmax over person + non-person prompts, summed over the person prompts, by hand from the encoders."""
    prompts = load_prompt_file("perceived")
    loaded = load_clip("tiny-test", device="cpu")
    texts = encode_texts(loaded, prompts["person_prompts"] + prompts["non_person_prompts"]).astype(np.float64)
    scale = float(loaded.model.logit_scale.exp().clamp(max=100))
    table = perceived["table"].set_index("uid")
    for row in perceived["rows"][:3]:
        with Image.open(io.BytesIO(row["image"])) as img:
            pixels = loaded.preprocess(img.convert("RGB")).unsqueeze(0)
        logits = scale * (encode_images(loaded, pixels).astype(np.float64) @ texts.T)[0]
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        expected = probs[: len(prompts["person_prompts"])].sum()
        assert table.loc[row["uid"], "perceived_person_prob"] == pytest.approx(expected, abs=1e-4)


def test_both_branches_with_a_threshold_between_the_images(tmp_path):
    """A threshold at the median person probability must split the images into person and no_person rows."""
    make_run(tmp_path)
    first = build_perceived_signals(tmp_path, device="cpu")
    probs = read_table(tmp_path, "perceived").to_pandas()["perceived_person_prob"].dropna()
    prompts = load_prompt_file("perceived")
    prompts["person_threshold"] = float(np.median(probs))
    counts = build_perceived_signals(tmp_path, device="cpu", prompts=prompts)
    table = read_table(tmp_path, "perceived").to_pandas()
    assert counts["perceived_person"] > 0 and counts["perceived_no_person"] > 0
    assert (table["perceived_gender_presentation"] == "no_person").sum() == counts["perceived_no_person"]
    assert counts["perceived_prompts"]["person_threshold"] == prompts["person_threshold"]
    assert first["perceived_prompts"] == load_prompt_file("perceived")


def test_prompts_are_recorded_and_the_run_model_is_used(perceived):
    counts = perceived["counts"]
    assert counts["perceived_prompts"] == load_prompt_file("perceived")
    written = json.loads((perceived["run"] / "audit" / "perceived_prompts.json").read_text())
    assert written == counts["perceived_prompts"] and written["version"]
    assert counts["perceived_model"]["arch"] == "tiny-test"
    assert "model" not in counts  # the CLI lifts counts["model"] over the run's scoring model
    assert perceived["table"]["perceived_model"].str.startswith("tiny-test").all()


def test_rerun_is_identical(perceived, tmp_path):
    again = tmp_path / "again"
    make_run(again)
    build_perceived_signals(again, device="cpu")
    assert read_table(again, "perceived").equals(read_table(perceived["run"], "perceived"))


def test_model_falls_back_to_the_argument_and_errors_are_clear(tmp_path):
    make_run(tmp_path, with_model=False)
    with pytest.raises(ValueError, match="records none"):
        build_perceived_signals(tmp_path, device="cpu")
    counts = build_perceived_signals(tmp_path, model="tiny-test", device="cpu")
    assert counts["perceived_model"]["is_test_model"] is True
    with pytest.raises(MissingTableError, match="fairsift download"):
        build_perceived_signals(tmp_path / "empty", model="tiny-test")
