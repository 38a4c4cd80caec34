"""Caption tokenization off the scoring loop's critical path.

open_clip's tokenizer is pure Python (regex + BPE): about 10,000 captions/s per process and it holds the GIL the
whole time, so in a thread it would stall the loop that feeds the GPU. With `processes > 0` captions are tokenized
in a pool of spawned processes (spawn: a forked child of a CUDA process may not touch CUDA, and the children need
none), each holding its own copy of the tokenizer; batches are submitted as soon as they are read, so their tokens
are ready by the time their images are decoded. With `processes == 0` (CPU scoring, tests) tokenization runs in
the calling thread.
"""

from __future__ import annotations

import multiprocessing
import pickle
import warnings
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from typing import Callable, Optional, Sequence

import numpy as np

_WORKER_TOKENIZER: Optional[Callable] = None


def _init_worker(pickled_tokenizer: bytes) -> None:
    global _WORKER_TOKENIZER
    import curate.score.clip_model  # noqa: F401  (registers the tiny test architecture before unpickling)

    _WORKER_TOKENIZER = pickle.loads(pickled_tokenizer)


def _tokenize_in_worker(texts: list[str]) -> np.ndarray:
    assert _WORKER_TOKENIZER is not None, "tokenizer pool worker not initialised"
    return _WORKER_TOKENIZER(texts).numpy()


class TokenizerPool:
    """`submit(captions)` -> Future of an int64 array [n, context_length] (what `tokenizer(captions)` returns)."""

    def __init__(self, tokenizer: Callable, processes: int = 0):
        self.tokenizer = tokenizer
        self.pool: Optional[ProcessPoolExecutor] = None
        if processes > 0:
            try:
                self.pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_init_worker, initargs=(pickle.dumps(tokenizer),))
            except Exception as exc:  # a tokenizer that does not pickle
                self._no_processes(exc)

    def _no_processes(self, exc: BaseException) -> None:
        warnings.warn(f"tokenizing in the scoring thread: no tokenizer processes ({type(exc).__name__}: {exc})")
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = None

    @property
    def processes(self) -> int:
        return self.pool._max_workers if self.pool is not None else 0  # noqa: SLF001

    def tokenize(self, texts: Sequence[str]) -> np.ndarray:
        return self.tokenizer(list(texts)).numpy()

    def submit(self, texts: Sequence[str]) -> Future:
        if self.pool is not None:
            try:
                return self.pool.submit(_tokenize_in_worker, list(texts))
            except (AssertionError, OSError, RuntimeError) as exc:
                # processes start on the first submit: a daemonic engine worker may not have children
                self._no_processes(exc)
        done: Future = Future()
        done.set_result(self.tokenize(texts))
        return done

    def result(self, future: Future, texts: Sequence[str]) -> np.ndarray:
        """The tokens of a submitted batch; a pool that broke (a worker died) is dropped and the batch redone here."""
        try:
            return future.result()
        except BrokenExecutor as exc:
            self._no_processes(exc)
            return self.tokenize(texts)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
