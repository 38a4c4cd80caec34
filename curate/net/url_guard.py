"""Which pair URLs the download stage may hand to img2dataset at all.

A URL list is untrusted input: a crawled page can point an image at 127.0.0.1, a router's admin page or a cloud
metadata address. Such rows are refused *before* img2dataset sees them, and so are URLs that are not http(s) with a
host. Every refused row keeps its place in the output with a status and a message.

Whether a host is private is curate/netguard.py's decision (shared with the crawler); this module adds the cache.
"""

from __future__ import annotations

from typing import Callable, Optional
from urllib.parse import urlsplit

from curate.net.netguard import is_private_host
from curate.schemas import STATUS_INVALID_URL, STATUS_PRIVATE_NETWORK

ALLOWED_SCHEMES = ("http", "https")


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
        if not parts.scheme:
            return "url has no scheme"
        return f"unsupported scheme {parts.scheme!r} (only http and https are downloaded)"
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
