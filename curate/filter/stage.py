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

import json
import os
from pathlib import Path
from typing import Annotated, Any, Optional, Union

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from curate import parts, tables
from curate.layout import DECISION_PARTS_DIR as DECISION_PARTS
from curate.filter.context import FilterContext, language_table, signal_inputs
from curate.filter.reason_codes import with_reason_codes
from curate.filter.steps import (
    STEP_NAMES, AspectRatioStep, BasicStep, CaptionCharsStep, CaptionWordsStep, ClipThresholdStep,
    ClipTopFractionStep, DedupStep, ImageSizeStep, LanguageStep, NsfwCaptionStep, StepResult,
)
from curate.parts import MapParts, PartTask, plan_tasks, remove_stale_outputs, serial_map
from curate.schemas import STATUS_SUCCESS
from curate.suggest import did_you_mean, validation_lines

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
                raise ValueError(f"unknown filter step {key!r}{did_you_mean(key, STEP_NAMES)}; steps are: {', '.join(STEP_NAMES)}")
    name = item.get("name") if isinstance(item, dict) else item
    if isinstance(name, str) and name not in STEP_NAMES:
        raise ValueError(f"unknown filter step {name!r}{did_you_mean(name, STEP_NAMES)}; steps are: {', '.join(STEP_NAMES)}")
    return item


def default_filter_config() -> FilterConfig:
    """dedup, then DataComp's basic filter, then CLIP score top 30%."""
    return FilterConfig()


def _format_errors(path: Path, exc: ValidationError, prefix: str = "") -> str:
    return "\n".join([f"invalid filter config {path}:"] + validation_lines(exc, FilterConfig, prefix))


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


def _needs_language(config: FilterConfig) -> bool:
    return any(isinstance(step, (LanguageStep, BasicStep)) for step in config.steps)


def _stored_detector(config: FilterConfig) -> str:
    """The detector whose verdicts signals/lang stores: the first language-reading step's (others detect per part)."""
    return next(step.detector for step in config.steps if isinstance(step, (LanguageStep, BasicStep)))


def language_part(task: PartTask) -> dict:
    """shards part -> signals/lang part: the caption language of every row, by the lineage's detector."""
    shards = pq.read_table(task.input_paths[0], columns=["uid", "caption"])
    task.write(language_table(shards.column("uid").to_pylist(), shards.column("caption").to_pylist(),
                              task.lineage["options"]["detector"]))
    return {"rows": shards.num_rows}


def decide_part(task: PartTask) -> dict:
    """shards part (+ its signal parts) -> decisions part: every step's verdict on every row, and why."""
    options = task.lineage["options"]
    config = FilterConfig.model_validate(options["config"])
    ctx = FilterContext(task.run_dir, task.name, prepared=options["prepared"])
    results: list[tuple[str, StepResult]] = [(DOWNLOAD_STEP, download_result(ctx))]
    results += [(step.name, step.evaluate(ctx)) for step in config.steps]
    task.write(with_reason_codes(combine(ctx, results)))
    return {"rows": len(ctx)}


def filter_run(run_dir: str | Path, config: FilterConfig, *, map_parts: MapParts = serial_map) -> dict:
    """Decide every downloaded pair: language per part, each step's global step, then decisions per part, merged
    into decisions.parquet. Parts whose inputs, config and global cuts are unchanged are not decided again."""
    run_dir = Path(run_dir)
    for table in config.required_tables():
        if not tables.table_exists(run_dir, table):
            raise tables.MissingTableError(run_dir, table)
    shard_parts = tables.list_parts(run_dir, "shards")
    names = [p.name for p in shard_parts]
    counts: dict = {}

    if _needs_language(config):
        items = [(name, [f"shards/{name}"], [f"{tables.TABLE_PATHS['lang']}/{name}"]) for name in names]
        todo, current = plan_tasks("lang", run_dir, items, {"detector": _stored_detector(config)})
        map_parts(language_part, todo, desc="caption language")
        remove_stale_outputs(tables.table_path(run_dir, "lang"), names)
        counts["language_parts_detected"] = len(todo)

    prepared = {step.name: found for step in config.steps if (found := step.prepare(run_dir)) is not None}
    needed = [t for t in config.required_tables() if t != "shards"] + (["lang"] if _needs_language(config) else [])
    items = [(name, [f"shards/{name}"] + [rel for t in needed for rel in signal_inputs(run_dir, t, name)],
              [f"{DECISION_PARTS}/{name}"]) for name in names]
    options = {"config": config.model_dump(mode="json"), "prepared": prepared}
    todo, current = plan_tasks("filter", run_dir, items, options)
    map_parts(decide_part, todo, desc="filter")
    remove_stale_outputs(run_dir / DECISION_PARTS, names)
    merge_decisions(run_dir, [run_dir / DECISION_PARTS / name for name in names])
    counts.update(decision_counts(run_dir, config, prepared))
    counts.update(parts=len(names), parts_decided=len(todo), parts_skipped=len(current))
    if config.preset is not None:
        from curate.filter.presets import preset_note

        counts["preset"] = preset_note(config.preset, run_dir)
    return counts


def merge_decisions(run_dir: Path, part_paths: list[Path]) -> Path:
    """decisions.parquet = the decisions parts in part order, streamed (one row group per part); rewritten only when
    a part changed. Its digest is the combined digest of the parts, which fix its content."""
    target = tables.table_path(run_dir, "decisions")
    digests = [parts.part_digest(p) for p in part_paths]
    lineage = parts.lineage("filter", {str(p.relative_to(run_dir)): d for p, d in zip(part_paths, digests)}, {})
    if parts.read_lineage(target) == lineage:
        return target
    schemas_ = [pq.read_schema(p).remove_metadata() for p in part_paths]
    schema = pa.unify_schemas(schemas_, promote_options="permissive") if schemas_ else \
        pa.schema([("uid", pa.string()), ("kept", pa.bool_())])
    metadata = {parts.DIGEST_KEY: ("parts:" + parts.combined_digest(digests)).encode(),
                parts.LINEAGE_KEY: json.dumps(lineage, sort_keys=True).encode()}
    tmp = parts.temp_path(target)
    try:
        with pq.ParquetWriter(tmp, schema.with_metadata(metadata), compression="zstd") as writer:
            for path in part_paths:
                table = pq.read_table(path).replace_schema_metadata(None)
                writer.write_table(_conform_to(table, schema))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return target


def _conform_to(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def decision_counts(run_dir: Path, config: FilterConfig, prepared: dict) -> dict:
    """Counts of the whole decisions table (so a rerun that decides nothing reports the same), thresholds and the
    global steps' reports."""
    path = str(tables.table_path(run_dir, "decisions"))
    step_names = [DOWNLOAD_STEP] + [s.name for s in config.steps]
    selects = ", ".join(f'sum(CAST("pass_{n}" AS INTEGER)), count(*) FILTER (WHERE dropped_by = \'{n}\')'
                        for n in step_names)
    with duckdb.connect() as con:
        row = con.execute(f"SELECT count(*), sum(CAST(kept AS INTEGER)), {selects} FROM read_parquet(?)",
                          [path]).fetchall()[0]
    steps = {name: {"pass": int(row[2 + 2 * i] or 0), "dropped_first": int(row[3 + 2 * i] or 0)}
             for i, name in enumerate(step_names)}
    thresholds: dict[str, Any] = {}
    reports: dict[str, Any] = {}
    for step in config.steps:
        if isinstance(step, ClipThresholdStep):
            thresholds[step.name] = step.min_score
        found = prepared.get(step.name) or {}
        if "boundary" in found:
            cut = found["boundary"]["threshold"]
            thresholds[step.name] = cut
        if found.get("group_boundaries"):
            thresholds[f"{step.name}_groups"] = {g: (b["threshold"] if b else None)
                                                 for g, b in found["group_boundaries"].items()}
        reports.update(found.get("report", {}))
    return {"rows": int(row[0]), "kept": int(row[1] or 0), "steps": steps, "thresholds": thresholds, **reports}


def combine(ctx: FilterContext, results: list[tuple[str, StepResult]]) -> pa.Table:
    """One part's decisions: pass_<step> per step, kept (their AND), dropped_by (first failure), reason, helpers."""
    n = len(ctx)
    kept = np.ones(n, dtype=bool)
    dropped_by: list[str | None] = [None] * n
    reason: list[str | None] = [None] * n
    columns: dict[str, pa.Array] = {"uid": pa.array(ctx.uids.tolist(), pa.string())}
    for name, result in results:
        first_failures = np.flatnonzero(kept & ~result.passed)
        for i in first_failures:
            dropped_by[i] = name
            reason[i] = result.reasons[i]
        kept &= result.passed
        columns[f"pass_{name}"] = pa.array(result.passed, pa.bool_())
    columns["kept"] = pa.array(kept, pa.bool_())
    columns["dropped_by"] = pa.array(dropped_by, pa.string())
    columns["reason"] = pa.array(reason, pa.string())
    for _, result in results:
        for col, values in result.helpers.items():
            if col not in columns:
                array = pa.array(values, HELPER_TYPES.get(col))
                columns[col] = array.cast(pa.string()) if pa.types.is_null(array.type) else array
    return pa.table(columns)
