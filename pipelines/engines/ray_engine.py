"""The Ray engine: part functions as Ray tasks spread over a cluster; model-holding work as Ray actors.

`RayEngine(address)` joins a running cluster (`ray start --head` on one node, `ray start --address=HEAD:6379` on the
others; `address="auto"` finds it from this node); without an address it starts a local Ray instance on 127.0.0.1.
Tasks read and write the run folder by its absolute path, so on a multi-machine cluster the run folder must be on a
filesystem every node mounts at the same path (NFS, Lustre, a FUSE-mounted bucket).

A plain map submits one task per part (scheduling strategy SPREAD, so parts go to every node); a map with `setup`
(scoring: load the model once) runs on a pool of actors, one per GPU when the map asks for `num_gpus`, else one per
worker CPU, fed parts in order. Results come back in item order, as with the local engine.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence

from tqdm import tqdm

from pipelines.engines.base import Engine, EngineError, call

RAY_EXTRA = "pip install 'fairsift[ray]'"


def _import_ray():
    try:
        import ray
    except ImportError as exc:
        raise EngineError(f"the Ray engine needs Ray, which is not installed: {RAY_EXTRA}") from exc
    return ray


def _task(fn: Callable, item):
    return call(fn, item)


class _StatefulWorker:
    """A Ray actor body: runs setup() once, then the part function on each item it is given."""

    def __init__(self, setup: Callable):
        os.environ.setdefault("WANDB_MODE", "disabled")
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
        self.state = setup()

    def run(self, fn: Callable, item):
        return call(fn, item, self.state, True)


class RayEngine(Engine):
    name = "ray"

    def __init__(self, address: Optional[str] = None, workers: Optional[int] = None):
        ray = _import_ray()
        self.address = address
        self.workers = workers
        self._started_here = False
        if not ray.is_initialized():
            os.environ.setdefault("WANDB_MODE", "disabled")
            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
            try:
                if address:
                    ray.init(address=address, include_dashboard=False, log_to_driver=False,
                             ignore_reinit_error=True)
                else:
                    # a local instance binds loopback only; workers inherit this process's environment
                    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
                             _node_ip_address="127.0.0.1", ignore_reinit_error=True)
                    self._started_here = True
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"the Ray cluster at {address}" if address else "a local Ray instance"
                raise EngineError(f"cannot start or join {where}: {exc}") from exc
        self._ray = ray

    def describe(self) -> dict:
        resources = self._ray.cluster_resources()
        return {"name": self.name, "address": self.address or "local", "nodes": len(self._ray.nodes()),
                "cpus": resources.get("CPU", 0), "gpus": resources.get("GPU", 0)}

    def map_parts(self, fn: Callable, items: Sequence, *, desc: str = "", setup: Optional[Callable] = None,
                  resources: Optional[dict] = None) -> list:
        items = list(items)
        if not items:
            return []
        resources = dict(resources or {})
        num_cpus = resources.get("num_cpus", 1)
        num_gpus = resources.get("num_gpus", 0)
        if setup is None:
            remote = self._ray.remote(_task).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                                     scheduling_strategy="SPREAD")
            refs = [remote.remote(fn, item) for item in items]
            return self._gather(refs, desc)
        return self._map_with_actors(fn, items, desc, setup, num_cpus, num_gpus)

    def _gather(self, refs: list, desc: str) -> list:
        ray = self._ray
        try:
            with tqdm(total=len(refs), desc=desc or None, unit="part", disable=None, leave=False) as bar:
                remaining = list(refs)
                while remaining:
                    done, remaining = ray.wait(remaining, num_returns=1)
                    ray.get(done)  # raises the part's own error (a RayTaskError that is also that error's type)
                    bar.update(len(done))
            return ray.get(refs)
        except BaseException:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise

    def _map_with_actors(self, fn: Callable, items: list, desc: str, setup: Callable, num_cpus: float,
                         num_gpus: float) -> list:
        ray = self._ray
        total = ray.cluster_resources()
        if num_gpus:
            slots = int(total.get("GPU", 0) // num_gpus)
            if slots < 1:
                raise EngineError(f"{desc or 'this map'} asks for {num_gpus} GPU per worker, but the Ray cluster "
                                  f"has {total.get('GPU', 0)} GPUs")
        else:
            slots = int(total.get("CPU", 1) // max(num_cpus, 1e-3))
        n_actors = max(1, min(len(items), slots, self.workers or slots))
        actor_cls = ray.remote(_StatefulWorker).options(num_cpus=num_cpus, num_gpus=num_gpus,
                                                        scheduling_strategy="SPREAD")
        actors = [actor_cls.remote(setup) for _ in range(n_actors)]
        try:
            refs = [actors[i % n_actors].run.remote(fn, item) for i, item in enumerate(items)]
            return self._gather(refs, desc)
        finally:
            for actor in actors:
                ray.kill(actor)

    def close(self) -> None:
        if self._started_here and self._ray.is_initialized():
            self._ray.shutdown()
