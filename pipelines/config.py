"""The YAML config of `fairsift run`: one section per stage, each validated by that stage's options model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

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


class EngineSection(BaseModel):
    """Where the stages run: `local` (this machine's cores) or `ray` (a Ray cluster; no address starts a local one)."""
    model_config = ConfigDict(extra="forbid")
    name: Literal["local", "ray"] = "local"
    address: Optional[str] = Field(None, description="Ray cluster address, e.g. auto or HEAD:6379 (ray only)")
    workers: Optional[int] = Field(None, ge=1, description="parallel parts at most (default: every core)")


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
    engine: EngineSection = Field(default_factory=EngineSection)

    def model_post_init(self, __context: Any) -> None:
        # the top-level key lifts the private-network guard for every stage that fetches
        if self.allow_private_network:
            self.download.allow_private_network = True
            if self.crawl is not None:
                self.crawl.allow_private_network = True


class ConfigError(ValueError):
    pass


def _check_model(path: Path, config: RunConfig) -> None:
    """A mistyped model or tag stops the run now, not after the download."""
    from curate.score.model_names import check_model_name

    try:
        check_model_name(config.score.model, config.score.pretrained, config.score.checkpoint)
    except ValueError as exc:
        field = "score.pretrained" if str(exc).startswith("unknown pretrained tag") else "score.model"
        raise ConfigError(f"invalid config {path}:\n  {field}: {exc}") from exc


def _format_validation(path: Path, err: ValidationError, root: type = None, prefix: str = "") -> str:
    """Every problem of the file, one a line; an unknown key gets the closest valid key and the section's keys."""
    from curate.suggest import validation_lines

    return "\n".join([f"invalid config {path}:"] + validation_lines(err, root or RunConfig, prefix))


PATH_FIELD_SUFFIXES = ("_file", "_path", "_dir")  # options of filter steps that name files


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
    # every relative path in the file is relative to the file's folder, wherever the command is run from
    if config.run_dir:
        config.run_dir = resolve_path(config.run_dir, base)
    if config.crawl:
        config.crawl.sources = [resolve_path(s, base) if not s.startswith(("http://", "https://")) else s
                                for s in config.crawl.sources]
    if config.ingest:
        config.ingest.path = resolve_path(config.ingest.path, base)
    config.dedup.eval_set = resolve_path(config.dedup.eval_set, base)
    config.score.checkpoint = resolve_path(config.score.checkpoint, base)
    if config.score.pretrained and (base / config.score.pretrained).is_file():  # open_clip takes a weights file here
        config.score.pretrained = resolve_path(config.score.pretrained, base)
    if config.probe:
        config.probe.datasets = [_resolve_dataset(d, base) for d in config.probe.datasets]
    if config.crawl is None and config.ingest is None:
        raise ConfigError(f"config {path}: needs a `crawl` section (sources) or an `ingest` section (path)")
    if config.filter is not None:
        from curate.filter.stage import FilterConfig

        try:
            validated = FilterConfig.model_validate(config.filter)
        except ValidationError as exc:
            raise ConfigError(_format_validation(path, exc, FilterConfig, "filter.")) from exc
        except ValueError as exc:  # an unknown step name, raised while the steps are read
            raise ConfigError(f"invalid config {path}:\n  filter.steps: {exc}") from exc
        for step in validated.steps:
            for field in type(step).model_fields:
                value = getattr(step, field)
                if field.endswith(PATH_FIELD_SUFFIXES) and isinstance(value, str):
                    setattr(step, field, resolve_path(value, base))
        config.filter = validated.model_dump(mode="json")
    _check_model(path, config)
    return config
