"""Picklable functions for the engine tests (engines import them by module path in their workers)."""

from __future__ import annotations

import os


def square(x: int) -> int:
    return x * x


def where(item: int) -> tuple[int, int]:
    """The item and the process that ran it."""
    return item, os.getpid()


def load_state() -> dict:
    return {"pid": os.getpid(), "token": os.urandom(4).hex()}


def with_state(item: int, state: dict) -> tuple[int, str, int]:
    return item, state["token"], os.getpid()


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError("part 3 is broken")
    return x
