"""FairFace probes of CLIP section 7.1 (Radford et al. 2021): zero-shot race, gender and age accuracy per
perceived group (Tables 3-5). The harmful-label probe (Tables 6-7) is in harmful.py; both share the images read here.

FairFace labels are annotators' perceived attributes, not self-identification.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from audit.probes.group_metrics import accuracy, fairness_difference_rows, group_rows
from audit.probes.zero_shot import (
    read_checked_csv,
    ImageEmbeddings,
    argmax_labels,
    class_embeddings,
    encode_image_files,
    model_logit_scale,
    softmax_probs,
    top_k,
)
from curate.score.clip_model import LoadedClip

LABEL_COLUMNS = ("file", "age", "gender", "race")
TASKS = ("race", "gender", "age")
GROUP_ATTRIBUTES = ("race", "gender", "age", "age_band")


@dataclass
class FairfaceImages:
    dataset: str
    labels: pd.DataFrame  # file (as in labels.csv), path, race, gender, age, age_band
    images: ImageEmbeddings


def read_labels(folder: Path, prompts: dict) -> pd.DataFrame:
    """labels.csv of a FairFace folder, checked against the prompt file's classes; errors name the row and field."""
    path = folder / "labels.csv"
    labels = read_checked_csv(path, LABEL_COLUMNS, "FairFace labels")
    for task in TASKS:
        known = prompts["tasks"][task]
        bad = labels.index[~labels[task].isin(list(known))]
        if len(bad):
            row = int(bad[0])
            raise ValueError(f"{path} row {row + 2}, field '{task}': {labels.at[row, task]!r} is not one of "
                             f"{list(known)} (audit/prompts/fairface.json)")
    band_of = {age: band for band, ages in prompts["age_bands"]["bands"].items() for age in ages}
    labels = labels[list(LABEL_COLUMNS)].copy()
    labels["age_band"] = labels["age"].map(band_of)
    labels["path"] = [str(folder / f) for f in labels["file"]]
    return labels


def load_fairface(loaded: LoadedClip, folder: Path, prompts: dict, batch_size: int) -> FairfaceImages:
    labels = read_labels(folder, prompts)
    images = encode_image_files(loaded, labels["path"].tolist(), batch_size=batch_size, desc=f"fairface {folder.name}")
    return FairfaceImages(str(folder), labels, images)


def accuracy_probe(loaded: LoadedClip, data: FairfaceImages, prompts: dict, n_boot: int, seed: int,
                   k: int = 5) -> tuple[list[dict], pd.DataFrame]:
    """Rows of probe_fairface (accuracy of each task per group of each attribute, plus fairlearn's gender
    parity differences across races) and the per-image predictions they were computed from."""
    scale = model_logit_scale(loaded)
    predictions = data.labels[["file", "race", "gender", "age", "age_band"]].copy()
    predictions.insert(0, "dataset", data.dataset)
    predictions["status"] = data.images.status
    predictions["error_message"] = data.images.error_message
    ok = data.images.ok
    rows: list[dict] = []
    for task in TASKS:
        classes = class_embeddings(loaded, prompts["tasks"][task])
        probs = softmax_probs(data.images.vectors, classes, scale)
        predictions[f"pred_{task}"] = argmax_labels(probs, classes.labels)
        names, scores = top_k(probs, classes.labels, k)
        predictions[f"{task}_top_labels"], predictions[f"{task}_top_scores"] = names, scores
        evaluated = predictions[ok]
        for attribute in GROUP_ATTRIBUTES:
            rows += group_rows(evaluated[task], evaluated[f"pred_{task}"], evaluated[attribute].rename(attribute),
                               [accuracy()], n_boot, seed, task=task, dataset=data.dataset)
    evaluated = predictions[ok]
    rows += fairness_difference_rows(evaluated["gender"], evaluated["pred_gender"], evaluated["race"].rename("race"),
                                     positive_label="Female", n_boot=n_boot, seed=seed, task="gender",
                                     dataset=data.dataset)
    predictions["image_embedding"] = [v.tolist() if good else None for v, good in zip(data.images.vectors, ok)]
    return rows, predictions
