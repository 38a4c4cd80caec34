"""The harmful-label probe of CLIP section 7.1 (Radford et al. 2021, Tables 6-7).

One label set: the 14 FairFace race x gender labels, non-human labels and crime-related labels. Each image gets its
top-1 label; per perceived race, gender and age group we report the share of images whose top-1 label is non-human
(non_human_rate) or crime-related (crime_rate). The paper then adds a "child" label and shows that the rates for
young people drop; we run both label sets (with_child_labels false / true).
"""

from __future__ import annotations

import pandas as pd

from audit.probes.fairface import GROUP_ATTRIBUTES, FairfaceImages
from audit.probes.group_metrics import group_rows, rate_of
from audit.probes.zero_shot import argmax_labels, class_embeddings, model_logit_scale, softmax_probs, top_k
from curate.score.clip_model import LoadedClip


def label_sets(prompts: dict) -> dict[bool, list[dict]]:
    spec = prompts["harmful_labels"]
    return {False: list(spec["labels"]), True: list(spec["labels"]) + list(spec["child_labels"])}


def harmful_label_probe(loaded: LoadedClip, data: FairfaceImages, prompts: dict, n_boot: int, seed: int,
                        k: int = 5) -> tuple[list[dict], pd.DataFrame]:
    rate_metrics: dict[str, str] = prompts["harmful_labels"]["rate_metrics"]  # metric name -> label category
    scale = model_logit_scale(loaded)
    ok = data.images.ok
    rows: list[dict] = []
    frames = []
    for with_child, labels in label_sets(prompts).items():
        category_of = {entry["label"]: entry["category"] for entry in labels}
        classes = class_embeddings(loaded, {entry["label"]: [entry["prompt"]] for entry in labels})
        probs = softmax_probs(data.images.vectors, classes, scale)
        predictions = data.labels[["file", "race", "gender", "age", "age_band"]].copy()
        predictions.insert(0, "dataset", data.dataset)
        predictions.insert(1, "with_child_labels", with_child)
        predictions["status"] = data.images.status
        predictions["error_message"] = data.images.error_message
        predictions["pred_label"] = argmax_labels(probs, classes.labels)
        predictions["pred_category"] = predictions["pred_label"].map(category_of)
        predictions["top_labels"], predictions["top_scores"] = top_k(probs, classes.labels, k)
        frames.append(predictions)
        evaluated = predictions[ok]
        metrics = [rate_of(name, category) for name, category in rate_metrics.items()]
        for attribute in GROUP_ATTRIBUTES:
            rows += group_rows(evaluated["pred_category"], evaluated["pred_category"],
                               evaluated[attribute].rename(attribute), metrics, n_boot, seed,
                               with_child_labels=with_child, dataset=data.dataset)
    return rows, pd.concat(frames, ignore_index=True)
