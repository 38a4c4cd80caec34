"""The tensor scoring path: JPEG bytes -> decoded, preprocessed pixels on the model's device, batch after batch.

Built to keep a GPU busy (issue 7, "GPU scoring at decode speed"); on CPU the very same code runs with CPU tensors,
which is how the tests check it. Per batch of `batch_size` pairs, three stages overlap:

1. read (thread): the next rows of the shards part, their JPEG bytes copied once into one pinned buffer; each image
   sniffed (`jpeg.plain_jpeg`); captions submitted to the tokenizer processes; plain JPEGs split between nvJPEG
   (a `nvjpeg_share` of them, CUDA only) and chunks submitted to `workers` CPU threads running libjpeg-turbo
   (`torchvision.io.decode_jpeg`, GIL released).
2. decode (thread, its own CUDA stream): the nvJPEG share decoded in one batched call on the GPU, the CPU chunks
   collected, anything not a plain JPEG or refused by the decoders done by PIL + open_clip's transform one by one
   (or recorded as the row's error), then resize/crop/normalise on the device (`TensorPreprocess`); an event marks
   the pixels ready.
3. encode (the caller's thread, `encode.Encoder`): waits on that event on its own stream, encodes images and
   tokens under autocast, copies scores and embeddings back.

Why both decoders: torchvision serialises nvJPEG calls behind one mutex, and nvJPEG batch decode alone measured
7,175 images/s on an H100 against the model's 15,140 pairs/s; libjpeg-turbo decodes a 256-px JPEG in ~0.3 ms per
core, so a handful of CPU threads plus nvJPEG together can outrun the model. The split is fixed per batch
(deterministic: the same settings give the same pixels), and tunable with `nvjpeg_share`.

With `workers == 0` nothing runs in a thread: the stages run one after the other in the caller's thread.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from curate.score import jpeg
from curate.score.batches import MISSING_BYTES, RawBatch, read_batches
from curate.score.clip_model import LoadedClip
from curate.score.prefetch import prefetch
from curate.score.tensor_preprocess import TensorPreprocess, preprocess_config
from curate.score.tokens import TokenizerPool

QUEUE_DEPTH = 2  # batches waiting between two stages: enough to hide jitter, little memory (pixels live on the device)


@dataclass
class _Planned:
    raw: RawBatch
    tokens: Future
    gpu: list[int]  # plain JPEGs decoded by nvJPEG
    cpu: list[tuple[list[int], Future]]  # chunks of plain JPEGs decoded on CPU threads
    pil: list[int]  # images only PIL may decode


@dataclass
class Prepared:
    raw: RawBatch
    tokens: Future
    ok: np.ndarray  # bool [n]: the row's image decoded
    errors: list[Optional[str]]
    pixels: torch.Tensor  # float32 [ok.sum(), 3, H, W] on the model's device, rows in order
    ready: Optional[torch.cuda.Event]  # recorded on the decode stream after the pixels were written


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class TensorPath:
    def __init__(self, loaded: LoadedClip, batch_size: int, workers: int, nvjpeg_share: float,
                 tokenizer: TokenizerPool):
        self.loaded = loaded
        self.device = loaded.device
        self.cuda = self.device.type == "cuda"
        self.batch_size = batch_size
        self.workers = workers
        self.nvjpeg_share = nvjpeg_share if self.cuda else 0.0
        self.tokenizer = tokenizer
        self.preprocess = TensorPreprocess(preprocess_config(loaded), self.device)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jpeg") if workers > 0 else None
        self._decode_stream: Optional[torch.cuda.Stream] = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    # stage 1 -----------------------------------------------------------------------------------------------------
    def _plan(self, raw: RawBatch) -> _Planned:
        tokens = self.tokenizer.submit(raw.captions)
        view = raw.memoryview()
        plain, pil = [], []
        for i in range(len(raw)):
            if raw.present[i] and jpeg.plain_jpeg(view[raw.offsets[i]:raw.offsets[i + 1]]):
                plain.append(i)
            elif raw.present[i]:
                pil.append(i)
        n_gpu = int(round(len(plain) * self.nvjpeg_share))
        gpu, rest = plain[:n_gpu], plain[n_gpu:]
        chunks = [rest[k::max(1, self.workers)] for k in range(max(1, self.workers))] if rest else []
        cpu = []
        for chunk in (c for c in chunks if c):
            images = [raw.image(i) for i in chunk]
            future = self.pool.submit(jpeg.decode_many, images) if self.pool else _done(jpeg.decode_many(images))
            cpu.append((chunk, future))
        return _Planned(raw=raw, tokens=tokens, gpu=gpu, cpu=cpu, pil=pil)

    # stage 2 -----------------------------------------------------------------------------------------------------
    def _stream(self) -> torch.cuda.Stream:
        # one side stream: only one thread at a time runs stage 2
        if self._decode_stream is None:
            self._decode_stream = torch.cuda.Stream(self.device)
        return self._decode_stream

    def _prepare(self, planned: _Planned) -> Prepared:
        if not self.cuda:
            return self._prepare_here(planned)
        stream = self._stream()
        with torch.cuda.device(self.device), torch.cuda.stream(stream):
            prepared = self._prepare_here(planned)
            prepared.ready = torch.cuda.Event()
            prepared.ready.record(stream)
        return prepared

    def _prepare_here(self, planned: _Planned) -> Prepared:
        raw = planned.raw
        n = len(raw)
        decoded: dict[int, torch.Tensor] = {}
        if planned.gpu:
            for i, image in zip(planned.gpu, jpeg.decode_many([raw.image(i) for i in planned.gpu], self.device)):
                if image is not None:
                    decoded[i] = image
        for chunk, future in planned.cpu:
            for i, image in zip(chunk, future.result()):
                if image is not None:
                    decoded[i] = image
        errors: list[Optional[str]] = [None if raw.present[i] else MISSING_BYTES for i in range(n)]
        fallback: dict[int, torch.Tensor] = {}
        for i in sorted(set(planned.pil) | (set(planned.gpu) - decoded.keys())
                        | ({i for chunk, _ in planned.cpu for i in chunk} - decoded.keys())):
            pixels, errors[i] = jpeg.pil_preprocess(raw.image_bytes(i), self.loaded.preprocess)
            if pixels is not None:
                fallback[i] = pixels
        ok = np.array([i in decoded or i in fallback for i in range(n)], dtype=bool)
        row_of = np.cumsum(ok) - 1  # position of each decoded row in the pixel batch
        out = torch.empty((int(ok.sum()), 3, *self.preprocess.size), dtype=torch.float32, device=self.device)
        if decoded:
            order = sorted(decoded)
            self.preprocess([decoded[i] for i in order], out=out, positions=[int(row_of[i]) for i in order])
        if fallback:
            order = sorted(fallback)
            index = torch.tensor([int(row_of[i]) for i in order], device=self.device)
            stacked = torch.stack([fallback[i] for i in order])
            out.index_copy_(0, index, (stacked.pin_memory() if self.cuda else stacked).to(self.device, non_blocking=True))
        return Prepared(raw=raw, tokens=planned.tokens, ok=ok, errors=errors, pixels=out, ready=None)

    # the pipeline ------------------------------------------------------------------------------------------------
    def batches(self, path: Path) -> Iterator[Prepared]:
        """Prepared batches of one shards part, in row order."""
        raws = read_batches(path, self.batch_size, pin=self.cuda)
        if self.workers == 0:
            for raw in raws:
                yield self._prepare(self._plan(raw))
            return
        planned = prefetch((self._plan(raw) for raw in raws), QUEUE_DEPTH, name="score-read")
        yield from prefetch((self._prepare(p) for p in planned), QUEUE_DEPTH, name="score-decode")
