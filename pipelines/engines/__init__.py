"""Engines: WHERE the stages' part functions run. A stage never knows; it receives `engine.map_parts`.

- `local`: this machine's cores, one process per part at a time (a process pool), or in-process with one worker.
- `ray`:   Ray tasks across a cluster (`--ray-address ADDR`, or a local Ray instance when none is given), and
           Ray actors for work that loads a model once per worker (scoring, with `num_gpus` on GPU clusters).

Both run the same stage functions on the same parts and must give identical tables (tests/test_engines.py).
Like datatrove's executors, an engine holds no stage logic: it maps picklable functions over picklable items and
returns their results in item order.
"""

from __future__ import annotations

from typing import Optional

from pipelines.engines.base import Engine, EngineError
from pipelines.engines.local import LocalEngine

ENGINE_NAMES = ("local", "ray")


def make_engine(name: str = "local", *, address: Optional[str] = None, workers: Optional[int] = None) -> Engine:
    """The engine called `name`; `address` is the Ray cluster to join (None starts a local Ray instance)."""
    if name == "local":
        if address:
            raise EngineError("--ray-address only applies to --engine ray")
        return LocalEngine(workers=workers)
    if name == "ray":
        from pipelines.engines.ray_engine import RayEngine

        return RayEngine(address=address, workers=workers)
    raise EngineError(f"unknown engine {name!r}; engines are: {', '.join(ENGINE_NAMES)}")


__all__ = ["ENGINE_NAMES", "Engine", "EngineError", "LocalEngine", "make_engine"]
