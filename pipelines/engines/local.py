"""The local engine: this machine's cores.

With one worker (or one item) the parts run in this process, one after the other — no start-up cost, and the easiest
to debug. With more, a process pool (spawned, not forked: torch, faiss and DuckDB keep threads that a fork would
copy in an unusable state) runs one part per worker at a time; each worker runs the map's `setup` once (a model
load) before its first part. A map that asks for a GPU (`resources={"num_gpus": 1}`) runs in this process, on the
one device it sees: parallel GPU scoring on one machine is better served by bigger batches than by processes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Optional, Sequence

from tqdm import tqdm

from curate.parts import PartWriteError
from pipelines.engines.base import Engine, call

_WORKER_STATE: dict = {}


def _init_worker(setup: Optional[Callable]) -> None:
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    _WORKER_STATE["state"] = setup() if setup is not None else None


def _run_in_worker(fn: Callable, item, with_state: bool):
    return call(fn, item, _WORKER_STATE.get("state"), with_state)


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LocalEngine(Engine):
    name = "local"

    def __init__(self, workers: Optional[int] = None):
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers or available_cores()

    def describe(self) -> dict:
        return {"name": self.name, "workers": self.workers}

    def map_parts(self, fn: Callable, items: Sequence, *, desc: str = "", setup: Optional[Callable] = None,
                  resources: Optional[dict] = None) -> list:
        items = list(items)
        workers = min(self.workers, len(items))
        if not items:
            return []
        if workers <= 1 or (resources or {}).get("num_gpus"):
            return self._in_process(fn, items, desc, setup)
        try:
            return self._in_pool(fn, items, desc, setup, workers)
        except (OSError, BrokenProcessPool) as exc:
            if isinstance(exc, PartWriteError):
                raise  # a part's own write failed: that is the error to report, not the pool's
            # the pool could not start or lost its workers (no permission to start the interpreter again, a
            # container without /dev/shm, a worker killed by the OOM killer): part functions are idempotent, so
            # the parts run here instead, and say why
            sys.stderr.write(f"warning: the local engine's process pool failed ({type(exc).__name__}: {exc}); "
                             f"running the {len(items)} parts in this process instead\n")
            return self._in_process(fn, items, desc, setup)

    @staticmethod
    def _in_process(fn: Callable, items: list, desc: str, setup: Optional[Callable]) -> list:
        state = setup() if setup is not None else None
        results = []
        with tqdm(total=len(items), desc=desc or None, unit="part", disable=None if len(items) > 1 else True,
                  leave=False) as bar:
            for item in items:
                results.append(call(fn, item, state, setup is not None))
                bar.update(1)
        return results

    @staticmethod
    def _in_pool(fn: Callable, items: list, desc: str, setup: Optional[Callable], workers: int) -> list:
        context = multiprocessing.get_context("spawn")
        results: list = [None] * len(items)
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                                   initargs=(setup,))
        try:
            futures: dict[Future, int] = {pool.submit(_run_in_worker, fn, item, setup is not None): i
                                          for i, item in enumerate(items)}
            with tqdm(total=len(items), desc=desc or None, unit="part", disable=None, leave=False) as bar:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[futures[future]] = future.result()  # a part's exception stops the map here
                        bar.update(1)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return results
