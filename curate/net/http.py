"""The HTTP client of crawl and download: urllib3 connection pools whose every connection goes through
curate.net.netguard, redirects followed one checked hop at a time, and hard limits on what a server can make us do.

- Every hop (the URL, each redirect target) is checked before it is requested: netguard at connect time (or, behind
  an HTTP proxy from the environment, `check_proxied_target`), plus the caller's `before_hop` (robots.txt, domain
  lists). Redirects to non-http(s) URLs, loops and chains over `max_redirects` end the request with a clear error.
- A body is read up to `max_bytes` after decoding, so an endless body or a gzip bomb stops there (urllib3 >= 2.6
  decompresses at most what is asked per read); a declared Content-Length over the limit is refused unread.
- `timeout` bounds the connect and each read; `total_timeout` bounds a whole hop (curate.net.deadline), so a server
  trickling bytes, headers included, is cut off.
- Failures raise FetchError with a `kind` (dns, refused, timeout, too_large, redirect_loop, ...) and a message that
  names the host and the cause without object addresses or timings, so two runs give identical messages.

Connections are kept alive and pooled per host (img2dataset's urllib opens one per image).
"""

from __future__ import annotations

import email.utils
import errno
import http.client
import re
import socket
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Optional
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from curate.net import deadline
from curate.net.netguard import PrivateNetworkError, check_proxied_target, guarded_connect

CONTACT_URL = "https://github.com/fairsift/fairsift"
REDIRECT_CODES = (301, 302, 303, 307, 308)
DRAIN_LIMIT = 64 << 10  # bytes of a redirect or error body read to keep the connection; larger ones close it
CHUNK = 64 << 10
CONNECTION_KINDS = frozenset({"dns", "refused", "connect_timeout", "unreachable"})


def default_user_agent(contact: str = CONTACT_URL) -> str:
    from importlib import metadata

    try:
        version = metadata.version("fairsift")
    except metadata.PackageNotFoundError:
        version = "0"
    return f"fairsift/{version} (+{contact})"


def user_agent_token(user_agent: str) -> str:
    """The product token robots.txt groups and X-Robots-Tag prefixes are matched against ('fairsift')."""
    token = re.match(r"[A-Za-z0-9_-]+", user_agent.strip())
    return token.group(0).lower() if token else user_agent.strip().lower()


@dataclass(frozen=True)
class HttpSettings:
    user_agent: str = field(default_factory=default_user_agent)
    timeout: float = 10.0
    total_timeout: float = 30.0
    max_bytes: int = 32 << 20
    max_redirects: int = 10
    allow_private_network: bool = False
    connections_per_host: int = 8
    accept: str = "image/avif,image/webp,image/*,*/*;q=0.8"


class FetchError(Exception):
    """A request that gave no usable answer. `status` is the shards status it stands for (None: the caller's
    default, failed_to_download); `connection_failure` marks the host-level failures a circuit breaker counts."""

    def __init__(self, kind: str, message: str, *, status: Optional[str] = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status

    @property
    def connection_failure(self) -> bool:
        return self.kind in CONNECTION_KINDS


@dataclass
class Response:
    url: str  # after redirects
    status: int
    headers: urllib3.HTTPHeaderDict
    body: bytes  # empty when the caller did not want this status's body
    redirects: tuple[str, ...] = ()


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _connection_classes(allow_private: bool):
    """Connection and pool classes whose connections are made by netguard.guarded_connect and register with the
    running request's deadline. A ProxyManager's connections all go to the proxy: allow_private=True for those."""

    def new_conn(self) -> socket.socket:
        try:
            sock = guarded_connect(self._dns_host, self.port, self.timeout, allow_private=allow_private,
                                   source_address=self.source_address, socket_options=self.socket_options)
        except PrivateNetworkError:
            raise
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except socket.timeout as exc:
            raise ConnectTimeoutError(self, f"connecting to {self.host} timed out") from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        return sock

    def watched(base):
        def connect(self):
            base.connect(self)
            _register(self)

        def request(self, *args, **kwargs):
            _register(self)
            return base.request(self, *args, **kwargs)

        return type("Guarded" + base.__name__, (base,), {"_new_conn": new_conn, "connect": connect,
                                                         "request": request})

    http_conn, https_conn = watched(HTTPConnection), watched(HTTPSConnection)
    return {
        "http": type("GuardedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
        "https": type("GuardedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
    }


def _register(connection) -> None:
    limit = deadline.current()
    if limit is not None:
        limit.add(connection)


class HttpClient:
    """GET with checked hops and hard limits (module docstring). Thread-safe; one per part or crawl."""

    def __init__(self, settings: HttpSettings):
        self.settings = settings
        pool_kw = dict(num_pools=512, maxsize=max(1, settings.connections_per_host), block=False)
        self._direct = urllib3.PoolManager(**pool_kw)
        self._direct.pool_classes_by_scheme = _connection_classes(settings.allow_private_network)
        self._proxies = {scheme: url for scheme, url in urllib.request.getproxies().items()
                         if scheme in ("http", "https") and url}
        self._proxy_managers: dict[str, urllib3.ProxyManager] = {}
        for url in set(self._proxies.values()):
            manager = urllib3.ProxyManager(url, **pool_kw)
            manager.pool_classes_by_scheme = _connection_classes(allow_private=True)  # they connect to the proxy
            self._proxy_managers[url] = manager

    def close(self) -> None:
        self._direct.clear()
        for manager in self._proxy_managers.values():
            manager.clear()

    def _manager(self, url: str) -> tuple[urllib3.PoolManager, bool]:
        parts = urlsplit(url)
        proxy = self._proxies.get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
            return self._proxy_managers[proxy], True
        return self._direct, False

    def get(self, url: str, *, max_bytes: Optional[int] = None,
            want_body: Optional[Callable[[int, urllib3.HTTPHeaderDict], bool]] = None,
            before_hop: Optional[Callable[[str], None]] = None, accept: Optional[str] = None,
            truncate: bool = False) -> Response:
        """Follow redirects to a final answer. Non-redirect answers of any status come back as a Response (with a body
        only where want_body(status, headers), by default 2xx); network failures and refused hops raise FetchError.
        A body over max_bytes raises FetchError("too_large"), or with truncate=True comes back cut at max_bytes."""
        settings = self.settings
        max_bytes = settings.max_bytes if max_bytes is None else max_bytes
        want_body = want_body or (lambda status, headers: 200 <= status < 300)
        headers = {"User-Agent": settings.user_agent, "Accept": accept or settings.accept,
                   "Accept-Encoding": "gzip, deflate"}
        chain = [url]
        current = url
        for _ in range(settings.max_redirects + 1):
            if before_hop is not None:
                before_hop(current)
            response = self._hop(current, headers, max_bytes, want_body, truncate)
            if isinstance(response, Response):
                response.redirects = tuple(chain[1:])
                return response
            target = urljoin(current, response)
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise FetchError("bad_redirect", f"{current} redirects to a non-http URL: {_short(target)}")
            if target in chain:
                raise FetchError("redirect_loop", "redirect loop: " + " -> ".join(_short(u) for u in chain + [target]))
            chain.append(target)
            current = target
        raise FetchError("too_many_redirects",
                         f"more than {settings.max_redirects} redirects from {_short(url)} (last: {_short(current)})")

    def _hop(self, url: str, headers: dict, max_bytes: int, want_body: Callable, truncate: bool) -> Response | str:
        """One request: a Response, or the Location of a redirect."""
        settings = self.settings
        manager, proxied = self._manager(url)
        attempts = 2  # one more try when a server drops the connection before any answer (a stale pooled one)
        for attempt in range(attempts):
            with deadline.limit(settings.total_timeout) as limit:
                try:
                    if proxied and not settings.allow_private_network:
                        check_proxied_target(url)
                    response = manager.urlopen(
                        "GET", url, headers=headers, redirect=False, retries=False, preload_content=False,
                        decode_content=True, assert_same_host=False,
                        timeout=urllib3.Timeout(connect=settings.timeout, read=settings.timeout))
                    try:
                        location = response.headers.get("Location")
                        if response.status in REDIRECT_CODES and location:
                            _discard(response)
                            return location
                        if not want_body(response.status, response.headers):
                            _discard(response)
                            return Response(url, response.status, response.headers, b"")
                        body = _read_limited(response, max_bytes, url, truncate)
                        return Response(url, response.status, response.headers, body)
                    except BaseException:
                        _discard(response, drain=False)
                        raise
                except FetchError:
                    raise
                except Exception as exc:  # noqa: BLE001 - every failure becomes a FetchError with a kind
                    if limit.expired:
                        raise FetchError("total_timeout", f"{_short(url)}: no complete answer within "
                                         f"{settings.total_timeout:g} s (slow or endless response)") from exc
                    error = classify(exc, url, settings.timeout)
                    if error.kind == "protocol" and attempt + 1 < attempts:
                        continue
                    raise error from exc
        raise AssertionError("unreachable")


def _discard(response, drain: bool = True) -> None:
    """Give the connection back: drained when the rest is small, else closed (an endless error body stays unread)."""
    try:
        length = response.headers.get("Content-Length")
        if drain and length is not None and length.isdigit() and int(length) <= DRAIN_LIMIT:
            response.drain_conn()
        else:
            response.close()
        response.release_conn()
    except Exception:  # noqa: BLE001 - a broken connection is dropped by the pool anyway
        pass


def _read_limited(response, max_bytes: int, url: str, truncate: bool = False) -> bytes:
    length = response.headers.get("Content-Length")
    encoded = response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes and not encoded and not truncate:
        raise FetchError("too_large", f"{_short(url)}: Content-Length {int(length)} is over the {max_bytes}-byte limit")
    chunks, total = [], 0
    while True:
        chunk = response.read(CHUNK)
        if not chunk:
            break
        total += len(chunk)
        if total > max_bytes and truncate:
            chunks.append(chunk[: len(chunk) - (total - max_bytes)])
            _discard(response, drain=False)
            return b"".join(chunks)
        if total > max_bytes:
            what = "decoded body" if encoded else "body"
            raise FetchError("too_large", f"{_short(url)}: {what} over the {max_bytes}-byte limit "
                             "(endless body or compression bomb)")
        chunks.append(chunk)
    response.release_conn()
    return b"".join(chunks)


def _causes(exc: BaseException, depth: int = 0):
    yield exc
    if depth > 6:
        return
    nested = [getattr(exc, "reason", None), exc.__cause__, exc.__context__]
    nested += [a for a in getattr(exc, "args", ()) if isinstance(a, BaseException)]
    for inner in nested:
        if isinstance(inner, BaseException) and inner is not exc:
            yield from _causes(inner, depth + 1)


def classify(exc: BaseException, url: str, timeout: float) -> FetchError:
    """A FetchError with a kind and a deterministic message for whatever urllib3 or the socket raised."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        port = "?"
    causes = list(_causes(exc))

    def find(*types):
        return next((c for c in causes if isinstance(c, types)), None)

    if (private := find(PrivateNetworkError)) is not None:
        return FetchError("private_address", str(private), status="blocked_private_network")
    if (dns := find(socket.gaierror)) is not None or find(NameResolutionError) is not None:
        reason = dns.strerror if dns is not None and dns.strerror else "no address"
        return FetchError("dns", f"DNS lookup of {host} failed: {reason}")
    if find(ConnectionRefusedError) is not None:
        return FetchError("refused", f"connection to {host}:{port} refused")
    unreachable = next((c for c in causes if isinstance(c, OSError) and c.errno in
                        (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)), None)
    if unreachable is not None:
        return FetchError("unreachable", f"{host}:{port} unreachable: {unreachable.strerror}")
    if find(ConnectTimeoutError) is not None and find(ReadTimeoutError) is None:
        return FetchError("connect_timeout", f"connecting to {host}:{port} timed out after {timeout:g} s")
    if find(ReadTimeoutError, socket.timeout) is not None:
        return FetchError("timeout", f"{_short(url)}: read timed out ({timeout:g} s without data)")
    if (incomplete := find(http.client.IncompleteRead)) is not None:
        got = len(incomplete.partial) if isinstance(incomplete.partial, (bytes, bytearray)) else incomplete.partial
        return FetchError("incomplete", f"{_short(url)}: connection closed after {got} of "
                          f"{incomplete.expected if incomplete.expected is not None else '?'} more bytes "
                          "(wrong Content-Length or cut short)")
    if find(Urllib3SSLError, ssl.SSLError) is not None:
        inner = find(ssl.SSLError) or find(Urllib3SSLError)
        return FetchError("tls", f"TLS with {host}:{port} failed: {_clean(inner)}")
    if find(DecodeError) is not None:
        return FetchError("bad_encoding", f"{_short(url)}: body does not decode as its Content-Encoding says")
    if find(ProxyError) is not None:
        return FetchError("proxy", f"the HTTP proxy failed for {_short(url)}: {_clean(causes[-1])}")
    if (broken := find(http.client.HTTPException, ConnectionResetError, BrokenPipeError)) is not None:
        return FetchError("protocol", f"{_short(url)}: the server broke the HTTP exchange "
                          f"({type(broken).__name__}: {_clean(broken)})")
    if find(LocationValueError, UnicodeError) is not None:
        return FetchError("invalid_url", f"malformed url {_short(url)}: {_clean(exc)}", status="invalid_url")
    return FetchError("network", f"{_short(url)}: {type(causes[-1]).__name__}: {_clean(causes[-1])}")


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>|0x[0-9a-fA-F]{6,}")


def _clean(exc: BaseException) -> str:
    return _OBJECT_REPR.sub("<...>", str(exc)).strip() or type(exc).__name__


def _short(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[: limit - 3] + "..."
