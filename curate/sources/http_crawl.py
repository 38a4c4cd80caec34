"""A small, polite, same-host, breadth-first crawler: it yields the HTML pages below an http(s) start URL.

Polite: one request at a time, robots.txt obeyed (fetched once per host, curate.net.robots), pages capped in size and
number, every request bounded in time. Safe: all fetching goes through curate.net.http, the client the download stage
uses too, so every connection (start URL, links, redirects, robots.txt) passes netguard's private-network check on the
address actually connected, unless private networks are allowed. Failures are counted, never raised.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urldefrag, urlsplit

from curate.net import robots
from curate.net.http import FetchError, HttpClient, HttpSettings, default_user_agent, user_agent_token
from curate.sources.html_pairs import Page

log = logging.getLogger(__name__)

USER_AGENT = default_user_agent()
MAX_PAGE_BYTES = 8 << 20
MAX_REDIRECTS = 5
HTML_TYPES = ("text/html", "application/xhtml+xml")
PRIVATE_STATUS = "blocked_private_network"


@dataclass
class CrawlLimits:
    max_depth: int
    max_pages: int
    timeout: float
    allow_private_network: bool


class _NotHtml(Exception):
    pass


class HttpFetcher:
    def __init__(self, limits: CrawlLimits):
        self.limits = limits
        self.client = HttpClient(HttpSettings(
            user_agent=USER_AGENT, timeout=limits.timeout, total_timeout=max(30.0, 3 * limits.timeout),
            max_bytes=MAX_PAGE_BYTES, max_redirects=MAX_REDIRECTS,
            allow_private_network=limits.allow_private_network, connections_per_host=1))
        self.token = user_agent_token(USER_AGENT)

    def close(self) -> None:
        self.client.close()

    def get(self, url: str) -> tuple[str, bytes, str | None, str]:
        """(final URL, body, charset, content type); raises FetchError on network and HTTP errors and refusals.
        A page over MAX_PAGE_BYTES is cut there (its first 8 MiB still hold pairs)."""
        response = self.client.get(url, accept="text/html,application/xhtml+xml,*/*;q=0.5", truncate=True)
        if not 200 <= response.status < 300:
            raise FetchError(f"http_{response.status}", f"{url}: HTTP {response.status}")
        content_type = response.headers.get("Content-Type", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        charset = None
        for param in content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"\'')
        return response.url, response.body, charset, media_type

    def robots(self, start_url: str) -> Callable[[str], bool]:
        """A can-fetch test from the host's robots.txt (RFC 9309 reading, see curate.net.robots). A host that cannot
        be reached at all allows everything: its pages then fail on their own and are counted."""
        try:
            rules = robots.CACHE.rules(start_url, self.client)
        except FetchError:
            return lambda url: True
        return lambda url: rules.allows(url, self.token)


def crawl_site(start_url: str, limits: CrawlLimits, counts: Counter, on_page: Callable[[Page], list[str]]) -> None:
    """Fetch the pages of one start URL breadth-first (same host, at most `max_pages` fetched, `max_depth` links
    deep) and hand each HTML page to `on_page`, which returns the page's links."""
    fetcher = HttpFetcher(limits)
    try:
        _crawl(fetcher, urldefrag(start_url).url, limits, counts, on_page)
    finally:
        fetcher.close()


def _crawl(fetcher: HttpFetcher, start_url: str, limits: CrawlLimits, counts: Counter,
           on_page: Callable[[Page], list[str]]) -> None:
    host = urlsplit(start_url).netloc
    allowed = fetcher.robots(start_url)
    queue, queued, fetched = deque([(start_url, 0)]), {start_url}, 0
    while queue and fetched < limits.max_pages:
        url, depth = queue.popleft()
        if not allowed(url):
            counts["pages_refused_robots"] += 1
            continue
        fetched += 1
        try:
            final_url, body, charset, content_type = fetcher.get(url)
            if content_type not in HTML_TYPES:
                raise _NotHtml(content_type)
        except FetchError as exc:
            if exc.status == PRIVATE_STATUS:
                log.warning("%s", exc)
                counts["pages_refused_private"] += 1
            else:
                log.info("crawl: %s failed: %s", url, exc)
                counts["pages_failed"] += 1
            continue
        except _NotHtml:
            counts["pages_not_html"] += 1
            continue
        links = on_page(Page(url=final_url, source="http", body=body, http_charset=charset))
        if depth >= limits.max_depth:
            continue
        for link in links:
            if urlsplit(link).netloc == host and link not in queued:
                queued.add(link)
                queue.append((link, depth + 1))
