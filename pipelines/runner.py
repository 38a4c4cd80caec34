"""`fairsift run`: every stage in order from one config, resumable at two levels.

A stage whose options and upstream outputs are unchanged since it last finished is skipped as a whole (the manifest
holds a fingerprint per stage); inside a stage, parts whose output file exists are skipped, so a killed run resumes
where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from curate.layout import STAGE_OUTPUTS
from pipelines import manifest
from pipelines.config import RunConfig
from pipelines.summary import console, funnel_table, print_stage_skipped, print_stage_summary

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _fingerprint(options: Any, upstream: list[str], run_dir: Path) -> str:
    stages = manifest.load(run_dir).get("stages", {})
    payload = {
        "options": options.model_dump() if hasattr(options, "model_dump") else options,
        "upstream": {name: stages.get(name, {}).get("finished_at") for name in upstream},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


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


def _run(run_dir: Path, stage: str, fn: Callable[[], dict], options: Any, upstream: list[str]) -> dict:
    fingerprint = _fingerprint(options, upstream, run_dir)
    previous = manifest.load(run_dir).get("stages", {}).get(stage, {})
    outputs = _outputs(run_dir, stage)
    if previous.get("status") == "done" and previous.get("fingerprint") == fingerprint and outputs \
            and previous.get("outputs") == outputs:
        print_stage_skipped(stage, f"unchanged since {previous.get('finished_at')}", previous.get("counts", {}))
        return previous.get("counts", {})
    console.rule(f"[bold]{stage}")
    start = time.perf_counter()
    try:
        counts = fn() or {}
    except BaseException as exc:
        manifest.record_failure(run_dir, stage, time.perf_counter() - start, exc)
        raise
    manifest.record_stage(run_dir, stage, "done", time.perf_counter() - start, counts)
    data = manifest.load(run_dir)
    data["stages"][stage]["fingerprint"] = fingerprint
    data["stages"][stage]["outputs"] = _outputs(run_dir, stage)
    manifest.save(run_dir, data)
    print_stage_summary(stage, counts, data["stages"][stage].get("seconds"))
    return counts


def run_pipeline(cfg: RunConfig, run_dir: Path, *, extra_manifest: dict | None = None) -> Path:
    """Run the configured stages into run_dir; returns run_dir."""
    from curate.dedup import stage as dedup_mod
    from curate.download import stage as download_mod
    from curate.export import stage as export_mod
    from curate.filter import stage as filters
    from curate.score import stage as score_mod
    from curate.sources import crawl as crawl_mod

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    manifest.update(run_dir, config=cfg.model_dump(mode="json"), **(extra_manifest or {}))

    if cfg.crawl is not None:
        source = "crawl"
        _run(run_dir, "crawl", lambda: crawl_mod.crawl(run_dir, cfg.crawl), cfg.crawl, [])
    else:
        from curate.sources import ingest as ingest_mod

        source = "ingest"
        _run(run_dir, "ingest", lambda: ingest_mod.ingest(run_dir, cfg.ingest), cfg.ingest, [])

    _run(run_dir, "download", lambda: download_mod.download(run_dir, cfg.download), cfg.download, [source])
    # exact and pHash duplicates first, so that scoring could skip them; semantic duplicates need embeddings,
    # so dedup runs again after scoring (cheap: pHash parts are cached) with clip_score to pick representatives
    _run(run_dir, "dedup", lambda: dedup_mod.dedup(run_dir, cfg.dedup), cfg.dedup, ["download"])
    _run(run_dir, "score", lambda: score_mod.score(run_dir, cfg.score), cfg.score, ["download"])
    _run(run_dir, "dedup_semantic", lambda: dedup_mod.dedup(run_dir, cfg.dedup), cfg.dedup, ["dedup", "score"])

    filter_cfg = filters.FilterConfig.model_validate(cfg.filter) if cfg.filter is not None \
        else filters.default_filter_config()
    if _needs_groups(filter_cfg):
        from audit.signals import build_group_signals

        _run(run_dir, "groups", lambda: build_group_signals(run_dir), {"groups": 1}, [source])
    _run(run_dir, "filter", lambda: filters.filter_run(run_dir, filter_cfg), filter_cfg,
         ["dedup_semantic", "score", "download"] + (["groups"] if _needs_groups(filter_cfg) else []))
    _run(run_dir, "export", lambda: export_mod.export(run_dir, cfg.export), cfg.export, ["filter"])

    if cfg.audit.enabled:
        from audit.run import AuditOptions, run_audit

        audit_opts = AuditOptions(perceived=cfg.audit.perceived, min_count=cfg.audit.min_count,
                                  n_boot=cfg.audit.n_boot, seed=cfg.audit.seed)
        _run(run_dir, "audit", lambda: run_audit(run_dir, audit_opts), audit_opts, ["filter"])
    if cfg.probe is not None and cfg.probe.datasets:
        from audit.probes import ProbeOptions, run_probes

        from curate.score.stage import default_pretrained

        probe_opts = ProbeOptions(model=cfg.score.model,
                                  pretrained=cfg.score.pretrained if cfg.score.pretrained is not None
                                  else default_pretrained(cfg.score.model, cfg.score.checkpoint),
                                  checkpoint=cfg.score.checkpoint, device=cfg.score.device,
                                  datasets=cfg.probe.datasets, n_boot=cfg.probe.n_boot,
                                  n_permutations=cfg.probe.n_permutations, seed=cfg.probe.seed)
        _run(run_dir, "probe", lambda: run_probes(probe_opts, run_dir / "probes"), probe_opts, [])
    if cfg.report.enabled:
        from reports.build import build_report

        _run(run_dir, "report", lambda: build_report(run_dir), cfg.report, ["audit", "filter", "export", "probe"])

    print_funnel(run_dir)
    return run_dir


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
