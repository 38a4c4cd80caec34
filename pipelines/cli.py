"""The `fairsift` command. Flags here are a public interface: keep their names.

Each command is thin: it builds the stage's options, runs the stage under the manifest's timer and prints a summary.
Heavy imports happen inside the commands so that `fairsift --help` stays instant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0] if __doc__ else None,
                  pretty_exceptions_enable=False)
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)  # paths stay copyable
    raise typer.Exit(2)


def _check_run_folder(run: Path) -> None:
    if run.exists() and not run.is_dir():
        _fail(f"run folder {run} is a file, not a folder; pass a folder path to --run / RUN")


# every stage command takes these two: where its parts run (pipelines/engines)
ENGINE_OPTION = typer.Option("local", "--engine", help="where the parts run: local (this machine's cores) or ray")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address",
                                  help="Ray cluster to join (auto, or HEAD:6379); without it --engine ray starts a local Ray")


def _engine(name: str, ray_address: Optional[str]):
    from pipelines.engines import EngineError, make_engine

    try:
        return make_engine(name, address=ray_address)
    except EngineError as exc:
        _fail(str(exc))


def _run_stage(run: Path, stage: str, fn, *args, engine: str = "local", ray_address: Optional[str] = None,
               **kwargs) -> dict:
    from pipelines import manifest
    from pipelines.runner import call_stage

    _check_run_folder(run)
    from curate.tables import MissingTableError

    with _engine(engine, ray_address) as runner_engine:
        try:
            with manifest.stage_timer(run, stage) as counts:
                result = call_stage(fn, *args, engine=runner_engine, **kwargs) or {}
                counts.update(result)
        except (MissingTableError, FileNotFoundError, ValueError) as exc:
            _fail(str(exc))
    from pipelines.summary import print_stage_summary

    print_stage_summary(stage, counts)
    return counts


@app.command()
def crawl(
    sources: List[str] = typer.Argument(..., help="HTML files or folders, WARC/WAT files (.gz too), http(s) start URLs"),
    run: Path = typer.Option(..., "--run", help="run folder"),
    max_depth: int = typer.Option(1, "--max-depth", help="links followed from an http start URL (same host)"),
    max_pages: int = typer.Option(100, "--max-pages", help="pages fetched per http start URL"),
    allow_private_network: bool = typer.Option(False, "--allow-private-network", help="allow 127.0.0.1 and LAN hosts"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Extract (image URL, alt text) pairs from pages into RUN/pairs/."""
    from curate.sources.crawl import crawl as crawl_stage
    from curate.options import CrawlOptions

    opts = CrawlOptions(sources=list(sources), max_depth=max_depth, max_pages=max_pages,
                        allow_private_network=allow_private_network)
    _run_stage(run, "crawl", crawl_stage, run, opts, engine=engine, ray_address=ray_address)


@app.command()
def ingest(
    list_path: Path = typer.Argument(..., metavar="LIST", help="URL list: Parquet, CSV, JSONL or TXT (img2dataset's format)"),
    run: Path = typer.Option(..., "--run", help="run folder"),
    url_col: str = typer.Option("url", "--url-col"),
    caption_col: Optional[str] = typer.Option("caption", "--caption-col"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Take an existing URL list into RUN/pairs/."""
    from curate.sources.ingest import ingest as ingest_stage
    from curate.options import IngestOptions

    if not list_path.exists():
        _fail(f"URL list not found: {list_path}")
    opts = IngestOptions(path=str(list_path), url_col=url_col, caption_col=caption_col)
    _run_stage(run, "ingest", ingest_stage, run, opts, engine=engine, ray_address=ray_address)


@app.command()
def download(
    run: Path = typer.Argument(..., help="run folder"),
    image_size: int = typer.Option(256, "--image-size"),
    resize_mode: str = typer.Option("border", "--resize-mode", help="no | keep_ratio | keep_ratio_largest | center_crop | border"),
    processes: int = typer.Option(1, "--processes"),
    threads: int = typer.Option(32, "--threads", help="fetch threads per part"),
    timeout: int = typer.Option(10, "--timeout", help="seconds per connect and per read"),
    allow_private_network: bool = typer.Option(False, "--allow-private-network", help="allow 127.0.0.1 and LAN hosts"),
    retries: int = typer.Option(0, "--retries", help="retries of timeouts, resets and 500/502/504 (never of dead hosts)"),
    user_agent: Optional[str] = typer.Option(None, "--user-agent", help="User-Agent; must hold a contact URL or e-mail"),
    contact: Optional[str] = typer.Option(None, "--contact", help="URL or e-mail put in the default User-Agent"),
    ignore_robots_txt: bool = typer.Option(False, "--ignore-robots-txt", help="do not fetch or obey robots.txt"),
    per_host_concurrency: int = typer.Option(8, "--per-host-concurrency", help="requests in flight per host"),
    per_host_rps: Optional[float] = typer.Option(None, "--per-host-rps", help="request starts per second per host"),
    host_failure_limit: int = typer.Option(3, "--host-failure-limit", help="consecutive connection failures that close a host (host_unreachable)"),
    allow_domain: Optional[List[str]] = typer.Option(None, "--allow-domain", help="download only from this domain and its subdomains (repeatable)"),
    block_domain: Optional[List[str]] = typer.Option(None, "--block-domain", help="never download from this domain or its subdomains (repeatable)"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Download and resize every pair's image (img2dataset's resizer) into RUN/shards/."""
    from pydantic import ValidationError

    from curate.download.stage import download as download_stage
    from curate.options import DownloadOptions

    extra = {"contact": contact} if contact else {}
    try:
        opts = DownloadOptions(image_size=image_size, resize_mode=resize_mode, processes=processes, threads=threads,
                               timeout=timeout, allow_private_network=allow_private_network, retries=retries,
                               user_agent=user_agent, respect_robots_txt=not ignore_robots_txt,
                               per_host_concurrency=per_host_concurrency, per_host_rps=per_host_rps,
                               host_failure_limit=host_failure_limit, allowed_domains=list(allow_domain or []),
                               blocked_domains=list(block_domain or []), **extra)
    except ValidationError as exc:
        _fail(str(exc))
    _run_stage(run, "download", download_stage, run, opts, engine=engine, ray_address=ray_address)


@app.command()
def dedup(
    run: Path = typer.Argument(..., help="run folder"),
    eval_set: Optional[Path] = typer.Option(None, "--eval-set", help="folder of evaluation images to decontaminate against"),
    phash_distance: int = typer.Option(4, "--phash-distance", help="max Hamming distance of near duplicates"),
    semantic_threshold: float = typer.Option(0.95, "--semantic-threshold", help="cosine of CLIP image embeddings"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Find exact, near, semantic and eval-set duplicates: RUN/signals/phash/ and RUN/signals/dedup/."""
    from curate.dedup.stage import dedup as dedup_stage
    from curate.options import DedupOptions

    if eval_set is not None and not eval_set.is_dir():
        _fail(f"--eval-set folder not found: {eval_set}")
    opts = DedupOptions(phash_distance=phash_distance, semantic_threshold=semantic_threshold,
                        eval_set=str(eval_set) if eval_set else None)
    _run_stage(run, "dedup", dedup_stage, run, opts, engine=engine, ray_address=ray_address)


@app.command()
def score(
    run: Path = typer.Argument(..., help="run folder"),
    model: str = typer.Option("ViT-B-32", "--model", help="open_clip architecture, hf-hub:..., or tiny-test"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip pretrained tag (default laion2b_s34b_b79k for ViT-B-32)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="local checkpoint file"),
    device: str = typer.Option("auto", "--device", help="cpu | cuda | auto"),
    batch_size: int = typer.Option(256, "--batch-size"),
    workers: int = typer.Option(2, "--workers", help="DataLoader workers decoding images"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """CLIP-score every downloaded pair: RUN/signals/clip/ and RUN/signals/embeddings/."""
    from curate.options import ScoreOptions
    from curate.score.stage import default_pretrained, score as score_stage

    if checkpoint is not None and not checkpoint.is_file():
        _fail(f"--checkpoint file not found: {checkpoint}")
    opts = ScoreOptions(model=model, pretrained=pretrained if pretrained is not None else default_pretrained(model, checkpoint),
                        checkpoint=str(checkpoint) if checkpoint else None, device=device, batch_size=batch_size,
                        workers=workers)
    _run_stage(run, "score", score_stage, run, opts, engine=engine, ray_address=ray_address)


@app.command("filter")
def filter_cmd(
    run: Path = typer.Argument(..., help="run folder"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `steps:` (or a run config with a `filter:` section)"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Decide per uid which filter steps it passes: RUN/decisions.parquet."""
    from curate.filter.stage import default_filter_config, filter_run, load_filter_config

    try:
        cfg = load_filter_config(config) if config else default_filter_config()
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    _run_stage(run, "filter", filter_run, run, cfg, engine=engine, ray_address=ray_address)


@app.command()
def export(
    run: Path = typer.Argument(..., help="run folder"),
    webdataset: bool = typer.Option(False, "--webdataset", help="also write webdataset .tar shards"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Write the kept rows as the training corpus: RUN/corpus/."""
    from curate.export.stage import export as export_stage
    from curate.options import ExportOptions

    _run_stage(run, "export", export_stage, run, ExportOptions(webdataset=webdataset), engine=engine, ray_address=ray_address)


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="run config YAML"),
    run: Optional[Path] = typer.Option(None, "--run", help="run folder (default: the config's run_dir, or runs/<name>)"),
    engine: Optional[str] = typer.Option(None, "--engine", help="where the parts run: local or ray (default: the config's engine section, else local)"),
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    from_stage: Optional[str] = typer.Option(None, "--from", help="redo this stage and every later one"),
    force: List[str] = typer.Option([], "--force", help="redo this stage (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="say which stages would run or be skipped, and why; run nothing"),
):
    """Run every stage from one YAML file; a rerun skips finished stages and shards."""
    from pipelines.config import ConfigError, load_config
    from pipelines.runner import run_pipeline

    try:
        cfg = load_config(config)
    except ConfigError as exc:
        _fail(str(exc))
    run_dir = run or Path(cfg.run_dir or Path("runs") / (cfg.name or config.stem))
    _check_run_folder(run_dir)
    if engine is not None or ray_address is not None:
        cfg.engine.name = engine or ("ray" if ray_address else cfg.engine.name)
        cfg.engine.address = ray_address if ray_address is not None else cfg.engine.address
    from pipelines.engines import EngineError

    try:
        run_pipeline(cfg, run_dir, force=tuple(force), from_stage=from_stage, dry_run=dry_run)
    except (FileNotFoundError, ValueError, EngineError) as exc:
        _fail(str(exc))


@app.command()
def demo(
    run: Path = typer.Option(Path("runs/demo"), "--run", help="run folder"),
    model: Optional[str] = typer.Option(None, "--model", help="open_clip model; default ViT-B-32 if its weights load, else tiny-test"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Serve the bundled sample on 127.0.0.1, then crawl, download, dedup, score, filter, export, audit and report it."""
    from pipelines.demo import run_demo

    _check_run_folder(run)
    run_demo(run, model=model, pretrained=pretrained, checkpoint=str(checkpoint) if checkpoint else None,
             engine=engine, ray_address=ray_address)


@app.command()
def sql(
    run: Path = typer.Argument(..., help="run folder"),
    query: str = typer.Argument(..., help="SQL over views pairs, shards, clip, embeddings, phash, dedup, decisions, corpus, ..."),
    format: str = typer.Option("table", "--format", help="table | csv | json"),  # noqa: A002
):
    """Query the run's tables with DuckDB; every table is a view named after it."""
    from pipelines.sql import SqlError, format_result, run_query

    if format not in ("table", "csv", "json"):
        _fail(f"--format must be table, csv or json, not {format!r}")
    try:
        result = run_query(run, query)
    except SqlError as exc:
        _fail(str(exc))
    format_result(result, format, sys.stdout)


@app.command()
def audit(
    run: Path = typer.Argument(..., help="run folder"),
    perceived: bool = typer.Option(False, "--perceived", help="also CLIP zero-shot perceived gender presentation and age on images of people"),
    min_count: int = typer.Option(30, "--min-count", help="groups with fewer rows are shown and flagged but not judged "
                                                          "(no four-fifths test, never the reference group)"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap draws of the co-occurrence (nPMI) intervals; rates, "
                                                      "ratios and four-fifths tests use exact intervals and need none"),
    seed: int = typer.Option(0, "--seed"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
):
    """Group signals and audit tables: RUN/signals/groups/ and RUN/audit/*.parquet."""
    from audit.run import AuditOptions, run_audit

    _run_stage(run, "audit", run_audit, run, AuditOptions(perceived=perceived, min_count=min_count, n_boot=n_boot, seed=seed), engine=engine, ray_address=ray_address)


@app.command()
def probe(
    model: str = typer.Option("ViT-B-32", "--model"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint"),
    dataset: List[str] = typer.Option(..., "--dataset", help="KIND:PATH, e.g. fairface:DIR or country:CSV (repeatable)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    device: str = typer.Option("auto", "--device"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples of the WEAT effect-size and fairness-"
                                                      "difference intervals (rates use exact intervals)"),
    seed: int = typer.Option(0, "--seed"),
):
    """Zero-shot model probes per group (FairFace accuracy, harmful labels, geography, embedding association)."""
    from audit.probes import ProbeOptions, run_probes
    from curate.score.stage import default_pretrained

    opts = ProbeOptions(model=model, pretrained=pretrained if pretrained is not None else default_pretrained(model, checkpoint),
                        checkpoint=str(checkpoint) if checkpoint else None, datasets=list(dataset), device=device,
                        n_boot=n_boot, seed=seed)
    try:
        run_probes(opts, out)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def report(run: Path = typer.Argument(..., help="run folder")):
    """Static report: RUN/report/index.html, figures/*.png and summary.json."""
    from reports.build import build_report

    _run_stage(run, "report", build_report, run)


@app.command()
def dashboard(
    runs: List[Path] = typer.Argument(..., help="RUN [RUN2]: a second run turns on the Compare page"),
    port: int = typer.Option(8501, "--port"),
):
    """Start the Streamlit dashboard on 127.0.0.1 and print its URL."""
    from dashboards.launch import launch

    if not 1 <= len(runs) <= 2:
        _fail("give one run folder, or two to compare")
    for r in runs:
        if not r.is_dir():
            _fail(f"run folder not found: {r}")
    raise typer.Exit(launch(runs, port=port))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
