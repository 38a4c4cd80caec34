"""Which pair URLs the download stage may hand to img2dataset at all.

A URL list is untrusted input: a crawled page can point an image at 127.0.0.1, a router's admin page or a cloud
metadata address. Such rows are refused *before* img2dataset sees them, and so are URLs that are not http(s) with a
host. Every refused row keeps its place in the output with a status and a message.

`is_private_host` follows the interface of curate/netguard.py (being written in parallel); it lives here until that
module lands, then this file should import it from there.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Callable, Optional
from urllib.parse import urlsplit

from curate.schemas import STATUS_INVALID_URL, STATUS_PRIVATE_NETWORK

ALLOWED_SCHEMES = ("http", "https")


def _host_of(url_or_host: str) -> str:
    if "://" in url_or_host:
        return urlsplit(url_or_host).hostname or ""
    return url_or_host.strip("[]")


def _is_private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id ("fe80::1%eth0")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def is_private_host(url_or_host: str) -> bool:
    """True when the host (or any address it resolves to) is private, loopback, link-local, multicast, reserved or
    unspecified. A host that does not resolve is not private: its download simply fails."""
    host = _host_of(url_or_host)
    if not host:
        return False
    try:
        return _is_private_address(host)
    except ValueError:
        pass  # a name, not a literal address
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return False
    # any private answer counts: a name that resolves both ways could be served from the private one
    return any(_is_private_address(info[4][0]) for info in infos)


def invalid_url_reason(url: Optional[str]) -> Optional[str]:
    """Why img2dataset must not be given this URL, or None when it is a well-formed http(s) URL with a host."""
    if url is None or not url.strip():
        return "empty url"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError as exc:
        return f"malformed url: {exc}"
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        return f"unsupported scheme {parts.scheme!r} (only http and https are downloaded)" if parts.scheme else "url has no scheme"
    if not parts.hostname:
        return "url has no host"
    return None


class UrlGuard:
    """Classifies URLs as fetchable or refused; host lookups are cached, since a list repeats a few hosts often."""

    def __init__(self, allow_private_network: bool, is_private: Callable[[str], bool] = is_private_host):
        self.allow_private_network = allow_private_network
        self._is_private = is_private
        self._private_by_host: dict[str, bool] = {}

    def host_is_private(self, host: str) -> bool:
        if host not in self._private_by_host:
            self._private_by_host[host] = self._is_private(host)
        return self._private_by_host[host]

    def refusal(self, url: Optional[str]) -> Optional[tuple[str, str]]:
        """(status, message) for a URL that must not be fetched, else None."""
        reason = invalid_url_reason(url)
        if reason is not None:
            return STATUS_INVALID_URL, reason
        if self.allow_private_network:
            return None
        host = urlsplit(url.strip()).hostname
        if self.host_is_private(host):
            return (
                STATUS_PRIVATE_NETWORK,
                f"host {host} resolves to a private/loopback/link-local address; "
                "pass --allow-private-network to download from it",
            )
        return None
