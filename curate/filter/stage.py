"""The filter stage: decide for every downloaded pair which steps it passes, and write RUN/decisions.parquet.

Filters write decisions, never deletions. decisions has one row per shards row (failed downloads included, so the
funnel starts from all pairs): `pass_download` first, then one `pass_<step>` per configured step in order, each
evaluated on ALL rows on its own; `kept` is their AND; `dropped_by` is the first failing step; `reason` says why
that step failed it, with the value and the threshold. Helper columns (clip_score, language, ...) follow.

A config lists steps in order, each written as a bare name, a one-key mapping or a mapping with `name:`:

    steps:
      - dedup
      - basic                      # DataComp basic: fastText en, > 2 words, > 5 chars, original min side >= 200, aspect <= 3
      - clip_top_fraction: {fraction: 0.3, group_parity: {attribute: gender_terms, min_ratio: 0.9}}
      - name: nsfw_caption
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional, Union

import numpy as np
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate import tables
from curate.filter.context import FilterContext
from curate.filter.steps import (
    STEP_NAMES, AspectRatioStep, BasicStep, CaptionCharsStep, CaptionWordsStep, ClipThresholdStep,
    ClipTopFractionStep, DedupStep, ImageSizeStep, LanguageStep, NsfwCaptionStep, StepResult,
)
from curate.schemas import STATUS_SUCCESS

StepConfig = Annotated[
    Union[DedupStep, ClipThresholdStep, ClipTopFractionStep, LanguageStep, CaptionWordsStep, CaptionCharsStep,
          ImageSizeStep, AspectRatioStep, NsfwCaptionStep, BasicStep],
    Field(discriminator="name"),
]

DOWNLOAD_STEP = "download"

# types of helper columns whose values may all be null in a small run (Arrow would otherwise infer type null)
HELPER_TYPES: dict[str, pa.DataType] = {
    "clip_score": pa.float32(), "dup_of": pa.string(), "dup_kind": pa.string(), "language": pa.string(),
    "language_prob": pa.float32(), "caption_words": pa.int32(), "min_side": pa.float64(),
    "aspect_ratio": pa.float64(),
}


def _default_steps() -> list[Any]:
    return [DedupStep(), BasicStep(), ClipTopFractionStep(fraction=0.3)]


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    steps: list[StepConfig] = Field(default_factory=_default_steps)
    preset: Optional[str] = Field(None, description="a named preset (curate.filter.presets) that gave the steps")

    @model_validator(mode="before")
    @classmethod
    def _expand_preset(cls, data: Any) -> Any:
        from curate.filter.presets import expand_preset

        return expand_preset(data, lambda steps: cls.model_validate({"steps": steps}).model_dump(mode="json")["steps"])

    @field_validator("steps", mode="before")
    @classmethod
    def _spell_steps_uniformly(cls, steps: Any) -> Any:
        return [_normalise_step(s) for s in steps] if isinstance(steps, list) else steps

    @field_validator("steps")
    @classmethod
    def _one_column_per_step(cls, steps: list[Any]) -> list[Any]:
        names = [s.name for s in steps]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"step(s) {twice} listed more than once: each step writes one pass_<step> column")
        return steps

    def required_tables(self) -> list[str]:
        """Tables the steps read ("groups" only when a step uses group_parity): the runner orders stages by it."""
        needed = ["shards"]
        for step in self.steps:
            needed += [t for t in step.needs if t not in needed]
            if isinstance(step, ClipTopFractionStep) and step.group_parity is not None and "groups" not in needed:
                needed.append("groups")
        return needed


def _normalise_step(item: Any) -> Any:
    """`dedup`, `{dedup: {kinds: [...]}}`, `{step: dedup, ...}` and `{name: dedup, ...}` all become the last form."""
    if isinstance(item, str):
        item = {"name": item}
    if isinstance(item, dict):
        if "name" not in item and "step" in item:
            return {"name": item["step"], **{k: v for k, v in item.items() if k != "step"}}
        if len(item) == 1:
            (key, value), = item.items()
            if key in STEP_NAMES and (value is None or isinstance(value, dict)):
                return {"name": key, **(value or {})}
            if "name" not in item:
                raise ValueError(f"unknown filter step {key!r}; steps are: {', '.join(STEP_NAMES)}")
    name = item.get("name") if isinstance(item, dict) else item
    if isinstance(name, str) and name not in STEP_NAMES:
        raise ValueError(f"unknown filter step {name!r}; steps are: {', '.join(STEP_NAMES)}")
    return item


def default_filter_config() -> FilterConfig:
    """dedup, then DataComp's basic filter, then CLIP score top 30%."""
    return FilterConfig()


def _format_errors(path: Path, exc: ValidationError, prefix: str = "") -> str:
    lines = [f"invalid filter config {path}:"]
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        lines.append(f"  {prefix}{where}: {err['msg']}")
    return "\n".join(lines)


def load_filter_config(path: str | Path) -> FilterConfig:
    """A YAML file with top-level `steps:`, or a run config whose `filter:` section has them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"filter config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"filter config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"filter config {path} must be a mapping with `steps:`, got {type(data).__name__}")
    prefix = ""
    if "steps" not in data and "preset" not in data and "filter" in data:
        data, prefix = data["filter"] or {}, "filter."
    elif "steps" not in data and "preset" not in data:
        raise ValueError(f"filter config {path} needs a top-level `steps:` list or `preset:` "
                         "(or a `filter:` section with one)")
    try:
        config = FilterConfig.model_validate(data)
    except ValidationError as exc:
        raise ValueError(_format_errors(path, exc, prefix)) from exc
    for step in config.steps:  # a word list named in the file is relative to the file, not to the shell
        if isinstance(step, NsfwCaptionStep) and step.words_file and not Path(step.words_file).is_absolute():
            step.words_file = str(path.resolve().parent / step.words_file)
    return config



def download_result(ctx: FilterContext) -> StepResult:
    statuses = [s if isinstance(s, str) else "unknown status" for s in ctx.rows["status"].tolist()]
    passed = np.array([s == STATUS_SUCCESS for s in statuses], dtype=bool)
    return StepResult(passed=passed, reasons=[None if ok else s for ok, s in zip(passed, statuses)])


def filter_run(run_dir: str | Path, config: FilterConfig) -> dict:
    run_dir = Path(run_dir)
    for table in config.required_tables():
        if not tables.table_exists(run_dir, table):
            raise tables.MissingTableError(run_dir, table)
    ctx = FilterContext(run_dir)
    results: list[tuple[str, StepResult]] = [(DOWNLOAD_STEP, download_result(ctx))]
    results += [(step.name, step.evaluate(ctx)) for step in config.steps]
    decisions, counts = _combine(ctx, results)
    tables.write_table(run_dir, "decisions", decisions)
    if config.preset is not None:
        from curate.filter.presets import preset_note

        counts["preset"] = preset_note(config.preset, run_dir)
    return counts


def _combine(ctx: FilterContext, results: list[tuple[str, StepResult]]) -> tuple[pa.Table, dict]:
    n = len(ctx)
    kept = np.ones(n, dtype=bool)
    dropped_by: list[str | None] = [None] * n
    reason: list[str | None] = [None] * n
    columns: dict[str, pa.Array] = {"uid": pa.array(ctx.uids.tolist(), pa.string())}
    step_counts: dict[str, dict[str, int]] = {}
    thresholds: dict[str, Any] = {}
    reports: dict[str, Any] = {}
    for name, result in results:
        first_failures = np.flatnonzero(kept & ~result.passed)
        for i in first_failures:
            dropped_by[i] = name
            reason[i] = result.reasons[i]
        kept &= result.passed
        columns[f"pass_{name}"] = pa.array(result.passed, pa.bool_())
        step_counts[name] = {"pass": int(result.passed.sum()), "dropped_first": int(len(first_failures))}
        thresholds.update(result.thresholds)
        reports.update(result.report)
    columns["kept"] = pa.array(kept, pa.bool_())
    columns["dropped_by"] = pa.array(dropped_by, pa.string())
    columns["reason"] = pa.array(reason, pa.string())
    for _, result in results:
        for col, values in result.helpers.items():
            columns.setdefault(col, pa.array(values, HELPER_TYPES.get(col)))
    counts = {"rows": n, "kept": int(kept.sum()), "steps": step_counts, "thresholds": thresholds, **reports}
    return pa.table(columns), counts
