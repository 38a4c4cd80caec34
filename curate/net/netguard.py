"""The one network-safety rule of fairsift: crawl and download never reach a non-public address unless told to.

A crawled page or a URL list is untrusted input: an image URL can point at 127.0.0.1, a router's admin page, the cloud
metadata service (169.254.169.254) or a name whose DNS answer is any of them. By default every connection fairsift
makes is refused when its address is not public unicast: private (RFC 1918, IPv6 ULA), loopback, link-local,
CGNAT/shared (100.64/10), 0.0.0.0/8, multicast, reserved, documentation ranges, and IPv4 addresses carried inside IPv6
(IPv4-mapped ::ffff:a.b.c.d, 6to4, Teredo, NAT64 64:ff9b::/96).

Where the check happens, and why it cannot be dodged:
- `guarded_connect` resolves the host (`lookup`: cached, hedged against dropped DNS queries), refuses when ANY address is not public, and connects to exactly the address it
  checked (the socket's peer is verified too). There is no second DNS lookup between check and connect, so DNS
  rebinding cannot slip a private address in. Every spelling of an address - "2130706433", "0x7f.1", "0177.0.0.1",
  "127.1", "0", "[::ffff:7f00:1]", "localhost." - comes out of the resolver as the address it means, so it is judged by
  that address. curate.net.http uses it for every connection (every hop of every redirect, robots.txt included).
- Behind an HTTP proxy the proxy connects, not us; `check_proxied_target` then refuses a target whose IP literal (in any
  spelling) or DNS answer here is non-public, before each hop is handed to the proxy. A name that does not resolve
  here is left to the proxy (it may know names we do not); re-resolution by the proxy is the proxy's own business.

`allow_private_network=True` (`--allow-private-network`, config `allow_private_network: true`) lifts the rule.
"""

from __future__ import annotations

import ipaddress
import queue
import re
import socket
import threading
import time
from typing import Optional
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

ALLOW_HINT = "pass --allow-private-network to allow it"
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_LEGACY_IPV4 = re.compile(r"[0-9a-fA-FxX.]+")  # what inet_aton may read as an address: 2130706433, 0x7f.1, 0177.0.0.1


class PrivateNetworkError(ConnectionError):
    """A request would reach a private, loopback or otherwise non-public address."""

    def __init__(self, target: str, address: Optional[str] = None):
        self.target = target
        self.address = address
        where = f"{target!r}" if address is None or address == target else f"{target!r} ({address})"
        super().__init__(f"refused {where}: not a public address; {ALLOW_HINT}")


def host_of(url_or_host: str) -> str:
    """The bare host name or IP literal of a URL, 'host', 'host:port' or '[v6]:port' (lower case, no brackets)."""
    text = url_or_host.strip()
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if parse_ip(bare) is not None and ":" in bare:  # a bare IPv6 literal would otherwise read as host:port
        return bare.lower()
    if "://" not in text:
        text = "//" + text  # let urlsplit take brackets and ports apart
    try:
        return (urlsplit(text).hostname or "").lower()
    except ValueError:  # e.g. an unbalanced '[' in the netloc
        return ""


def parse_ip(text: str) -> Optional[IPAddress]:
    """The address an IP literal means, in every spelling a resolver accepts: standard IPv4/IPv6 (zone ids dropped)
    and the legacy IPv4 forms inet_aton reads (one number, hex, octal, fewer than four parts); None for a name."""
    text = text.strip().strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if _LEGACY_IPV4.fullmatch(text) and any(c.isdigit() for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> Optional[ipaddress.IPv4Address]:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_private_address(ip: IPAddress) -> bool:
    """True unless ip is a public unicast address (and so is any IPv4 address it carries)."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return True
        if ip.ipv4_mapped is not None or ip in _NAT64:  # reaches exactly the IPv4 address it carries
            return is_private_address(_embedded_ipv4(ip))
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
        or not ip.is_global  # also covers 100.64.0.0/10 (CGNAT) and the other special-purpose blocks
    )


def getaddrinfo(host: str, port: int) -> list[tuple]:
    """The resolver every check and connect goes through (tests replace it to play DNS)."""
    return socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)


DNS_TTL = 300.0  # seconds an answer is reused by connects in this process
DNS_NEGATIVE_TTL = 60.0  # ... and a failed lookup (EAI_AGAIN, a temporary failure: DNS_TEMPORARY_TTL)
DNS_TEMPORARY_TTL = 5.0
DNS_HEDGE_AFTER = 1.0  # seconds before the same lookup is asked again, in parallel
DNS_MAX_PARALLEL = 3
_dns_lock = threading.Lock()
_dns_cache: dict[tuple[str, int], tuple[float, object]] = {}
_dns_inflight: dict[tuple[str, int], threading.Event] = {}


def clear_dns_cache() -> None:
    with _dns_lock:
        _dns_cache.clear()


def _hedged(host: str, port: int) -> list[tuple]:
    """getaddrinfo, asked again in parallel when no answer came within DNS_HEDGE_AFTER seconds: glibc waits 5 s
    (resolv.conf's timeout) before repeating a query a resolver dropped, and a lossy resolver drops many. The first
    answer wins, an NXDOMAIN included; the slower lookups finish in the background."""
    answers: queue.Queue = queue.Queue()

    def ask() -> None:
        try:
            answers.put((True, getaddrinfo(host, port)))
        except (OSError, UnicodeError) as exc:
            answers.put((False, exc))

    for attempt in range(DNS_MAX_PARALLEL):
        threading.Thread(target=ask, name="fairsift-dns", daemon=True).start()
        try:
            ok, value = answers.get(timeout=DNS_HEDGE_AFTER if attempt + 1 < DNS_MAX_PARALLEL else None)
        except queue.Empty:
            continue
        if ok:
            return value
        raise value
    raise AssertionError("unreachable")


def lookup(host: str, port: int) -> list[tuple]:
    """getaddrinfo for connects: cached per process (answers and failures), one lookup per name at a time, hedged
    against dropped queries. Raises socket.gaierror when the name does not resolve."""
    key = (host.lower(), port)
    while True:
        with _dns_lock:
            entry = _dns_cache.get(key)
            if entry is not None and entry[0] > time.monotonic():
                if isinstance(entry[1], BaseException):
                    raise entry[1]
                return entry[1]  # type: ignore[return-value]
            waiting = _dns_inflight.get(key)
            if waiting is None:
                _dns_inflight[key] = threading.Event()
                break
        waiting.wait()
    try:
        infos: object = _hedged(host, port)
        ttl = DNS_TTL
    except (OSError, UnicodeError) as exc:
        infos = exc
        temporary = isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_AGAIN
        ttl = DNS_TEMPORARY_TTL if temporary else DNS_NEGATIVE_TTL
    with _dns_lock:
        _dns_cache[key] = (time.monotonic() + ttl, infos)
        _dns_inflight.pop(key).set()
    if isinstance(infos, BaseException):
        raise infos
    return infos  # type: ignore[return-value]


def resolve(host: str) -> list[IPAddress]:
    """Every address a host resolves to (an IP literal, in any spelling, resolves to itself); [] when it does not."""
    literal = parse_ip(host)
    if literal is not None:
        return [literal]
    try:
        infos = getaddrinfo(host, 0)
    except (OSError, UnicodeError):
        return []
    return [ip for ip in (parse_ip(str(info[4][0])) for info in infos) if ip is not None]


def is_private_host(url_or_host: str) -> bool:
    """True when the URL's host (or the host itself) is, or resolves to, any non-public address.

    A host that does not resolve is not private: the request fails on its own with a DNS error. An empty host
    cannot be checked and counts as private.
    """
    host = host_of(url_or_host)
    if not host:
        return True
    return any(is_private_address(ip) for ip in resolve(host))


def ensure_public(url_or_host: str) -> None:
    """Raise PrivateNetworkError when `is_private_host` refuses the target."""
    if is_private_host(url_or_host):
        raise PrivateNetworkError(url_or_host)


def check_proxied_target(url: str) -> None:
    """For a request handed to an HTTP proxy: refuse a target that is, or resolves here to, a non-public address."""
    host = host_of(url)
    if not host:
        raise PrivateNetworkError(url)
    for ip in resolve(host):
        if is_private_address(ip):
            raise PrivateNetworkError(host, str(ip))


def guarded_connect(host: str, port: int, timeout: Optional[float], *, allow_private: bool,
                    source_address=None, socket_options=None) -> socket.socket:
    """socket.create_connection that checks the addresses it connects to. Resolves `host` once; unless
    allow_private, raises PrivateNetworkError before any connection when any of its addresses is not public; then
    connects to the checked addresses in turn. OSErrors (refused, unreachable, timeouts) propagate as usual."""
    infos = lookup(host, port)  # socket.gaierror propagates: a DNS failure
    if not allow_private:
        for info in infos:
            ip = parse_ip(str(info[4][0]))
            if ip is None or is_private_address(ip):
                raise PrivateNetworkError(host, str(info[4][0]))
    error: Optional[OSError] = None
    for family, socktype, proto, _, sockaddr in infos:
        sock = None
        try:
            sock = socket.socket(family, socktype, proto)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is not None:
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            peer = parse_ip(str(sock.getpeername()[0]))
            if not allow_private and (peer is None or is_private_address(peer)):  # the kernel's word, not DNS's
                sock.close()
                raise PrivateNetworkError(host, str(peer))
            return sock
        except PrivateNetworkError:
            raise
        except OSError as exc:
            error = exc
            if sock is not None:
                sock.close()
    raise error if error is not None else OSError(f"getaddrinfo returned no address for {host}")
