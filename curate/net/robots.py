"""robots.txt, fetched once per origin and process, cached, read as RFC 9309 says (parser: Protego, Scrapy's).

- 2xx: the rules, matched against the user agent's product token ("fairsift"); at most 500 KiB is read, as Google does.
- 4xx (401 and 403 included, per RFC 9309 section 2.3.1.3): no rules, everything allowed.
- 5xx, or a robots.txt that could not be read after connecting (timeout, broken answer): everything disallowed
  until the entry expires (RFC 9309 section 2.3.1.4).
- A host that cannot be reached at all (DNS, refused, private address) raises the FetchError, uncached: the image
  request would fail the same way, and the caller counts it towards the host's circuit breaker.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit

from protego import Protego

from curate.net.http import FetchError, HttpClient

MAX_ROBOTS_BYTES = 500 << 10
TTL_SECONDS = 3600.0
MAX_ENTRIES = 100_000


@dataclass(frozen=True)
class RobotsRules:
    origin: str
    parser: Optional[Protego]  # None: see `allow_all`
    allow_all: bool
    note: str  # why there are no rules, for refusal messages

    def allows(self, url: str, token: str) -> bool:
        if self.parser is None:
            return self.allow_all
        return self.parser.can_fetch(url, token)

    def crawl_delay(self, token: str) -> Optional[float]:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(token)
        return float(delay) if delay is not None else None

    def refusal_message(self, url: str, token: str) -> str:
        if self.parser is None:
            return f"{self.origin}/robots.txt {self.note}; RFC 9309 treats the site as disallowed meanwhile"
        return f"{self.origin}/robots.txt disallows {urlsplit(url).path or '/'} for user agent {token!r}"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}"


class RobotsCache:
    """origin -> RobotsRules; concurrent askers of one origin wait for a single fetch."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES):
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, RobotsRules]] = OrderedDict()
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # robots.txt requests made (tests check "fetched once")

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._locks.clear()

    def _cached(self, origin: str) -> Optional[RobotsRules]:
        with self._lock:
            entry = self._entries.get(origin)
            if entry is None or entry[0] < time.monotonic():
                return None
            self._entries.move_to_end(origin)
            return entry[1]

    def rules(self, url: str, client: HttpClient) -> RobotsRules:
        origin = origin_of(url)
        cached = self._cached(origin)
        if cached is not None:
            return cached
        with self._lock:
            origin_lock = self._locks.setdefault(origin, threading.Lock())
        with origin_lock:
            cached = self._cached(origin)
            if cached is not None:
                return cached
            rules = self._fetch(origin, client)  # a FetchError for an unreachable host propagates, uncached
            with self._lock:
                self._entries[origin] = (time.monotonic() + self.ttl, rules)
                self._entries.move_to_end(origin)
                while len(self._entries) > self.max_entries:
                    old, _ = self._entries.popitem(last=False)
                    self._locks.pop(old, None)
            return rules

    def _fetch(self, origin: str, client: HttpClient) -> RobotsRules:
        with self._lock:
            self.fetches += 1
        try:
            response = client.get(origin + "/robots.txt", max_bytes=MAX_ROBOTS_BYTES, accept="text/plain,*/*;q=0.5",
                                  want_body=lambda status, headers: 200 <= status < 300)
        except FetchError as exc:
            if exc.connection_failure or exc.status is not None:
                raise
            if exc.kind == "too_large":  # an endless or huge robots.txt: treated like an unreadable one
                return RobotsRules(origin, None, False, "is over 500 KiB")
            return RobotsRules(origin, None, False, f"could not be read ({exc.message})")
        if 200 <= response.status < 300:
            text = response.body.decode("utf-8", errors="replace")
            return RobotsRules(origin, Protego.parse(text), True, "")
        if 400 <= response.status < 500:
            return RobotsRules(origin, None, True, f"answered {response.status}")
        return RobotsRules(origin, None, False, f"answered {response.status}")


CACHE = RobotsCache()  # one per process: each origin's robots.txt is fetched once, whatever part needs it
