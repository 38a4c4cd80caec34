"""Domain allow and block lists: a listed domain covers itself and every subdomain ("example.org" covers
"cdn.example.org"). Names are compared in their IDNA (punycode) form, so "bücher.de" and "xn--bcher-kva.de" match."""

from __future__ import annotations

from typing import Iterable, Optional


def normalise_domain(name: str) -> str:
    name = name.strip().lower().rstrip(".")
    if name.startswith("*."):
        name = name[2:]
    name = name.lstrip(".")
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        return name


def _covers(domains: frozenset[str], host: str) -> Optional[str]:
    labels = host.split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        if candidate in domains:
            return candidate
    return None


class DomainRules:
    def __init__(self, allowed: Iterable[str] = (), blocked: Iterable[str] = ()):
        self.allowed = frozenset(d for d in map(normalise_domain, allowed) if d)
        self.blocked = frozenset(d for d in map(normalise_domain, blocked) if d)

    def __bool__(self) -> bool:
        return bool(self.allowed or self.blocked)

    def refusal(self, host: str) -> Optional[str]:
        """Why a host may not be fetched, or None."""
        name = normalise_domain(host)
        hit = _covers(self.blocked, name)
        if hit is not None:
            return f"host {host} is under blocked domain {hit}"
        if self.allowed and _covers(self.allowed, name) is None:
            return f"host {host} is not under an allowed domain"
        return None
