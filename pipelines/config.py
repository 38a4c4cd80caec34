"""The YAML config of `fairsift run`: one section per stage, each validated by that stage's options model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from curate.options import (
    CrawlOptions, DedupOptions, DownloadOptions, ExportOptions, IngestOptions, ScoreOptions, resolve_path,
)


class AuditSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False
    perceived: bool = False
    min_count: int = Field(30, ge=1)
    n_boot: int = Field(1000, ge=0)
    seed: int = 0


class ProbeSection(BaseModel):
    """Model probes run with the run's scoring model into RUN/probes/ (see `fairsift probe`)."""
    model_config = ConfigDict(extra="forbid")
    datasets: list[str] = Field(default_factory=list, description="KIND:PATH, e.g. fairface:DIR or country:CSV")
    n_boot: int = Field(1000, ge=0)
    n_permutations: int = Field(10_000, ge=1)
    seed: int = 0


class ReportSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool = False


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    name: Optional[str] = None
    run_dir: Optional[str] = None
    allow_private_network: bool = False
    crawl: Optional[CrawlOptions] = None
    ingest: Optional[IngestOptions] = None
    download: DownloadOptions = Field(default_factory=DownloadOptions)
    dedup: DedupOptions = Field(default_factory=DedupOptions)
    score: ScoreOptions = Field(default_factory=ScoreOptions)
    filter: Optional[dict[str, Any]] = None  # validated by curate.filter.stage.FilterConfig
    export: ExportOptions = Field(default_factory=ExportOptions)
    audit: AuditSection = Field(default_factory=AuditSection)
    probe: Optional[ProbeSection] = None
    report: ReportSection = Field(default_factory=ReportSection)

    def model_post_init(self, __context: Any) -> None:
        # the top-level key lifts the private-network guard for every stage that fetches
        if self.allow_private_network:
            self.download.allow_private_network = True
            if self.crawl is not None:
                self.crawl.allow_private_network = True


class ConfigError(ValueError):
    pass


def _format_validation(path: Path, err: ValidationError) -> str:
    lines = [f"invalid config {path}:"]
    for e in err.errors():
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        lines.append(f"  {where}: {e['msg']}")
    return "\n".join(lines)


def _resolve_dataset(spec: str, base: Path) -> str:
    kind, sep, path = spec.partition(":")
    return f"{kind}:{resolve_path(path, base)}" if sep else spec


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_bytes()) or {}  # bytes: PyYAML reads UTF-8/16 and names bad bytes
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path} is not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"config {path} is nested too deeply to be a fairsift config") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections, got {type(data).__name__}")
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(path, exc)) from exc
    base = path.resolve().parent
    if config.crawl:
        config.crawl.sources = [resolve_path(s, base) if not s.startswith(("http://", "https://")) else s
                                for s in config.crawl.sources]
    if config.ingest:
        config.ingest.path = resolve_path(config.ingest.path, base)
    config.dedup.eval_set = resolve_path(config.dedup.eval_set, base)
    config.score.checkpoint = resolve_path(config.score.checkpoint, base)
    if config.probe:
        config.probe.datasets = [_resolve_dataset(d, base) for d in config.probe.datasets]
    if config.crawl is None and config.ingest is None:
        raise ConfigError(f"config {path}: needs a `crawl` section (sources) or an `ingest` section (path)")
    if config.filter is not None:
        from curate.filter.stage import FilterConfig

        try:
            validated = FilterConfig.model_validate(config.filter)
        except ValidationError as exc:
            raise ConfigError(_format_validation(path, exc).replace("  ", "  filter.", 1)) from exc
        # word lists named in the file are relative to the file, as load_filter_config does for --config
        for step in validated.steps:
            if getattr(step, "words_file", None):
                step.words_file = resolve_path(step.words_file, base)
        config.filter = validated.model_dump(mode="json")
    return config
