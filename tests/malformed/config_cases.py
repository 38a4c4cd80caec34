"""Config cases for `fairsift run CONFIG`: every field of every section given a wrong type, unknown keys in every
section, sections of the wrong shape, and YAML that is broken, empty, huge, deeply nested or not UTF-8.

A wrong value must give a ConfigError naming the field (section.field), or be a value the field accepts (pydantic
turns "3" into 3): outcome "either". An unknown key must be an error naming it."""

from __future__ import annotations

from collections.abc import Iterator

import yaml

from curate.options import CrawlOptions, DedupOptions, DownloadOptions, ExportOptions, IngestOptions, ScoreOptions
from pipelines.config import AuditSection, ProbeSection, ReportSection
from tests.malformed.corpus import Case, Expect

SECTIONS = {"crawl": CrawlOptions, "ingest": IngestOptions, "download": DownloadOptions, "dedup": DedupOptions,
            "score": ScoreOptions, "export": ExportOptions, "audit": AuditSection, "probe": ProbeSection,
            "report": ReportSection}
WRONG_VALUES = {"text": "not-a-valid-value", "negative": -7, "list": [1, "two"], "mapping": {"nested": 1},
                "null": None}
PAGE = b'<!doctype html><img src="http://cfg.example/a.jpg" alt="A config test image">'


def _base() -> dict:
    return {"name": "malformed", "crawl": {"sources": ["page.html"]}}


def _case(name: str, config: dict | bytes, expect: Expect) -> Case:
    data = config if isinstance(config, bytes) else yaml.safe_dump(config, allow_unicode=True).encode()
    return Case("config", name, "config", lambda: {"config.yaml": data, "page.html": PAGE}, expect,
                sources=["config.yaml"])


def _field_cases() -> Iterator[Case]:
    for section, model in SECTIONS.items():
        for field in model.model_fields:
            for label, value in WRONG_VALUES.items():
                config = _base()
                config.setdefault(section, {})
                if section == "ingest":
                    config[section].setdefault("path", "list.csv")
                config[section][field] = value
                yield _case(f"{section}-{field}-{label}".replace("_", "-"), config,
                            Expect(outcome="either", error_contains=[f"{section}.{field}"]))
        config = _base()
        config[section] = {**config.get(section, {}), "no_such_option": 1}
        yield _case(f"{section}-unknown-key", config,
                    Expect(outcome="error", error_contains=[f"{section}.no_such_option"]))
        for label, value in (("list", [1, 2]), ("scalar", 5), ("text", "yes")):
            config = _base()
            config[section] = value
            yield _case(f"{section}-section-is-a-{label}", config, Expect(outcome="error", error_contains=[section]))


def _top_level_cases() -> Iterator[Case]:
    for field, value in (("name", ["a"]), ("run_dir", {"a": 1}), ("allow_private_network", "maybe"),
                         ("filter", [1, 2]), ("filter", "strict")):
        config = _base()
        config[field] = value
        yield _case(f"top-{field}-{type(value).__name__}".replace("_", "-"), config,
                    Expect(outcome="error", error_contains=[field]))
    config = _base()
    config["no_such_section"] = {}
    yield _case("top-unknown-key", config, Expect(outcome="error", error_contains=["no_such_section"]))
    config = _base()
    config["filter"] = {"steps": [{"no_such_step_kind": 1}]}
    yield _case("filter-unknown-step", config, Expect(outcome="error", error_contains=["filter"]))
    config = _base()
    config["filter"] = {"steps": "clip"}
    yield _case("filter-steps-is-text", config, Expect(outcome="error", error_contains=["filter"]))
    yield _case("no-crawl-or-ingest", {"name": "x"}, Expect(outcome="error", error_contains=["crawl"]))
    yield _case("crawl-null", {"crawl": None}, Expect(outcome="error", error_contains=["crawl"]))
    yield _case("keys-not-strings", b"1: 2\ntrue: 3\ncrawl: {sources: [page.html]}\n", Expect(outcome="error"))


def _yaml_cases() -> Iterator[Case]:
    error = lambda *words: Expect(outcome="error", error_contains=["config.yaml", *words])  # noqa: E731
    yield _case("yaml-empty-file", b"", error())
    yield _case("yaml-only-comments", b"# nothing here\n", error())
    yield _case("yaml-scalar", b"42\n", error())
    yield _case("yaml-list", b"- a\n- b\n", error())
    yield _case("yaml-tabs", b"crawl:\n\tsources: [page.html]\n", error())
    yield _case("yaml-unclosed-bracket", b"crawl: {sources: [page.html\n", error())
    yield _case("yaml-not-utf8", b"name: caf\xe9\ncrawl: {sources: [page.html]}\n", Expect(outcome="either",
                                                                                          error_contains=["config.yaml"]))
    yield _case("yaml-binary", bytes(range(256)) * 4, error())
    yield _case("yaml-nul-bytes", b"name: a\x00b\ncrawl: {sources: [page.html]}\n", error())
    yield _case("yaml-python-tag", b"crawl: !!python/object/apply:os.system ['true']\n", error())
    yield _case("yaml-duplicate-keys", b"crawl: {sources: [page.html]}\ncrawl: {sources: [page.html]}\n",
                Expect(outcome="either"))
    yield _case("yaml-deep-nesting", b"crawl: {sources: " + b"[" * 600 + b"]" * 600 + b"}\n", error())
    laughs = b'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for level in "bcdefg":
        previous = chr(ord(level) - 1)
        laughs += f"{level}: &{level} [*{previous},*{previous},*{previous},*{previous},*{previous},*{previous}]\n".encode()
    yield _case("yaml-alias-bomb", laughs + b"crawl: {sources: *g}\n", error("crawl.sources"))
    yield _case("yaml-huge-string", b"name: " + b"x" * 200_000 + b"\ncrawl: {sources: [page.html]}\n",
                Expect(outcome="either"))
    yield _case("yaml-utf16", "crawl: {sources: [page.html]}\n".encode("utf-16"), Expect(outcome="either",
                                                                                       error_contains=["config.yaml"]))


def cases() -> Iterator[Case]:
    yield from _field_cases()
    yield from _top_level_cases()
    yield from _yaml_cases()
