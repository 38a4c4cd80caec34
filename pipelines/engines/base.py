"""What every engine offers: map_parts (curate.parts.MapParts), a name for the manifest, and close()."""

from __future__ import annotations

from typing import Callable, Optional, Sequence


class EngineError(RuntimeError):
    """An engine that cannot start (a missing extra, an unreachable cluster); the message says what to do."""


class Engine:
    name = "engine"

    def map_parts(self, fn: Callable, items: Sequence, *, desc: str = "", setup: Optional[Callable] = None,
                  resources: Optional[dict] = None) -> list:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict:
        """What the manifest records about the engine that ran a stage."""
        return {"name": self.name}

    def close(self) -> None:
        pass

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def call(fn: Callable, item, state=None, with_state: bool = False):
    """How a worker calls a part function: fn(item), or fn(item, state) when the map has a setup; the part's freed
    Arrow memory goes back to the system after it (curate.parts.release_part_memory)."""
    from curate.parts import release_part_memory

    try:
        return fn(item, state) if with_state else fn(item)
    finally:
        release_part_memory()
