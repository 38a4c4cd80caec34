"""Refuse requests to private networks: a crawl or a URL list must not make fairsift probe the machine's own LAN.

Shared by crawl and download. A host is refused when ANY address it resolves to is not a public unicast address
(private, loopback, link-local, multicast, reserved, unspecified, shared/CGNAT, ...), IPv4 and IPv6 alike, including
IPv4 addresses hidden inside IPv6 (::ffff:127.0.0.1, 6to4, Teredo).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class PrivateNetworkError(ConnectionError):
    """A request would go to a private, loopback or otherwise non-public address."""

    def __init__(self, url_or_host: str):
        self.target = url_or_host
        super().__init__(
            f"refused {url_or_host!r}: it resolves to a private/loopback address "
            "(pass --allow-private-network to allow it)"
        )


def host_of(url_or_host: str) -> str:
    """The bare host name or IP literal of a URL, 'host', 'host:port' or '[v6]:port'."""
    text = url_or_host.strip()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if parse_ip(bare) is not None:  # a bare IPv6 literal would otherwise read as host:port
        return bare
    if "://" not in text:
        text = "//" + text  # let urlsplit take brackets and ports apart
    try:
        return urlsplit(text).hostname or ""
    except ValueError:  # e.g. an unbalanced '[' in the netloc
        return ""


def parse_ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # an IPv6 zone id ("fe80::1%eth0") is not part of it
    except ValueError:
        return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_private_address(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_ipv4(ip)
        if inner is not None and is_private_address(inner):
            return True
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global  # also covers 100.64.0.0/10 and other special-purpose blocks
    )


def resolve(host: str) -> list[IPAddress]:
    """Every address the host resolves to (an IP literal resolves to itself); [] when it does not resolve."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return []
    return [ip for ip in (parse_ip(str(info[4][0])) for info in infos) if ip is not None]


def is_private_host(url_or_host: str) -> bool:
    """True when the URL's host (or the host itself) resolves to any non-public address.

    A host that does not resolve is not private: the request itself will fail with a clear network error.
    An empty host cannot be checked and counts as private.
    """
    host = host_of(url_or_host)
    if not host:
        return True
    return any(is_private_address(ip) for ip in resolve(host))


def ensure_public(url_or_host: str) -> None:
    """Raise PrivateNetworkError when `is_private_host` refuses the target."""
    if is_private_host(url_or_host):
        raise PrivateNetworkError(url_or_host)
