"""The score stage: CLIP similarity of every downloaded pair, plus the embeddings that dedup and the audit reuse.

shards/part-N.parquet -> signals/clip/part-N.parquet (uid, clip_score, model, score_error)
                      -> signals/embeddings/part-N.parquet (uid, image_embedding, text_embedding; float16, unit length)

JPEG decoding, preprocessing and tokenization run in DataLoader worker processes while the main process runs the
model. A part is done when both of its output files exist and were made by the requested model; a part made by
another model is recomputed, so a run never mixes scores of two models.
"""

from __future__ import annotations

import io
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from curate import schemas, tables
from curate.score.clip_model import (
    HF_HUB_PREFIX,
    TEST_MODEL,
    LoadedClip,
    encode_images,
    encode_tokens,
    load_clip,
    model_info,
)
from curate.options import ScoreOptions

DEFAULT_TAGS = {"ViT-B-32": "laion2b_s34b_b79k"}
MODEL_METADATA_KEY = b"fairsift.model"
SHARDS_COLUMNS_READ = ("uid", "status", "caption", "image")


def default_pretrained(model: str, checkpoint: Optional[str | Path] = None) -> Optional[str]:
    """The pretrained tag used when none is given: None for a checkpoint, the test model and hub names."""
    import open_clip

    if checkpoint or model == TEST_MODEL or model.startswith(HF_HUB_PREFIX) or ":" in model:
        return None
    if model in DEFAULT_TAGS:
        return DEFAULT_TAGS[model]
    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else None


@dataclass
class _PartJob:
    name: str  # part file name, shared by the shards part and its two outputs
    path: Path
    rows: np.ndarray  # row positions of the part's successful downloads
    uids: list[str]

    def batch_starts(self, batch_size: int) -> range:
        return range(0, len(self.rows), batch_size)


def _decode(data: Optional[bytes], preprocess) -> tuple[Optional[torch.Tensor], Optional[str]]:
    if data is None:
        return None, "image bytes missing although status is success"
    try:
        return preprocess(Image.open(io.BytesIO(data))), None
    except Exception as exc:  # any undecodable image becomes a row with a note, never a crashed run
        return None, f"cannot decode image: {type(exc).__name__}: {exc}"


class _ShardBatches(Dataset):
    """Item i is the i-th batch over all parts to score; batches never straddle two parts.

    Each worker process reads the image and caption columns of the part its current batch comes from and keeps
    that one part in memory; the main process only ever sees decoded, preprocessed tensors.
    """

    def __init__(self, jobs: list[_PartJob], batch_size: int, preprocess, tokenizer, image_size: int):
        self.jobs = jobs
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.index = [(j, start) for j, job in enumerate(jobs) for start in job.batch_starts(batch_size)]
        self._loaded: tuple[int, list, list] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def _part_columns(self, job_pos: int) -> tuple[list, list]:
        if self._loaded is None or self._loaded[0] != job_pos:
            job = self.jobs[job_pos]
            table = pq.read_table(job.path, columns=["image", "caption"]).take(pa.array(job.rows))
            self._loaded = (job_pos, table.column("image").to_pylist(), table.column("caption").to_pylist())
        return self._loaded[1], self._loaded[2]

    def __getitem__(self, i: int) -> dict:
        job_pos, start = self.index[i]
        images, captions = self._part_columns(job_pos)
        stop = min(start + self.batch_size, len(images))
        pixels, ok, errors, texts = [], [], [], []
        for data, caption in zip(images[start:stop], captions[start:stop]):
            tensor, error = _decode(data, self.preprocess)
            ok.append(tensor is not None)
            errors.append(error)
            if tensor is not None:
                pixels.append(tensor)
                texts.append(caption or "")
        empty = torch.zeros((0, 3, self.image_size, self.image_size))
        return {
            "job": job_pos,
            "start": start,
            "ok": torch.tensor(ok, dtype=torch.bool),
            "errors": errors,
            "pixels": torch.stack(pixels) if pixels else empty,
            "tokens": self.tokenizer(texts) if texts else torch.zeros((0, 1), dtype=torch.long),
        }


def _read_jobs(run_dir: Path) -> list[_PartJob]:
    parts = tables.list_parts(run_dir, "shards")
    if not parts:
        raise tables.MissingTableError(run_dir, "shards")
    jobs = []
    for path in parts:
        missing = [c for c in SHARDS_COLUMNS_READ if c not in pq.read_schema(path).names]
        if missing:
            raise ValueError(f"{path}: shards part lacks columns {missing}")
        head = pq.read_table(path, columns=["uid", "status"])
        rows = np.flatnonzero(pc.equal(head.column("status"), schemas.STATUS_SUCCESS).fill_null(False).to_numpy(False))
        uids = head.column("uid").take(pa.array(rows)).to_pylist()
        jobs.append(_PartJob(name=path.name, path=path, rows=rows, uids=uids))
    return jobs


def _models_in_part(path: Path) -> set[str]:
    table = pq.read_table(path, columns=["model"])
    if table.num_rows == 0:
        meta = table.schema.metadata or {}
        return {meta[MODEL_METADATA_KEY].decode()} if MODEL_METADATA_KEY in meta else set()
    return {m for m in pc.unique(table.column("model")).to_pylist() if m is not None}


def _part_state(run_dir: Path, name: str, model_id: str, uids) -> tuple[str, set[str]]:
    """("todo" | "done" | "other_model", models found in the existing clip part). A part whose uids no longer match
    its shards part (the download was redone) is todo."""
    clip_path = tables.part_path(run_dir, "clip", name)
    if not (tables.part_matches(clip_path, uids) and tables.part_path(run_dir, "embeddings", name).is_file()):
        return "todo", set()
    models = _models_in_part(clip_path)
    return ("done" if models == {model_id} else "other_model"), models


def _f16_lists(vectors: np.ndarray) -> pa.Array:
    n, dim = vectors.shape
    flat = pa.array(vectors.astype(np.float16).reshape(-1), type=pa.float16())
    return pa.ListArray.from_arrays(pa.array(np.arange(0, n * dim + 1, dim, dtype=np.int32)), flat)


def _write_part(run_dir: Path, job: _PartJob, model_id: str, scores: np.ndarray, errors: list,
                image_emb: np.ndarray, text_emb: np.ndarray) -> None:
    ok = np.array([e is None for e in errors], dtype=bool)
    metadata = {MODEL_METADATA_KEY: model_id.encode()}
    clip = pa.table({
        "uid": pa.array(job.uids, type=pa.string()),
        "clip_score": pa.array(scores, type=pa.float32(), mask=~ok),
        "model": pa.array([model_id] * len(job.uids), type=pa.string()),
        "score_error": pa.array(errors, type=pa.string()),
    })
    # rows whose image did not decode have no image embedding: the table holds complete rows only
    embeddings = pa.table({
        "uid": pa.array([u for u, good in zip(job.uids, ok) if good], type=pa.string()),
        "image_embedding": _f16_lists(image_emb[ok]),
        "text_embedding": _f16_lists(text_emb[ok]),
    })
    clip = schemas.conform(clip, schemas.CLIP)
    embeddings = schemas.conform(embeddings, schemas.EMBEDDINGS)
    # embeddings first: a part counts as done only once its clip file exists
    tables.write_part(run_dir, "embeddings", job.name, embeddings.replace_schema_metadata(metadata))
    tables.write_part(run_dir, "clip", job.name, clip.replace_schema_metadata(metadata))


@contextmanager
def _cpu_threads_beside_workers(loaded: LoadedClip, workers: int) -> Iterator[None]:
    """On CPU the decode workers and the model share the cores: give the model only the cores the workers leave,
    since oversubscribed intra-op threads spin against the workers and slow both."""
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if loaded.device.type == "cpu" and workers > 0:
        torch.set_num_threads(max(1, min(threads, cores - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _score_jobs(run_dir: Path, jobs: list[_PartJob], loaded: LoadedClip, options: ScoreOptions) -> None:
    dataset = _ShardBatches(jobs, options.batch_size, loaded.preprocess, loaded.tokenizer, loaded.image_size)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=options.workers,
                        pin_memory=loaded.device.type == "cuda")
    batches = iter(loader)
    dim = loaded.embed_dim
    with tqdm(total=sum(len(j.rows) for j in jobs), desc="score", unit="pair", file=sys.stderr,
              mininterval=0.5) as progress:
        for job_pos, job in enumerate(jobs):
            n = len(job.rows)
            scores = np.zeros(n, dtype=np.float32)
            errors: list[Optional[str]] = [None] * n
            image_emb = np.zeros((n, dim), dtype=np.float32)
            text_emb = np.zeros((n, dim), dtype=np.float32)
            for start in job.batch_starts(options.batch_size):
                batch = next(batches)
                if (batch["job"], batch["start"]) != (job_pos, start):  # the loader keeps order; guard it anyway
                    raise RuntimeError(f"batch order broken: got {batch['job'], batch['start']}, want {job_pos, start}")
                ok = batch["ok"].numpy()
                positions = start + np.flatnonzero(ok)
                errors[start:start + len(ok)] = batch["errors"]
                if len(positions):
                    image_emb[positions] = encode_images(loaded, batch["pixels"])
                    text_emb[positions] = encode_tokens(loaded, batch["tokens"])
                    # cosine of unit vectors, computed from the fp32 embeddings before they are stored as fp16
                    scores[positions] = np.einsum("ij,ij->i", image_emb[positions], text_emb[positions])
                progress.update(len(ok))
            _write_part(run_dir, job, loaded.model_id, scores, errors, image_emb, text_emb)


def score(run_dir: str | Path, options: ScoreOptions) -> dict:
    """CLIP-score every successful download of RUN/shards/ part by part; returns the stage's counts."""
    run_dir = Path(run_dir)
    jobs = _read_jobs(run_dir)
    pretrained = options.pretrained if options.pretrained is not None else default_pretrained(options.model,
                                                                                               options.checkpoint)
    loaded = load_clip(options.model, pretrained=pretrained, checkpoint=options.checkpoint,
                       device=options.device, precision=options.precision)

    todo, skipped, replaced_models, rescored = [], [], set(), 0
    for job in jobs:
        state, models = _part_state(run_dir, job.name, loaded.model_id, list(job.uids))
        if state == "done":
            skipped.append(job)
            continue
        if state == "other_model":
            rescored += 1
            replaced_models |= models
        todo.append(job)
    if todo:
        with _cpu_threads_beside_workers(loaded, options.workers):
            _score_jobs(run_dir, todo, loaded, options)

    # counts describe the whole table after this run, so a rerun that skips everything reports the same numbers
    values = [pq.read_table(tables.part_path(run_dir, "clip", job.name), columns=["clip_score"]).column("clip_score")
              for job in jobs]
    all_scores = pa.chunked_array([c for v in values for c in v.chunks], type=pa.float32())
    scored = len(all_scores) - all_scores.null_count
    mean = pc.mean(all_scores).as_py() if scored else None
    counts = {
        "rows": sum(len(job.rows) for job in jobs),
        "scored": scored,
        "failed": all_scores.null_count,
        "parts": len(jobs),
        "parts_scored": len(todo),
        "parts_skipped": len(skipped),
        "parts_rescored_model_changed": rescored,
        "model": model_info(loaded),
        "mean_clip_score": round(float(mean), 6) if mean is not None else None,
    }
    if replaced_models:
        counts["replaced_model"] = "; ".join(sorted(replaced_models))
    return counts
