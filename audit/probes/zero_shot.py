"""Zero-shot classification with a CLIP model: image embeddings from files or bytes, class embeddings from prompts.

Images and prompts go through curate.score.clip_model (the project's one CLIP loader), so probes and the score stage use
the same preprocessing and normalisation.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from curate.score.clip_model import LoadedClip, encode_images, encode_texts

STATUS_OK = "success"
STATUS_UNREADABLE = "failed_to_read_image"


@dataclass
class ImageEmbeddings:
    """One row per input image; rows whose image could not be read are NaN and carry a status and message."""

    vectors: np.ndarray  # (N, D) float32, L2-normalised where status == success
    status: list[str]
    error_message: list[str | None]

    @property
    def ok(self) -> np.ndarray:
        return np.array([s == STATUS_OK for s in self.status], dtype=bool)


def _encode(loaded: LoadedClip, items: Sequence, open_image: Callable[[object], Image.Image], batch_size: int,
            desc: str) -> ImageEmbeddings:
    vectors = np.full((len(items), loaded.embed_dim), np.nan, dtype=np.float32)
    status: list[str] = [STATUS_OK] * len(items)
    messages: list[str | None] = [None] * len(items)
    with tqdm(total=len(items), desc=desc, unit="img", disable=None) as bar:
        for start in range(0, len(items), batch_size):
            rows, tensors = [], []
            for i in range(start, min(start + batch_size, len(items))):
                try:
                    with open_image(items[i]) as img:
                        tensors.append(loaded.preprocess(img.convert("RGB")))
                    rows.append(i)
                except Exception as exc:  # a bad image is a row with a status, never a crashed probe
                    status[i], messages[i] = STATUS_UNREADABLE, _message(exc)
            if tensors:
                vectors[rows] = encode_images(loaded, torch.stack(tensors))
            bar.update(min(batch_size, len(items) - start))
    return ImageEmbeddings(vectors, status, messages)


def _message(exc: Exception) -> str:
    # object reprs carry memory addresses, which would make reruns differ
    return re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {exc}")


def encode_image_files(loaded: LoadedClip, paths: Sequence[str | Path], batch_size: int = 64,
                       desc: str = "encode images") -> ImageEmbeddings:
    return _encode(loaded, list(paths), lambda p: Image.open(p), batch_size, desc)


def encode_image_bytes(loaded: LoadedClip, blobs: Sequence[bytes | None], batch_size: int = 64,
                       desc: str = "encode images") -> ImageEmbeddings:
    def open_blob(blob):
        if blob is None:
            raise ValueError("no image bytes")
        return Image.open(io.BytesIO(blob))

    return _encode(loaded, list(blobs), open_blob, batch_size, desc)


@dataclass
class ZeroShotClasses:
    labels: list[str]
    embeddings: np.ndarray  # (C, D) float32, L2-normalised


def class_embeddings(loaded: LoadedClip, prompts_by_class: dict[str, list[str]]) -> ZeroShotClasses:
    """One embedding per class: the mean of its prompts' embeddings, renormalised (CLIP's prompt ensembling)."""
    labels = list(prompts_by_class)
    if not labels:
        raise ValueError("a zero-shot classifier needs at least one class")
    flat = [p for label in labels for p in prompts_by_class[label]]
    text = encode_texts(loaded, flat)
    out = np.empty((len(labels), text.shape[1]), dtype=np.float32)
    start = 0
    for c, label in enumerate(labels):
        count = len(prompts_by_class[label])
        if count == 0:
            raise ValueError(f"class '{label}' has no prompts")
        mean = text[start:start + count].mean(axis=0)
        out[c] = mean / np.linalg.norm(mean)
        start += count
    return ZeroShotClasses(labels, out)


def templated(classes: dict[str, str], templates: list[str]) -> dict[str, list[str]]:
    """{label: class name} x templates -> {label: [prompt, ...]}."""
    return {label: [t.format(name) for t in templates] for label, name in classes.items()}


def model_logit_scale(loaded: LoadedClip) -> float:
    """The model's learned softmax temperature (100 for OpenAI's CLIP); 100 when the model has none."""
    scale = getattr(loaded.model, "logit_scale", None)
    if scale is None:
        return 100.0
    return float(torch.as_tensor(scale).detach().float().exp().clamp(max=100.0).cpu())


def softmax_probs(image_vectors: np.ndarray, classes: ZeroShotClasses, logit_scale: float) -> np.ndarray:
    """(N, C) class probabilities; rows of unreadable images stay NaN."""
    logits = logit_scale * (image_vectors.astype(np.float64) @ classes.embeddings.T.astype(np.float64))
    if len(logits) == 0:
        return logits
    with np.errstate(invalid="ignore"):
        logits -= np.max(logits, axis=1, keepdims=True)  # NaN rows stay NaN
    exp = np.exp(logits)
    return exp / exp.sum(axis=1, keepdims=True)


def top_k(probs: np.ndarray, labels: list[str], k: int) -> tuple[list[list[str]], list[list[float]]]:
    """Per row the k most probable labels and their probabilities (empty lists for NaN rows)."""
    k = min(k, len(labels))
    order = np.argsort(-np.nan_to_num(probs, nan=-1.0), axis=1, kind="stable")[:, :k]
    names, scores = [], []
    for row, idx in zip(probs, order):
        if np.isnan(row).any():
            names.append([]), scores.append([])
        else:
            names.append([labels[j] for j in idx])
            scores.append([float(row[j]) for j in idx])
    return names, scores


def argmax_labels(probs: np.ndarray, labels: list[str]) -> list[str | None]:
    idx = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)
    return [None if np.isnan(row).any() else labels[j] for row, j in zip(probs, idx)]


def read_checked_csv(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    """A probe's label CSV as strings; a missing file, missing columns or no rows stop with the path named."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} (expected columns {', '.join(columns)})")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it has {list(table.columns)}")
    if table.empty:
        raise ValueError(f"{path} has no rows")
    return table
