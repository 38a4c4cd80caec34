"""The PIL scoring path (`decode: pil`): open_clip's own transform on PIL images, in DataLoader worker processes.

This is the reference the tensor path is measured and tested against (benchmarks/bench_score.py): every image is
decoded by PIL and preprocessed by `loaded.preprocess` one at a time, and the float pixels travel from the worker
processes to the model through shared memory. It handles any format PIL reads; it is CPU-bound at a few thousand
images per second however many workers it gets.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader, Dataset

from curate import schemas
from curate.score import jpeg
from curate.score.batches import RawBatch, check_columns, successful_uids
from curate.score.clip_model import LoadedClip
from curate.score.tensor_path import Prepared, _done


class _PartBatches(Dataset):
    """Item i is the i-th batch of one part's successful downloads, decoded, preprocessed and tokenized. Each worker
    process reads the part's columns once and keeps them; the main process only ever sees tensors."""

    def __init__(self, path: Path, batch_size: int, preprocess, tokenizer, image_size: int):
        self.path = path
        self.batch_size = batch_size
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.n = len(successful_uids(path))
        self._columns = None

    def __len__(self) -> int:
        return (self.n + self.batch_size - 1) // self.batch_size

    def _part(self) -> tuple[list, list, list]:
        if self._columns is None:
            table = pq.read_table(self.path, columns=["uid", "status", "caption", "image"])
            table = table.filter(pc.fill_null(pc.equal(table.column("status"), schemas.STATUS_SUCCESS), False))
            self._columns = (table.column("uid").to_pylist(), [c or "" for c in table.column("caption").to_pylist()],
                             table.column("image").to_pylist())
        return self._columns

    def __getitem__(self, i: int) -> dict:
        uids, captions, images = self._part()
        start, stop = i * self.batch_size, min((i + 1) * self.batch_size, self.n)
        pixels, ok, errors = [], [], []
        for data in images[start:stop]:
            tensor, error = jpeg.pil_preprocess(data, self.preprocess)
            ok.append(tensor is not None)
            errors.append(error)
            if tensor is not None:
                pixels.append(tensor)
        empty = torch.zeros((0, 3, self.image_size, self.image_size))
        return {"start": start, "uids": uids[start:stop], "captions": captions[start:stop],
                "ok": torch.tensor(ok, dtype=torch.bool), "errors": errors,
                "pixels": torch.stack(pixels) if pixels else empty,
                "tokens": self.tokenizer(captions[start:stop])}


@contextmanager
def fixed_cpu_threads(loaded: LoadedClip, threads: int) -> Iterator[None]:
    """On CPU the model runs with a fixed number of intra-op threads, whatever the machine: float sums in matrix
    products depend on how they are split over threads, so a count taken from the cores would make scores differ in
    their last bits between engines and machines. Parallelism comes from the engine's workers instead."""
    before = torch.get_num_threads()
    if loaded.device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def cpu_threads_beside_workers(loaded: LoadedClip, workers: int) -> Iterator[None]:
    """On CPU the decode workers (processes on this path, threads on the tensor path) and the model share the
    cores: give the model only the cores the workers leave, since oversubscribed intra-op threads spin at their
    barriers against the workers and slow both (measured: ViT-B-32 on 2 cores, ~1.5x the CPU per pair)."""
    threads = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if loaded.device.type == "cpu" and workers > 0:
        torch.set_num_threads(max(1, min(threads, cores - workers)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pil_batches(loaded: LoadedClip, path: Path, batch_size: int, workers: int) -> Iterator[Prepared]:
    """Prepared batches of one shards part, in row order, decoded and tokenized in `workers` processes."""
    check_columns(path)
    dataset = _PartBatches(path, batch_size, loaded.preprocess, loaded.tokenizer, loaded.image_size)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                        pin_memory=loaded.device.type == "cuda")
    for batch in loader:
        n = len(batch["uids"])
        raw = RawBatch(start=batch["start"], uids=batch["uids"], captions=batch["captions"],
                       data=torch.empty(0, dtype=torch.uint8), offsets=np.zeros(n + 1, dtype=np.int64),
                       present=np.ones(n, dtype=bool))
        yield Prepared(raw=raw, tokens=_done(batch["tokens"].numpy()), ok=batch["ok"].numpy(),
                       errors=batch["errors"], pixels=batch["pixels"].to(loaded.device, non_blocking=True),
                       ready=None)
