"""Which row a fetch thread takes next: per-host queues with concurrency and rate limits, Retry-After pauses and a
circuit breaker. Hosts are keyed by host:port.

- Rows of one host are handed out in row order, hosts in turn (one slow host does not hold the threads).
- A host that has not answered yet gets one request at a time; after its first HTTP answer, up to
  `per_host_concurrency`. So the first requests to a dead host run one after the other, in row order, and which rows
  meet the breaker does not depend on thread timing: local and Ray engines give identical shards.
- `per_host_rps` (and a robots.txt Crawl-delay) space request starts; `pause` holds a host back (Retry-After).
- Circuit breaker: after `failure_limit` consecutive connection failures (DNS, refused, connect timeout, unreachable)
  the host is closed and its remaining rows come back from `finish` for the caller to mark `host_unreachable`
  without a request. `close` does the same for other reasons (a Retry-After longer than the caller will wait).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from curate.schemas import STATUS_HOST_UNREACHABLE


@dataclass
class Job:
    row: int
    url: str
    host: str
    attempt: int = 0


@dataclass
class _Host:
    pending: deque = field(default_factory=deque)
    in_flight: int = 0
    answered: bool = False
    failures: int = 0
    closed: Optional[tuple[str, str, str]] = None  # (status, error kind, message) of the rows it leaves
    not_before: float = 0.0
    interval: float = 0.0
    queued: bool = False


class HostScheduler:
    def __init__(self, jobs: list[Job], per_host_concurrency: int, per_host_rps: Optional[float],
                 failure_limit: int):
        self.per_host_concurrency = max(1, per_host_concurrency)
        self.failure_limit = max(1, failure_limit)
        self._interval = 1.0 / per_host_rps if per_host_rps else 0.0
        self._hosts: dict[str, _Host] = {}
        for job in jobs:
            self._hosts.setdefault(job.host, _Host(interval=self._interval)).pending.append(job)
        self._ready: deque[str] = deque()
        self._timed: list[tuple[float, int, str]] = []
        self._seq = itertools.count()
        self._active = 0
        self._cond = threading.Condition()
        now = time.monotonic()
        for host in self._hosts:
            self._place(host, now)

    def _capacity(self, state: _Host) -> int:
        return self.per_host_concurrency if state.answered else 1

    def _place(self, host: str, now: float) -> None:
        state = self._hosts[host]
        if state.queued or not state.pending or state.closed or state.in_flight >= self._capacity(state):
            return
        state.queued = True
        if state.not_before > now:
            heapq.heappush(self._timed, (state.not_before, next(self._seq), host))
        else:
            self._ready.append(host)

    def _pending(self) -> bool:
        return any(state.pending and not state.closed for state in self._hosts.values())

    def next(self) -> Optional[Job]:
        """The next row to fetch, waiting while hosts are busy or paused; None when every row has been handed out
        and finished."""
        with self._cond:
            while True:
                now = time.monotonic()
                while self._timed and self._timed[0][0] <= now:
                    _, _, host = heapq.heappop(self._timed)
                    self._hosts[host].queued = False
                    self._place(host, now)
                while self._ready:
                    host = self._ready.popleft()
                    state = self._hosts[host]
                    state.queued = False
                    if state.not_before > now:
                        self._place(host, now)
                        continue
                    if not state.pending or state.closed or state.in_flight >= self._capacity(state):
                        continue
                    job = state.pending.popleft()
                    state.in_flight += 1
                    self._active += 1
                    if state.interval:
                        state.not_before = max(state.not_before, now) + state.interval
                    self._place(host, now)
                    return job
                if self._active == 0 and not self._pending():
                    self._cond.notify_all()
                    return None
                timeout = self._timed[0][0] - now if self._timed else None
                self._cond.wait(timeout)

    def _release(self, job: Job) -> _Host:
        state = self._hosts[job.host]
        state.in_flight -= 1
        self._active -= 1
        return state

    def finish(self, job: Job, *, answered: bool = False, connection_failure: bool = False,
               failure_message: str = "") -> list[Job]:
        """Record a finished row; returns the rows dropped because this failure opened the host's breaker."""
        with self._cond:
            state = self._release(job)
            dropped: list[Job] = []
            if answered:
                state.answered = True
                state.failures = 0
            elif connection_failure:
                state.failures += 1
                if state.failures >= self.failure_limit and state.closed is None:
                    state.closed = (STATUS_HOST_UNREACHABLE, "circuit_breaker",
                                    f"not requested: {job.host} failed {state.failures} consecutive time(s)"
                                    f" (last: {failure_message})")
                    dropped = list(state.pending)
                    state.pending.clear()
            self._place(job.host, time.monotonic())
            self._cond.notify_all()
            return dropped

    def closed_as(self, host: str) -> Optional[tuple[str, str, str]]:
        """(status, error kind, message) for the rows of a closed host, None while it is open."""
        with self._cond:
            return self._hosts[host].closed

    def retry(self, job: Job, after: float, *, answered: bool = True) -> None:
        """Put a row back at the head of its host's queue; the host is paused for `after` seconds."""
        with self._cond:
            state = self._release(job)
            state.answered = state.answered or answered
            state.pending.appendleft(Job(job.row, job.url, job.host, job.attempt + 1))
            now = time.monotonic()
            state.not_before = max(state.not_before, now + after)
            self._place(job.host, now)
            self._cond.notify_all()

    def close(self, job: Job, status: str, kind: str, reason: str) -> list[Job]:
        """Finish a row and stop requesting its host; returns the host's remaining rows."""
        with self._cond:
            state = self._release(job)
            state.answered = True
            if state.closed is None:
                state.closed = (status, kind, reason)
            dropped = list(state.pending)
            state.pending.clear()
            self._cond.notify_all()
            return dropped

    def set_min_interval(self, host: str, seconds: float) -> None:
        """Space this host's request starts by at least `seconds` (a robots.txt Crawl-delay)."""
        with self._cond:
            state = self._hosts.get(host)
            if state is not None and seconds > state.interval:
                state.interval = seconds
