"""`fairsift run`: every stage in order from one config, on one engine, resumable at two levels.

Stage level: a stage is skipped while its output-shaping options, the content of the tables it reads (a combined
digest of their parts' digests, curate.parts) and its own outputs are unchanged since it last finished. Part level:
inside a stage, parts whose footer lineage still matches their inputs and options are skipped, so a killed run
resumes where it stopped and a changed input part redoes exactly what was computed from it, all the way down.

`--force STAGE` deletes that stage's outputs first (it is recomputed whole); `--from STAGE` does so for it and every
later stage; `--dry-run` says for each stage whether it would run or be skipped, and why, without running anything.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from curate import parts
from curate.layout import STAGE_OUTPUTS, TABLE_PATHS
from pipelines import manifest
from pipelines.config import RunConfig
from pipelines.engines import Engine, make_engine
from pipelines.summary import console, funnel_table, print_stage_skipped, print_stage_summary

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

# the tables (or run-folder paths) whose content each stage's result depends on
STAGE_INPUTS: dict[str, tuple[str, ...]] = {
    "crawl": (), "ingest": (), "download": ("pairs",), "dedup": ("shards",), "score": ("shards",),
    "dedup_semantic": ("shards", "phash", "clip", "embeddings"), "groups": ("pairs", "lang"),
    "filter": ("shards", "dedup", "clip", "lang", "groups"), "export": ("decisions", "shards", "clip"),
    "audit": ("decisions", "pairs", "clip", "groups", "lang"), "probe": (),
    "report": ("audit", "decisions", "corpus", "probes", "manifest_model"),
}
STAGE_ORDER = ("crawl", "ingest", "download", "dedup", "score", "dedup_semantic", "groups", "filter", "export",
               "audit", "probe", "report")


def _files(run_dir: Path, rel: str) -> list[Path]:
    path = run_dir / TABLE_PATHS.get(rel, rel)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    return []


def input_digests(run_dir: Path, stage: str, inputs: Optional[tuple[str, ...]] = None) -> dict[str, Optional[str]]:
    """table -> combined digest of its files (None when absent), for the tables the stage reads."""
    digests: dict[str, Optional[str]] = {}
    for rel in (inputs if inputs is not None else STAGE_INPUTS.get(stage, ())):
        if rel == "manifest_model":
            model = manifest.load(run_dir).get("model")
            digests[rel] = hashlib.sha256(json.dumps(model, sort_keys=True).encode()).hexdigest()[:16] if model else None
            continue
        files = _files(run_dir, rel)
        digests[rel] = parts.combined_digest(f"{f.relative_to(run_dir)}={parts.part_digest(f)}" for f in files) \
            if files else None
    return digests


def _outputs(run_dir: Path, stage: str) -> dict[str, int]:
    """Relative path -> size of every file the stage wrote (hidden temporary files excluded)."""
    found: dict[str, int] = {}
    for rel in STAGE_OUTPUTS.get(stage, ()):
        path = run_dir / rel
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
        for f in files:
            if not f.name.startswith("."):
                found[str(f.relative_to(run_dir))] = f.stat().st_size
    return found


@dataclass
class StagePlan:
    stage: str
    action: str  # "run" or "skip"
    why: str


def plan_stage(run_dir: Path, stage: str, options: Any, forced: bool,
               inputs: Optional[tuple[str, ...]] = None) -> tuple[StagePlan, dict]:
    """Would the stage run, and why; plus the record to store when it finishes. `inputs` overrides the tables the
    stage reads when they depend on its options (the filter reads signals/groups only for group parity)."""
    record = {"options": parts.canonical(options), "inputs": input_digests(run_dir, stage, inputs)}
    previous = manifest.load(run_dir).get("stages", {}).get(stage, {})
    outputs = _outputs(run_dir, stage)
    if forced:
        return StagePlan(stage, "run", "forced (--force/--from)"), record
    if previous.get("status") != "done":
        state = previous.get("status")
        return StagePlan(stage, "run", f"last run {state}" if state else "never ran"), record
    if previous.get("options") != record["options"]:
        old = previous.get("options") or {}
        changed = sorted(k for k in set(old) | set(record["options"])
                         if old.get(k) != record["options"].get(k)) if isinstance(old, dict) else ["options"]
        return StagePlan(stage, "run", "options changed: " + ", ".join(changed)), record
    if previous.get("inputs") != record["inputs"]:
        old = previous.get("inputs") or {}
        changed = sorted(k for k in record["inputs"] if old.get(k) != record["inputs"][k])
        return StagePlan(stage, "run", "input changed: " + ", ".join(changed)), record
    if not outputs or previous.get("outputs") != outputs:
        return StagePlan(stage, "run", "its outputs were changed or removed"), record
    return StagePlan(stage, "skip", f"unchanged since {previous.get('finished_at')}"), record


def _clear_outputs(run_dir: Path, stage: str) -> None:
    for rel in STAGE_OUTPUTS.get(stage, ()):
        path = run_dir / rel
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def call_stage(fn: Callable, *args, engine: Optional[Engine] = None, **kwargs):
    """Call a stage function, handing it the engine's map_parts when it takes one."""
    if engine is not None and "map_parts" in inspect.signature(fn).parameters:
        kwargs["map_parts"] = engine.map_parts
    return fn(*args, **kwargs)


def _producers() -> dict[str, str]:
    """run-folder path -> the stage that writes it."""
    return {rel: stage for stage, rels in STAGE_OUTPUTS.items() for rel in rels}


class Runner:
    def _upstream_that_would_run(self, stage: str, inputs: Optional[tuple[str, ...]] = None) -> Optional[str]:
        """In a dry run: an earlier stage planned to run that writes one of this stage's inputs."""
        producers = _producers()
        running = {p.stage for p in self.plans[:-1] if p.action == "run"}
        for table in (inputs if inputs is not None else STAGE_INPUTS.get(stage, ())):
            producer = producers.get(TABLE_PATHS.get(table, table))
            if producer in running:
                return producer
        return None

    def __init__(self, run_dir: Path, engine: Engine, *, force: tuple[str, ...] = (), dry_run: bool = False):
        self.run_dir = run_dir
        self.engine = engine
        self.force = set(force)
        self.dry_run = dry_run
        self.plans: list[StagePlan] = []

    def stage(self, stage: str, fn: Callable[[], dict], options: Any, inputs: Optional[tuple[str, ...]] = None) -> dict:
        forced = stage in self.force
        plan, record = plan_stage(self.run_dir, stage, options, forced, inputs)
        self.plans.append(plan)
        if self.dry_run:
            upstream = self._upstream_that_would_run(stage, inputs)
            if plan.action == "skip" and upstream:
                plan = StagePlan(stage, "run", f"{upstream} would run first and may change its inputs")
                self.plans[-1] = plan
            console.print(f"{stage:<15} {plan.action:<5} {plan.why}", highlight=False, soft_wrap=True)
            return {}
        if plan.action == "skip":
            counts = manifest.load(self.run_dir).get("stages", {}).get(stage, {}).get("counts", {})
            print_stage_skipped(stage, plan.why, counts)
            return counts
        if forced:
            _clear_outputs(self.run_dir, stage)
        console.rule(f"[bold]{stage}")
        start = time.perf_counter()
        try:
            counts = fn() or {}
        except BaseException as exc:
            try:
                manifest.record_failure(self.run_dir, stage, time.perf_counter() - start, exc)
            except OSError:
                pass  # a full disk or read-only folder cannot take the record either: the stage's own error says why
            raise
        manifest.record_stage(self.run_dir, stage, "done", time.perf_counter() - start, counts)
        data = manifest.load(self.run_dir)
        entry = data["stages"][stage]
        # inputs as they are now: a stage that writes a table it also reads (filter: lang) stays current
        entry.update(record, inputs=input_digests(self.run_dir, stage, inputs))
        entry["engine"] = self.engine.describe()
        entry["outputs"] = _outputs(self.run_dir, stage)
        manifest.save(self.run_dir, data)
        print_stage_summary(stage, counts, entry.get("seconds"))
        return counts


def stages_from(first: str) -> tuple[str, ...]:
    if first not in STAGE_ORDER:
        raise ValueError(f"unknown stage {first!r}; stages are: {', '.join(STAGE_ORDER)}")
    return STAGE_ORDER[STAGE_ORDER.index(first):]


def run_pipeline(cfg: RunConfig, run_dir: Path, *, extra_manifest: dict | None = None, engine: Optional[Engine] = None,
                 force: tuple[str, ...] = (), from_stage: Optional[str] = None, dry_run: bool = False) -> Path:
    """Run the configured stages into run_dir on the engine (default: the config's `engine` section)."""
    run_dir = Path(run_dir)
    for stage in force:
        if stage not in STAGE_ORDER:
            raise ValueError(f"unknown stage {stage!r} for --force; stages are: {', '.join(STAGE_ORDER)}")
    forced = tuple(force) + (stages_from(from_stage) if from_stage else ())
    own_engine = engine is None
    if own_engine:
        engine = make_engine(cfg.engine.name, address=cfg.engine.address, workers=cfg.engine.workers)
    try:
        if not dry_run:
            run_dir.mkdir(parents=True, exist_ok=True)
            manifest.update(run_dir, config=cfg.model_dump(mode="json"), **(extra_manifest or {}))
        _run_stages(cfg, run_dir, Runner(run_dir, engine, force=forced, dry_run=dry_run))
    finally:
        if own_engine:
            engine.close()
    if not dry_run:
        print_funnel(run_dir)
    return run_dir


def _run_stages(cfg: RunConfig, run_dir: Path, runner: Runner) -> None:
    from curate.dedup import stage as dedup_mod
    from curate.download import stage as download_mod
    from curate.export import stage as export_mod
    from curate.filter import stage as filters
    from curate.score import stage as score_mod

    engine = runner.engine
    if cfg.crawl is not None:
        from curate.sources import crawl as crawl_mod

        source = "crawl"
        runner.stage("crawl", lambda: call_stage(crawl_mod.crawl, run_dir, cfg.crawl, engine=engine), cfg.crawl)
    else:
        from curate.sources import ingest as ingest_mod

        source = "ingest"
        runner.stage("ingest", lambda: call_stage(ingest_mod.ingest, run_dir, cfg.ingest, engine=engine), cfg.ingest)

    runner.stage("download", lambda: call_stage(download_mod.download, run_dir, cfg.download, engine=engine),
                 cfg.download)
    # exact and pHash duplicates first, so that scoring could skip them; semantic duplicates need embeddings,
    # so dedup runs again after scoring (cheap: pHash parts are current) with clip_score to pick representatives
    runner.stage("dedup", lambda: call_stage(dedup_mod.dedup, run_dir, cfg.dedup, engine=engine), cfg.dedup)
    runner.stage("score", lambda: call_stage(score_mod.score, run_dir, cfg.score, engine=engine), cfg.score)
    runner.stage("dedup_semantic", lambda: call_stage(dedup_mod.dedup, run_dir, cfg.dedup, engine=engine), cfg.dedup)

    filter_cfg = filters.FilterConfig.model_validate(cfg.filter) if cfg.filter is not None \
        else filters.default_filter_config()
    if _needs_groups(filter_cfg):
        from audit.signals import build_group_signals

        runner.stage("groups", lambda: call_stage(build_group_signals, run_dir, engine=engine), {"groups": 1})
    filter_inputs = tuple(i for i in STAGE_INPUTS["filter"] if i != "groups" or _needs_groups(filter_cfg))
    runner.stage("filter", lambda: call_stage(filters.filter_run, run_dir, filter_cfg, engine=engine), filter_cfg,
                 inputs=filter_inputs)
    runner.stage("export", lambda: call_stage(export_mod.export, run_dir, cfg.export, engine=engine), cfg.export)
    del source

    if cfg.audit.enabled:
        from audit.run import AuditOptions, run_audit

        audit_opts = AuditOptions(perceived=cfg.audit.perceived, min_count=cfg.audit.min_count,
                                  n_boot=cfg.audit.n_boot, seed=cfg.audit.seed)
        runner.stage("audit", lambda: call_stage(run_audit, run_dir, audit_opts, engine=engine), audit_opts)
    if cfg.probe is not None and cfg.probe.datasets:
        from audit.probes import ProbeOptions, run_probes

        from curate.score.stage import default_pretrained

        probe_opts = ProbeOptions(model=cfg.score.model,
                                  pretrained=cfg.score.pretrained if cfg.score.pretrained is not None
                                  else default_pretrained(cfg.score.model, cfg.score.checkpoint),
                                  checkpoint=cfg.score.checkpoint, device=cfg.score.device,
                                  datasets=cfg.probe.datasets, n_boot=cfg.probe.n_boot,
                                  n_permutations=cfg.probe.n_permutations, seed=cfg.probe.seed)
        runner.stage("probe", lambda: run_probes(probe_opts, run_dir / "probes"), probe_opts)
    if cfg.report.enabled:
        from reports.build import build_report

        runner.stage("report", lambda: build_report(run_dir), cfg.report)


def _needs_groups(filter_cfg: Any) -> bool:
    return "groups" in filter_cfg.required_tables()


def print_funnel(run_dir: Path) -> None:
    from curate.filter.funnel import funnel_rows

    rows = funnel_rows(run_dir)
    if rows:
        console.print(funnel_table(rows))
    model = manifest.load(run_dir).get("model") or {}
    if model.get("is_test_model"):
        console.print("[bold yellow]WARNING: clip_score values come from the tiny TEST model (not real CLIP weights); "
                      "they say nothing about image-text match.[/]")
