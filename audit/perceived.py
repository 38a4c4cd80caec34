"""Perceived attributes from pixels (`fairsift audit --perceived`): CLIP zero-shot guesses of whether an image shows
a person and, if so, the perceived gender presentation and age group.

These are what a model perceives in the pixels, not anyone's identity, and every column says so (perceived_*).
The prompts, threshold and their version live in audit/prompts/perceived.json; they are written next to the
results (RUN/audit/perceived_prompts.json) and returned in the counts that the CLI stores in manifest.json.

Step 1: softmax over person prompts and non-person prompts; perceived_person_prob is the summed probability of the
person prompts, and perceived_person is perceived_person_prob >= person_threshold (0.5: more likely a person than
anything else listed). Step 2, on person images only: the most probable class of perceived_gender_presentation and
of perceived_age_group, each with its probability. Images without a person get "no_person" in both columns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.parts import temp_path
from audit.prompts import load_prompt_file
from audit.probes.zero_shot import (
    ZeroShotClasses,
    class_embeddings,
    encode_image_bytes,
    model_logit_scale,
    softmax_probs,
)
from curate.score.clip_model import LoadedClip, encode_texts, load_clip, model_info
from curate.schemas import STATUS_SUCCESS
from curate.tables import MissingTableError, list_parts, read_part, write_table

PROMPTS_FILE = "perceived_prompts.json"
SIGNAL_COLUMNS = ("perceived_gender_presentation", "perceived_age_group")

PERCEIVED_SCHEMA = pa.schema([
    ("uid", pa.string()),
    ("perceived_person", pa.bool_()),
    ("perceived_person_prob", pa.float32()),
    ("perceived_gender_presentation", pa.string()),
    ("perceived_gender_presentation_prob", pa.float32()),
    ("perceived_age_group", pa.string()),
    ("perceived_age_group_prob", pa.float32()),
    ("perceived_status", pa.string()),
    ("perceived_error", pa.string()),
    ("perceived_model", pa.string()),
])

ModelSpec = Union[str, dict, None]


def _run_model(run_dir: Path) -> Optional[dict]:
    path = run_dir / "manifest.json"
    if not path.is_file():
        return None
    try:
        model = json.loads(path.read_text()).get("model")
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
    return model if isinstance(model, dict) and model.get("arch") else None


def _load_model(run_dir: Path, model: ModelSpec, device: str) -> LoadedClip:
    """The run's scoring model (manifest.json "model") if recorded, else the `model` argument."""
    spec = _run_model(run_dir) or model
    if spec is None:
        raise ValueError(f"no CLIP model for perceived signals: {run_dir / 'manifest.json'} records none (run "
                         "`fairsift score` first) and none was given")
    if isinstance(spec, str):
        return load_clip(spec, device=device)
    return load_clip(spec["arch"], pretrained=spec.get("pretrained"), checkpoint=spec.get("checkpoint"),
                     device=device)


class PerceivedClassifier:
    def __init__(self, loaded: LoadedClip, prompts: dict):
        self.loaded, self.prompts = loaded, prompts
        self.scale = model_logit_scale(loaded)
        person, other = prompts["person_prompts"], prompts["non_person_prompts"]
        vectors = encode_texts(loaded, person + other)
        self.presence = ZeroShotClasses(person + other, vectors)  # every prompt its own class
        self.n_person_prompts = len(person)
        self.signals = {column: class_embeddings(loaded, prompts["classes"][column]) for column in SIGNAL_COLUMNS}

    def classify(self, uids: list[str], blobs: list[Optional[bytes]], batch_size: int) -> dict[str, list]:
        images = encode_image_bytes(self.loaded, blobs, batch_size=batch_size, desc="perceived")
        ok = images.ok
        presence = softmax_probs(images.vectors, self.presence, self.scale)
        person_prob = presence[:, : self.n_person_prompts].sum(axis=1)
        is_person = person_prob >= float(self.prompts["person_threshold"])
        none = self.prompts["no_person_value"]
        out: dict[str, list] = {
            "uid": uids,
            "perceived_person": [bool(p) if good else None for p, good in zip(is_person, ok)],
            "perceived_person_prob": [float(p) if good else None for p, good in zip(person_prob, ok)],
        }
        for column, classes in self.signals.items():
            probs = softmax_probs(images.vectors, classes, self.scale)
            best = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)
            labels, scores = [], []
            for i in range(len(uids)):
                if not ok[i]:
                    labels.append(None), scores.append(None)
                elif not is_person[i]:
                    labels.append(none), scores.append(None)
                else:
                    labels.append(classes.labels[best[i]]), scores.append(float(probs[i, best[i]]))
            out[column], out[f"{column}_prob"] = labels, scores
        out["perceived_status"] = images.status
        out["perceived_error"] = images.error_message
        out["perceived_model"] = [self.loaded.model_id] * len(uids)
        return out


def build_perceived_signals(run_dir: Union[str, os.PathLike], model: ModelSpec = None, device: str = "auto",
                            batch_size: int = 64, prompts: Optional[dict] = None) -> dict[str, Any]:
    """Perceived person / gender presentation / age group of every downloaded image: RUN/signals/perceived/.

    `model` (an open_clip name, or a dict with arch/pretrained/checkpoint) is used only when the run's manifest
    records no scoring model; `prompts` replaces audit/prompts/perceived.json (it is recorded either way).
    """
    run_dir = Path(run_dir)
    parts = list_parts(run_dir, "shards")
    if not parts:
        raise MissingTableError(run_dir, "shards")
    prompts = prompts if prompts is not None else load_prompt_file("perceived")
    loaded = _load_model(run_dir, model, device)
    classifier = PerceivedClassifier(loaded, prompts)
    columns: dict[str, list] = {name: [] for name in PERCEIVED_SCHEMA.names}
    for part in parts:
        shards = read_part(part, columns=["uid", "status", "image"])
        downloaded = shards.filter(pc.equal(shards.column("status"), STATUS_SUCCESS))
        if downloaded.num_rows == 0:
            continue
        result = classifier.classify(downloaded.column("uid").to_pylist(), downloaded.column("image").to_pylist(),
                                     batch_size)
        for name in columns:
            columns[name] += result[name]
    table = pa.table(columns, schema=PERCEIVED_SCHEMA)
    write_table(run_dir, "perceived", table)
    _write_prompts(run_dir, prompts)
    return _counts(columns, prompts, loaded)


def _write_prompts(run_dir: Path, prompts: dict) -> None:
    path = run_dir / "audit" / PROMPTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(json.dumps(prompts, indent=2, ensure_ascii=False))
    os.replace(tmp, path)


def _counts(columns: dict[str, list], prompts: dict, loaded: LoadedClip) -> dict[str, Any]:
    def tally(values: list) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in values:
            if v is not None:
                out[v] = out.get(v, 0) + 1
        return dict(sorted(out.items()))

    person = columns["perceived_person"]
    return {
        "perceived_images": len(person),
        "perceived_person": sum(1 for p in person if p is True),
        "perceived_no_person": sum(1 for p in person if p is False),
        "perceived_unreadable": sum(1 for p in person if p is None),
        **{column: tally(columns[column]) for column in SIGNAL_COLUMNS},
        # named apart from "model": the CLI lifts a "model" dict to the manifest's top level, where the run's
        # scoring model is recorded
        "perceived_model": model_info(loaded),
        "perceived_prompts": prompts,
    }
