"""A total time limit per request, whatever the server does.

Socket timeouts bound each read, not a request: a server that trickles one byte per second, headers or body, never
trips them. Here one watchdog thread per process keeps the deadline of every request in flight; when one passes, it
shuts down that request's sockets, which wakes the blocked read at once. curate.net.http's connections register
themselves with the request running in their thread (`current()`).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from typing import Iterator, Optional


class Deadline:
    """One request's time limit and the connections it used."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.done = False
        self._connections: list = []
        self._lock = threading.Lock()

    def add(self, connection) -> None:
        with self._lock:
            if self.expired:
                _shutdown(connection)
            else:
                self._connections.append(connection)

    def expire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.expired = True
            for connection in self._connections:
                _shutdown(connection)

    def remaining(self) -> float:
        return self.at - time.monotonic()


def _shutdown(connection) -> None:
    sock = getattr(connection, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Watchdog:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._thread: Optional[threading.Thread] = None

    def watch(self, deadline: Deadline) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="fairsift-deadlines", daemon=True)
                self._thread.start()
            heapq.heappush(self._heap, (deadline.at, next(self._counter), deadline))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and self._heap[0][2].done:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            deadline.expire()


_WATCHDOG = _Watchdog()
_LOCAL = threading.local()


def current() -> Optional[Deadline]:
    """The deadline of the request running in this thread, if any."""
    return getattr(_LOCAL, "deadline", None)


@contextlib.contextmanager
def limit(seconds: float) -> Iterator[Deadline]:
    """Within the block, connections used by this thread are shut down once `seconds` have passed."""
    deadline = Deadline(seconds)
    outer = current()
    _LOCAL.deadline = deadline
    _WATCHDOG.watch(deadline)
    try:
        yield deadline
    finally:
        with deadline._lock:
            deadline.done = True
        _LOCAL.deadline = outer
