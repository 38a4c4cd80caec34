"""Scoring one shards part: the per-part function that engines map, and the per-worker setup that loads the model.

    state = load_scorer(spec)            # once per worker (map_parts' `setup`): model, tokenizer processes, threads
    score_part(task, state)              # per part: shards part -> signals/clip part + signals/embeddings part

Both are module-level and take plain data, so a process pool or a Ray actor can run them. A part is streamed batch
by batch (`batches.read_batches`); what stays in memory is one part's scores and float16 embeddings.
"""

from __future__ import annotations

import json
import os
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import torch
from tqdm import tqdm

from curate import schemas
from curate.parts import PartTask
from curate.score.clip_model import LoadedClip, load_clip, model_info
from curate.score.encode import IN_FLIGHT, Encoded, encode_pairs
from curate.score.pil_path import fixed_cpu_threads, pil_batches
from curate.score.tensor_path import Prepared, TensorPath
from curate.score.tokens import TokenizerPool

MODEL_METADATA_KEY = b"fairsift.model"  # model id, also on empty parts
MODEL_INFO_KEY = b"fairsift.model_info"  # model_info() of the model that wrote the part (device and precision too)
DECODERS = ("tensor", "pil")


@dataclass(frozen=True)
class ScorerSpec:
    """Everything a worker needs to load the model and score parts; plain data, picklable."""

    model: str
    pretrained: Optional[str]
    checkpoint: Optional[str]
    model_id: str  # the identity the plan recorded in every part's lineage; the loaded model must match it
    weights_sha256: Optional[str]
    device: str = "auto"
    precision: str = "auto"
    decode: str = "tensor"
    batch_size: int = 256
    workers: int = 2
    tokenize_workers: Optional[int] = None
    nvjpeg_share: float = 0.3
    cpu_threads: int = 1


def default_tokenize_workers(device: torch.device) -> int:
    """Tokenizer processes: on CUDA enough to outrun the model (~10k captions/s each), none on CPU where the model
    is the bottleneck and extra processes would only take its cores."""
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(3, cores // 4))


class Scorer:
    """A loaded model with the threads and processes that feed it; what `load_scorer` gives each worker."""

    def __init__(self, spec: ScorerSpec, loaded: LoadedClip):
        if spec.decode not in DECODERS:
            raise ValueError(f"decode must be one of {DECODERS}, not {spec.decode!r}")
        self.spec = spec
        self.loaded = loaded
        processes = spec.tokenize_workers if spec.tokenize_workers is not None else default_tokenize_workers(loaded.device)
        self.tokenizer = TokenizerPool(loaded.tokenizer, processes if spec.decode == "tensor" else 0)
        self.tensor_path = TensorPath(loaded, spec.batch_size, spec.workers, spec.nvjpeg_share, self.tokenizer) \
            if spec.decode == "tensor" else None
        # engines have no teardown hook: threads and tokenizer processes end with the scorer
        self._finalizer = weakref.finalize(self, _close, self.tokenizer, self.tensor_path)

    def batches(self, path: Path) -> Iterator[Prepared]:
        if self.tensor_path is not None:
            return self.tensor_path.batches(path)
        return pil_batches(self.loaded, path, self.spec.batch_size, self.spec.workers)

    def close(self) -> None:
        self._finalizer()


def _close(tokenizer: TokenizerPool, tensor_path: Optional[TensorPath]) -> None:
    tokenizer.close()
    if tensor_path is not None:
        tensor_path.close()


def load_scorer(spec: ScorerSpec) -> Scorer:
    """map_parts' setup: load the model once per worker and check it is the one the plan named."""
    loaded = load_clip(spec.model, pretrained=spec.pretrained, checkpoint=spec.checkpoint, device=spec.device,
                       precision=spec.precision)
    if (loaded.model_id, loaded.weights_sha256) != (spec.model_id, spec.weights_sha256):
        raise RuntimeError(f"the weights loaded here ({loaded.model_id}, sha256 {loaded.weights_sha256}) are not the "
                           f"ones the score stage planned with ({spec.model_id}, sha256 {spec.weights_sha256}); "
                           "did the checkpoint or the cache change during the run?")
    return Scorer(spec, loaded)


def _f16_lists(vectors: np.ndarray) -> pa.Array:
    n, dim = vectors.shape
    flat = pa.array(vectors.astype(np.float16, copy=False).reshape(-1), type=pa.float16())
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32)), flat)


def _output_tables(loaded: LoadedClip, uids: list[str], errors: list[Optional[str]], scores: np.ndarray,
                   image_emb: np.ndarray, text_emb: np.ndarray) -> tuple[pa.Table, pa.Table]:
    ok = np.array([e is None for e in errors], dtype=bool)
    metadata = {MODEL_METADATA_KEY: loaded.model_id.encode(), MODEL_INFO_KEY: json.dumps(model_info(loaded)).encode()}
    clip = pa.table({
        "uid": pa.array(uids, type=pa.string()),
        "clip_score": pa.array(scores, type=pa.float32(), mask=~ok),
        "model": pa.array([loaded.model_id] * len(uids), type=pa.string()),
        "score_error": pa.array(errors, type=pa.string()),
    })
    # rows whose image did not decode have no image embedding: the table holds complete rows only
    embeddings = pa.table({
        "uid": pa.array([u for u, good in zip(uids, ok) if good], type=pa.string()),
        "image_embedding": _f16_lists(image_emb),
        "text_embedding": _f16_lists(text_emb),
    })
    clip = schemas.conform(clip, schemas.CLIP).replace_schema_metadata(metadata)
    embeddings = schemas.conform(embeddings, schemas.EMBEDDINGS).replace_schema_metadata(metadata)
    return clip, embeddings


def score_part(task: PartTask, scorer: Scorer) -> dict:
    """shards part -> signals/clip part (every successful download: score or score_error) + signals/embeddings
    part (the rows that scored). Returns the part's counts and the model's facts."""
    loaded = scorer.loaded
    path = task.input_paths[0]
    uids: list[str] = []
    errors: list[Optional[str]] = []
    encoded: list[tuple[np.ndarray, Encoded]] = []  # (row positions, embeddings) per batch, collected lazily
    with fixed_cpu_threads(loaded, scorer.spec.cpu_threads), \
            tqdm(desc=f"score {task.name}", unit="pair", file=sys.stderr, mininterval=1.0, leave=False,
                 disable=None) as progress:
        for prepared in scorer.batches(path):
            raw = prepared.raw
            uids.extend(raw.uids)
            errors.extend(prepared.errors)
            tokens = scorer.tokenizer.result(prepared.tokens, raw.captions)
            if prepared.ok.any():
                positions = raw.start + np.flatnonzero(prepared.ok)
                encoded.append((positions, encode_pairs(loaded, prepared.pixels,
                                                        torch.from_numpy(np.ascontiguousarray(tokens[prepared.ok])),
                                                        prepared.ready)))
                if len(encoded) > IN_FLIGHT:
                    encoded[-1 - IN_FLIGHT][1].wait()
            progress.update(len(raw))

    n, dim = len(uids), loaded.embed_dim
    scores = np.zeros(n, dtype=np.float32)
    image_emb = np.zeros((n, dim), dtype=np.float16)
    text_emb = np.zeros((n, dim), dtype=np.float16)
    for positions, result in encoded:
        scores[positions], image_emb[positions], text_emb[positions] = result.numpy()
    ok = np.array([e is None for e in errors], dtype=bool)
    clip, embeddings = _output_tables(loaded, uids, errors, scores, image_emb[ok], text_emb[ok])
    task.write(embeddings, 1)
    task.write(clip, 0)
    return {"rows": n, "scored": int(ok.sum()), "failed": int(n - ok.sum()), "model": model_info(loaded)}
