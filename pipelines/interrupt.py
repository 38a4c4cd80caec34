"""Ctrl-C and `kill`: a stage stops, the manifest says `interrupted`, and the command exits 130 (SIGINT) or 143
(SIGTERM) with one line saying how to resume.

While a command runs, SIGINT and SIGTERM raise `Interrupted` in the main thread. Libraries that install their own
handler for these signals (img2dataset's turns Ctrl-C into `sys.exit(0)`, so `fairsift run x.yaml && upload` went
on after an interrupted download) are kept from replacing ours for as long as the command runs (their handler is
never installed; the handlers from before the command are restored after it). Worker processes get the signal from the terminal themselves
(same process group) or end with the pool when the main process exits.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stage was stopped by a signal. BaseException, like KeyboardInterrupt, so `except Exception` lets it pass."""

    def __init__(self, signum: int, stage: Optional[str] = None):
        super().__init__(f"{signal.Signals(signum).name} received")
        self.signum = signum
        self.stage = stage

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM

    def message(self) -> str:
        where = f" during {self.stage}" if self.stage else ""
        return f"interrupted{where}; run the same command to resume"


def as_interrupted(exc: BaseException) -> Optional[Interrupted]:
    """The Interrupted an exception stands for (KeyboardInterrupt counts as SIGINT), else None."""
    if isinstance(exc, Interrupted):
        return exc
    if isinstance(exc, KeyboardInterrupt):
        return Interrupted(signal.SIGINT)
    return None


def _raise(signum: int, _frame) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM raise Interrupted and other code cannot install another handler for them."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread only
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    real_signal = signal.signal
    deferred: dict[int, object] = {}

    def guarded_signal(signum, handler):
        if signum in SIGNALS:  # keep ours; hand back theirs when the block ends
            old = deferred.get(signum, _raise)
            deferred[signum] = handler
            return old
        return real_signal(signum, handler)

    for s in SIGNALS:
        real_signal(s, _raise)
    signal.signal = guarded_signal
    try:
        yield
    finally:
        signal.signal = real_signal
        for s in SIGNALS:
            real_signal(s, previous[s])
