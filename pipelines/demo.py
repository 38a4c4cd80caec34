"""`fairsift demo`: the whole pipeline on the bundled sample, served as web pages on 127.0.0.1.

The one place where a fallback model is allowed: without real CLIP weights (no internet, no cache) the demo runs the
tiny TEST model and says so in the terminal, the manifest and every output that shows scores.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from pipelines import manifest
from pipelines.config import AuditSection, ProbeSection, ReportSection, RunConfig
from pipelines.demo_site import SAMPLE_DIR
from pipelines.summary import console

DEFAULT_MODEL = ("ViT-B-32", "laion2b_s34b_b79k")
TEST_MODEL = "tiny-test"


def choose_model(model: Optional[str], pretrained: Optional[str], checkpoint: Optional[str]) -> tuple[dict, Optional[str]]:
    """The score options to use, and a fallback notice when the test model stands in for real weights."""
    from curate.score.clip_model import WeightsUnavailableError, load_clip
    from curate.score.stage import default_pretrained

    if model is not None:
        return {"model": model, "pretrained": pretrained if pretrained is not None else default_pretrained(model, checkpoint),
                "checkpoint": checkpoint}, None
    try:
        load_clip(DEFAULT_MODEL[0], pretrained=DEFAULT_MODEL[1], device="cpu")
    except WeightsUnavailableError as exc:
        notice = (f"real CLIP weights ({DEFAULT_MODEL[0]} / {DEFAULT_MODEL[1]}) could not be loaded ({str(exc).splitlines()[0]}); "
                  f"this demo runs the tiny TEST model '{TEST_MODEL}', whose scores are meaningless. For real scores run "
                  f"`fairsift demo --model {DEFAULT_MODEL[0]} --pretrained {DEFAULT_MODEL[1]}` on a machine with internet "
                  f"or cached weights, or `fairsift demo --model {DEFAULT_MODEL[0]} --checkpoint /path/to/weights`.")
        return {"model": TEST_MODEL, "pretrained": None, "checkpoint": None}, notice
    return {"model": DEFAULT_MODEL[0], "pretrained": DEFAULT_MODEL[1], "checkpoint": None}, None


def _banner(notice: str) -> None:
    console.rule("[bold yellow]TEST MODEL IN USE")
    console.print(f"[bold yellow]{notice}[/]", highlight=False)
    console.rule("[bold yellow]")


def run_demo(run_dir: Path, model: Optional[str] = None, pretrained: Optional[str] = None,
             checkpoint: Optional[str] = None, engine: str = "local", ray_address: Optional[str] = None,
             workers: Optional[int] = None) -> Path:
    from curate.net.loopback import LoopbackServer
    from pipelines.demo_site import build_site
    from pipelines.runner import run_pipeline

    run_dir = Path(run_dir)
    score_opts, notice = choose_model(model, pretrained, checkpoint)
    if notice:
        _banner(notice)
    # the site's port changes between runs and with it every url and uid: a demo run always starts afresh
    if (run_dir / "manifest.json").exists():
        if not manifest.load(run_dir).get("demo"):
            raise ValueError(f"{run_dir} holds a run that is not a demo run; pass another --run folder")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    site = run_dir / "site"
    planted = build_site(site)
    with LoopbackServer(site) as server:
        cfg = RunConfig(
            name="demo",
            allow_private_network=True,  # the sample is served on 127.0.0.1
            crawl={"sources": [server.url("pages/index.html")], "max_depth": 1, "max_pages": 50},
            download={"image_size": 256, "processes": 1, "threads": 16, "timeout": 5},
            score={**score_opts, "batch_size": 64, "workers": 1},
            audit=AuditSection(enabled=True, min_count=10, n_boot=500),
            probe=ProbeSection(datasets=[f"fairface:{SAMPLE_DIR / 'fairface'}"], n_boot=500, n_permutations=2000),
            report=ReportSection(enabled=True),
            engine={"name": engine, "address": ray_address, "workers": workers},
        )
        extra = {"demo": True, "planted": {k: len(v) if isinstance(v, list) else v for k, v in planted.items()}}
        if notice:
            extra["model_fallback"] = notice
        run_pipeline(cfg, run_dir, extra_manifest=extra)
    if notice:
        _banner(notice)
    console.print(f"\n[bold]outputs[/] in {run_dir}/:")
    for rel, what in (("corpus/", "the filtered corpus (Parquet)"), ("decisions.parquet", "why each pair was kept or dropped"),
                      ("audit/", "bias audit tables"), ("probes/", "model probes per perceived group (FairFace sample)"), ("report/index.html", "the static report"),
                      ("manifest.json", "config, versions, model, per-stage counts and timings")):
        if (run_dir / rel).exists():
            console.print(f"  {run_dir / rel}  — {what}")
    console.print(f"\nexplore: fairsift sql {run_dir} \"select dropped_by, count(*) from decisions group by 1\"\n"
                  f"         fairsift dashboard {run_dir}")
    return run_dir
