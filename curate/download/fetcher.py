"""Fetch the rows of one part: a pool of threads takes rows from the HostScheduler and turns each URL into bytes or
a status with a message. Network safety, redirects and limits are curate.net's (the crawler uses the same client);
this module adds what is the download's own: robots.txt and the domain lists on every hop, X-Robots-Tag opt-outs
(img2dataset's rule and message), Retry-After on 429/503, retries of transient failures, the per-host breaker.

Results arrive through `on_result(row, Fetched)` in the calling thread (which resizes them), in completion order;
their content does not depend on that order.
"""

from __future__ import annotations

import http.client
import re
import queue
import threading
import traceback
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import urlsplit

from curate.download.scheduler import HostScheduler, Job
from curate.net import robots
from curate.net.domains import DomainRules
from curate.net.http import FetchError, HttpClient, HttpSettings, parse_retry_after, user_agent_token
from curate.schemas import (
    STATUS_BLOCKED_DOMAIN,
    STATUS_FAILED_DOWNLOAD,
    STATUS_OPTED_OUT,
    STATUS_REFUSED_ROBOTS,
)

X_ROBOTS_MESSAGE = "Use of image disallowed by X-Robots-Tag directive"  # img2dataset's wording
TRANSIENT_KINDS = frozenset({"timeout", "total_timeout", "protocol", "incomplete", "http_500", "http_502",
                             "http_504"})
THROTTLE_CODES = (429, 503)
_VALUED_DIRECTIVES = {"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"}


@dataclass
class Fetched:
    status: Optional[str] = None  # None: bytes to decode
    kind: Optional[str] = None
    message: Optional[str] = None
    body: Optional[bytes] = None


@dataclass(frozen=True)
class FetchSettings:
    http: HttpSettings
    threads: int = 32
    per_host_concurrency: int = 8
    per_host_rps: Optional[float] = None
    host_failure_limit: int = 3
    retries: int = 0
    throttle_retries: int = 2
    retry_after_max: float = 30.0
    respect_robots_txt: bool = True
    allowed_domains: tuple[str, ...] = ()
    blocked_domains: tuple[str, ...] = ()
    disallowed_header_directives: tuple[str, ...] = ("noai", "noimageai")


class _HostClosed(FetchError):
    """A 429/503 whose Retry-After is longer than we wait: this row fails and so do the host's remaining rows."""

    def __init__(self, message: str, dropped: list[Job]):
        super().__init__("throttled", message)
        self.dropped = dropped


def x_robots_refusal(values: list[str], token: str, directives: set[str]) -> bool:
    """Does any X-Robots-Tag header refuse us? Each value is "[user-agent:] directive, directive, ..." (Google's
    form); a value naming another user agent does not apply. The same reading as img2dataset's is_disallowed."""
    for value in values:
        head, colon, tail = value.partition(":")
        agent = head.strip().lower()
        if colon and re.fullmatch(r"[a-z0-9_-]+", agent) and agent not in _VALUED_DIRECTIVES:
            if agent != token:
                continue
            value = tail
        else:
            value = value
        if any(d.strip().lower() in directives for d in value.split(",")):
            return True
    return False


def host_key(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        port = 0
    return f"{(parts.hostname or '').lower()}:{port}"


class PartFetcher:
    def __init__(self, settings: FetchSettings, robots_cache: robots.RobotsCache = robots.CACHE):
        self.settings = settings
        self.client = HttpClient(settings.http)
        self.robots = robots_cache
        self.domains = DomainRules(settings.allowed_domains, settings.blocked_domains)
        self.token = user_agent_token(settings.http.user_agent)
        self.directives = {d.strip().lower() for d in settings.disallowed_header_directives}

    def close(self) -> None:
        self.client.close()

    def run(self, jobs: list[tuple[int, str]], on_result: Callable[[int, Fetched], None]) -> None:
        """Fetch every (row, url); on_result is called once per row, in this thread."""
        s = self.settings
        scheduler = HostScheduler([Job(row, url, host_key(url)) for row, url in jobs], s.per_host_concurrency,
                                  s.per_host_rps, s.host_failure_limit)
        results: queue.Queue = queue.Queue(maxsize=max(4, 2 * s.threads))  # bounds the bytes waiting to be resized
        remaining = len(jobs)
        n_threads = max(1, min(s.threads, len(jobs)))
        threads = [threading.Thread(target=self._worker, args=(scheduler, results), daemon=True,
                                    name=f"fairsift-fetch-{i}") for i in range(n_threads)]
        for thread in threads:
            thread.start()
        try:
            while remaining:
                row, fetched = results.get()
                remaining -= 1
                try:
                    on_result(row, fetched)
                except Exception as exc:  # noqa: BLE001 - a bug must cost one row, never the part
                    traceback.print_exc()
                    on_result(row, Fetched(STATUS_FAILED_DOWNLOAD, "internal", f"internal error: {exc!r}"))
        finally:
            for thread in threads:
                thread.join(timeout=0 if remaining else None)

    def _worker(self, scheduler: HostScheduler, results: queue.Queue) -> None:
        while (job := scheduler.next()) is not None:
            try:
                self._one(job, scheduler, results)
            except Exception as exc:  # noqa: BLE001 - a bug must cost one row, never the part
                traceback.print_exc()
                scheduler.finish(job)
                results.put((job.row, Fetched(STATUS_FAILED_DOWNLOAD, "internal", f"internal error: {exc!r}")))

    def _one(self, job: Job, scheduler: HostScheduler, results: queue.Queue) -> None:
        closed = scheduler.closed_as(job.host)
        if closed is not None:  # closed while this row waited
            scheduler.finish(job)
            results.put((job.row, Fetched(*closed)))
            return
        try:
            fetched = self._fetch(job, scheduler)
        except _HostClosed as closed_host:  # the scheduler already released the row
            results.put((job.row, Fetched(STATUS_FAILED_DOWNLOAD, closed_host.kind, closed_host.message)))
            self._drop(closed_host.dropped, scheduler, results)
            return
        except FetchError as error:
            status = error.status or STATUS_FAILED_DOWNLOAD
            if error.kind in TRANSIENT_KINDS and job.attempt < self.settings.retries:
                scheduler.retry(job, 0.0, answered=error.kind.startswith("http_"))
                return
            dropped = scheduler.finish(job, connection_failure=error.connection_failure,
                                       failure_message=error.message)
            results.put((job.row, Fetched(status, error.kind, error.message)))
            self._drop(dropped, scheduler, results)
            return
        if fetched is None:  # put back for a retry
            return
        scheduler.finish(job, answered=True)
        results.put((job.row, fetched))

    def _drop(self, dropped: list[Job], scheduler: HostScheduler, results: queue.Queue) -> None:
        for other in dropped:
            results.put((other.row, Fetched(*scheduler.closed_as(other.host))))

    def _before_hop(self, first_host: str, scheduler: HostScheduler):
        def check(url: str) -> None:
            host = urlsplit(url).hostname or ""
            refusal = self.domains.refusal(host) if self.domains else None
            if refusal is not None:
                raise FetchError("domain_list", refusal, status=STATUS_BLOCKED_DOMAIN)
            if not self.settings.respect_robots_txt:
                return
            rules = self.robots.rules(url, self.client)
            if host_key(url) == first_host:
                delay = rules.crawl_delay(self.token)
                if delay:
                    scheduler.set_min_interval(first_host, delay)
            if not rules.allows(url, self.token):
                raise FetchError("robots_txt", rules.refusal_message(url, self.token), status=STATUS_REFUSED_ROBOTS)
        return check

    def _opted_out(self, headers) -> bool:
        return bool(self.directives) and x_robots_refusal(headers.getlist("X-Robots-Tag"), self.token,
                                                          self.directives)

    def _fetch(self, job: Job, scheduler: HostScheduler) -> Optional[Fetched]:
        """Fetched for a final answer, None when the row was put back for a retry; FetchError for failures."""
        s = self.settings
        response = self.client.get(job.url, before_hop=self._before_hop(job.host, scheduler),
                                   want_body=lambda status, headers: 200 <= status < 300
                                   and not self._opted_out(headers))
        if 200 <= response.status < 300:
            if self._opted_out(response.headers):
                return Fetched(STATUS_OPTED_OUT, "x_robots_tag", X_ROBOTS_MESSAGE + ": "
                               + "; ".join(response.headers.getlist("X-Robots-Tag")))
            return Fetched(body=response.body)
        reason = http.client.responses.get(response.status, "")
        message = f"HTTP Error {response.status}: {reason}".rstrip(": ")  # urllib's wording, as img2dataset shows
        if response.status in THROTTLE_CODES:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is not None and wait > s.retry_after_max:
                # one message for this row and the host's rows left unrequested: which rows were already in flight
                # when the host asked to wait depends on timing, the message must not
                reason = (f"{job.host} answered {response.status} asking to wait {wait:g} s (Retry-After), over the "
                          f"{s.retry_after_max:g} s this download waits; its remaining rows are not requested")
                raise _HostClosed(reason, scheduler.close(job, STATUS_FAILED_DOWNLOAD, "throttled", reason))
            if wait is not None and job.attempt < s.throttle_retries:
                scheduler.retry(job, wait)
                return None
            message += " (no Retry-After)" if wait is None else f" (still after {job.attempt} retries)"
            raise FetchError("throttled", message)
        raise FetchError(f"http_{response.status}", message)


def fetch_settings(options) -> FetchSettings:
    """FetchSettings from the stage's DownloadOptions."""
    from curate.net.http import default_user_agent

    http = HttpSettings(user_agent=options.user_agent or default_user_agent(options.contact),
                        timeout=float(options.timeout), total_timeout=float(options.total_timeout),
                        max_bytes=options.max_bytes, max_redirects=options.max_redirects,
                        allow_private_network=options.allow_private_network,
                        connections_per_host=options.per_host_concurrency)
    return FetchSettings(http=http, threads=options.threads, per_host_concurrency=options.per_host_concurrency,
                         per_host_rps=options.per_host_rps, host_failure_limit=options.host_failure_limit,
                         retries=options.retries, throttle_retries=options.throttle_retries,
                         retry_after_max=options.retry_after_max, respect_robots_txt=options.respect_robots_txt,
                         allowed_domains=tuple(options.allowed_domains), blocked_domains=tuple(options.blocked_domains),
                         disallowed_header_directives=tuple(options.disallowed_header_directives))
