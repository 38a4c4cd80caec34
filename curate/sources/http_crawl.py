"""A small, polite, same-host, breadth-first crawler: it yields the HTML pages below an http(s) start URL.

Polite: one request at a time, a timeout on every request, robots.txt obeyed, pages capped in size and number.
Safe: every hop (start URL, links, redirects, robots.txt) goes through netguard unless private networks are allowed,
so a page cannot make the crawler probe the local network. Failures are counted, never raised.
"""

from __future__ import annotations

import http.client
import logging
import urllib.error
import urllib.request
import urllib.robotparser
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urldefrag, urlsplit

from curate.sources.html_pairs import Page
from curate.net.netguard import PrivateNetworkError, ensure_public

log = logging.getLogger(__name__)

USER_AGENT = "fairsift-crawler/0.1 (+https://github.com/fairsift/fairsift)"
MAX_PAGE_BYTES = 8 << 20
MAX_REDIRECTS = 5
HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclass
class CrawlLimits:
    max_depth: int
    max_pages: int
    timeout: float
    allow_private_network: bool


class _GuardedRedirects(urllib.request.HTTPRedirectHandler):
    """Checks every redirect target with netguard before following it."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, allow_private_network: bool):
        self.allow_private_network = allow_private_network

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urlsplit(newurl).scheme not in ("http", "https"):
            raise urllib.error.URLError(f"redirect to a non-http URL {newurl!r}")
        if not self.allow_private_network:
            ensure_public(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _NotHtml(Exception):
    pass


class HttpFetcher:
    def __init__(self, limits: CrawlLimits):
        self.limits = limits
        self._opener = urllib.request.build_opener(_GuardedRedirects(limits.allow_private_network))
        self._host_is_public: dict[str, bool] = {}

    def check_host(self, url: str) -> None:
        """Raise PrivateNetworkError for a private host (answers cached per host for the crawl)."""
        if self.limits.allow_private_network:
            return
        host = urlsplit(url).netloc
        if host not in self._host_is_public:
            try:
                ensure_public(url)
                self._host_is_public[host] = True
            except PrivateNetworkError:
                self._host_is_public[host] = False
        if not self._host_is_public[host]:
            raise PrivateNetworkError(url)

    def get(self, url: str) -> tuple[str, bytes, str | None, str]:
        """(final URL, body, charset, content type); raises on network errors, HTTP errors and private hosts."""
        self.check_host(url)
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "text/html,*/*;q=0.5"})
        with self._opener.open(request, timeout=self.limits.timeout) as response:
            content_type = (response.headers.get_content_type() or "").lower()
            body = response.read(MAX_PAGE_BYTES)
            return response.geturl(), body, response.headers.get_content_charset(), content_type

    def robots(self, start_url: str) -> Callable[[str], bool]:
        """A can-fetch test from the host's robots.txt; a missing or unreachable robots.txt allows everything."""
        parts = urlsplit(start_url)
        parser = urllib.robotparser.RobotFileParser()
        try:
            _, body, charset, _ = self.get(f"{parts.scheme}://{parts.netloc}/robots.txt")
            parser.parse(body.decode(charset or "utf-8", errors="replace").splitlines())
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):  # same reading as the standard library's RobotFileParser.read
                return lambda url: False
            return lambda url: True
        except (OSError, ValueError, http.client.HTTPException):
            return lambda url: True
        return lambda url: parser.can_fetch(USER_AGENT, url)


def crawl_site(start_url: str, limits: CrawlLimits, counts: Counter, on_page: Callable[[Page], list[str]]) -> None:
    """Fetch the pages of one start URL breadth-first (same host, at most `max_pages` fetched, `max_depth` links
    deep) and hand each HTML page to `on_page`, which returns the page's links."""
    fetcher = HttpFetcher(limits)
    start_url = urldefrag(start_url).url
    host = urlsplit(start_url).netloc
    try:
        fetcher.check_host(start_url)
    except PrivateNetworkError as exc:
        log.warning("%s", exc)
        counts["pages_refused_private"] += 1
        return
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
        except PrivateNetworkError as exc:
            log.warning("%s", exc)
            counts["pages_refused_private"] += 1
            continue
        except _NotHtml:
            counts["pages_not_html"] += 1
            continue
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, HTTPError, timeouts, bad URLs
            log.info("crawl: %s failed: %s", url, exc)
            counts["pages_failed"] += 1
            continue
        links = on_page(Page(url=final_url, source="http", body=body, http_charset=charset))
        if depth >= limits.max_depth:
            continue
        for link in links:
            if urlsplit(link).netloc == host and link not in queued:
                queued.add(link)
                queue.append((link, depth + 1))
