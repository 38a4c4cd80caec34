"""The shape of a malformed-input case, shared by the generator and the harness.

A case is a few files (built lazily: some are 10 MB) plus what must come of them through a public interface:
- interface "crawl": `fairsift crawl SOURCES --run RUN`; "ingest": `fairsift ingest LIST --run RUN` (with the
  case's flags); "config": `pipelines.config.load_config(FILE)`, the loader of `fairsift run`, and the CLI for a
  config it refuses.
- outcome "ok" (the stage finishes) or "error" (a clear error, exit code 2, whose message holds every string of
  `error_contains`, e.g. the file or field name). Anything else is a crash.
- pairs: the exact (url, caption) pairs in order, or None when only `pairs_include` (a subset, in order) is known.
- counters: exact values of named counters of the stage summary ("warc_bad_record_reasons.junk" names a key of a
  nested count); counters_min: lower bounds. Each such counter must also be printed in the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

Files = dict[str, bytes]


@dataclass
class Expect:
    outcome: str = "ok"
    pairs: Optional[list[tuple[str, str]]] = None
    pairs_include: list[tuple[str, str]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    counters_min: dict[str, int] = field(default_factory=dict)
    error_contains: list[str] = field(default_factory=list)
    caption_truncated: Optional[bool] = None  # of every pair, when set

    def to_json(self) -> dict:
        return {"outcome": self.outcome, "pairs": self.pairs, "pairs_include": self.pairs_include,
                "counters": self.counters, "counters_min": self.counters_min, "error_contains": self.error_contains,
                "caption_truncated": self.caption_truncated}

    @classmethod
    def from_json(cls, data: dict) -> "Expect":
        pairs = data.get("pairs")
        return cls(outcome=data["outcome"], pairs=[tuple(p) for p in pairs] if pairs is not None else None,
                   pairs_include=[tuple(p) for p in data.get("pairs_include", [])],
                   counters=data.get("counters", {}), counters_min=data.get("counters_min", {}),
                   error_contains=data.get("error_contains", []), caption_truncated=data.get("caption_truncated"))


@dataclass
class Case:
    category: str  # "html", "warc", "list", "caption", "config"
    name: str  # unique within the corpus; also the folder name
    interface: str  # "crawl", "ingest" or "config"
    build: Callable[[], Files]  # relative path -> bytes
    expect: Expect
    sources: list[str] = field(default_factory=list)  # crawl: relative paths given as sources (default: every file)
    flags: list[str] = field(default_factory=list)  # extra CLI flags (ingest: --url-col, --caption-col)

    @property
    def key(self) -> str:
        return f"{self.category}/{self.name}"
