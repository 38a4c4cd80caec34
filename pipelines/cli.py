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


def _run_stage(run: Path, stage: str, fn, *args, **kwargs) -> dict:
    from pipelines import manifest

    _check_run_folder(run)
    from curate.tables import MissingTableError

    try:
        with manifest.stage_timer(run, stage) as counts:
            result = fn(*args, **kwargs) or {}
            counts.update(result)
    except (MissingTableError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    from pipelines.summary import print_stage_summary

    print_stage_summary(stage, counts)
    return counts


@app.command()
def crawl(
    sources: List[str] = typer.Argument(..., help="HTML files, WARC/WAT/ARC files (plain, .gz, .lz4, .zst), folders of them, http(s) start URLs"),
    run: Path = typer.Option(..., "--run", help="run folder"),
    max_depth: int = typer.Option(1, "--max-depth", help="links followed from an http start URL (same host)"),
    max_pages: int = typer.Option(100, "--max-pages", help="pages fetched per http start URL"),
    allow_private_network: bool = typer.Option(False, "--allow-private-network", help="allow 127.0.0.1 and LAN hosts"),
):
    """Extract (image URL, alt text) pairs from pages into RUN/pairs/."""
    from curate.sources.crawl import crawl as crawl_stage
    from curate.options import CrawlOptions

    opts = CrawlOptions(sources=list(sources), max_depth=max_depth, max_pages=max_pages,
                        allow_private_network=allow_private_network)
    _run_stage(run, "crawl", crawl_stage, run, opts)


@app.command()
def ingest(
    list_path: Path = typer.Argument(..., metavar="LIST", help="URL list: Parquet, CSV, JSONL or TXT (img2dataset's format)"),
    run: Path = typer.Option(..., "--run", help="run folder"),
    url_col: str = typer.Option("url", "--url-col"),
    caption_col: Optional[str] = typer.Option("caption", "--caption-col"),
):
    """Take an existing URL list into RUN/pairs/."""
    from curate.sources.ingest import ingest as ingest_stage
    from curate.options import IngestOptions

    if not list_path.exists():
        _fail(f"URL list not found: {list_path}")
    opts = IngestOptions(path=str(list_path), url_col=url_col, caption_col=caption_col)
    _run_stage(run, "ingest", ingest_stage, run, opts)


@app.command()
def download(
    run: Path = typer.Argument(..., help="run folder"),
    image_size: int = typer.Option(256, "--image-size"),
    resize_mode: str = typer.Option("border", "--resize-mode", help="no | keep_ratio | keep_ratio_largest | center_crop | border"),
    processes: int = typer.Option(1, "--processes"),
    threads: int = typer.Option(32, "--threads"),
    timeout: int = typer.Option(10, "--timeout", help="seconds per request"),
    allow_private_network: bool = typer.Option(False, "--allow-private-network", help="allow 127.0.0.1 and LAN hosts"),
):
    """Download and resize every pair's image (img2dataset) into RUN/shards/."""
    from pydantic import ValidationError

    from curate.download.stage import download as download_stage
    from curate.options import DownloadOptions

    try:
        opts = DownloadOptions(image_size=image_size, resize_mode=resize_mode, processes=processes, threads=threads,
                               timeout=timeout, allow_private_network=allow_private_network)
    except ValidationError as exc:
        _fail(str(exc))
    _run_stage(run, "download", download_stage, run, opts)


@app.command()
def dedup(
    run: Path = typer.Argument(..., help="run folder"),
    eval_set: Optional[Path] = typer.Option(None, "--eval-set", help="folder of evaluation images to decontaminate against"),
    phash_distance: int = typer.Option(4, "--phash-distance", help="max Hamming distance of near duplicates"),
    semantic_threshold: float = typer.Option(0.95, "--semantic-threshold", help="cosine of CLIP image embeddings"),
):
    """Find exact, near, semantic and eval-set duplicates: RUN/signals/phash/ and RUN/signals/dedup/."""
    from curate.dedup.stage import dedup as dedup_stage
    from curate.options import DedupOptions

    if eval_set is not None and not eval_set.is_dir():
        _fail(f"--eval-set folder not found: {eval_set}")
    opts = DedupOptions(phash_distance=phash_distance, semantic_threshold=semantic_threshold,
                        eval_set=str(eval_set) if eval_set else None)
    _run_stage(run, "dedup", dedup_stage, run, opts)


@app.command()
def score(
    run: Path = typer.Argument(..., help="run folder"),
    model: str = typer.Option("ViT-B-32", "--model", help="open_clip architecture, hf-hub:..., or tiny-test"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="open_clip pretrained tag (default laion2b_s34b_b79k for ViT-B-32)"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="local checkpoint file"),
    device: str = typer.Option("auto", "--device", help="cpu | cuda | auto"),
    batch_size: int = typer.Option(256, "--batch-size"),
    workers: int = typer.Option(2, "--workers", help="DataLoader workers decoding images"),
):
    """CLIP-score every downloaded pair: RUN/signals/clip/ and RUN/signals/embeddings/."""
    from curate.options import ScoreOptions
    from curate.score.stage import default_pretrained, score as score_stage

    if checkpoint is not None and not checkpoint.is_file():
        _fail(f"--checkpoint file not found: {checkpoint}")
    opts = ScoreOptions(model=model, pretrained=pretrained if pretrained is not None else default_pretrained(model, checkpoint),
                        checkpoint=str(checkpoint) if checkpoint else None, device=device, batch_size=batch_size,
                        workers=workers)
    _run_stage(run, "score", score_stage, run, opts)


@app.command("filter")
def filter_cmd(
    run: Path = typer.Argument(..., help="run folder"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML with `steps:` (or a run config with a `filter:` section)"),
):
    """Decide per uid which filter steps it passes: RUN/decisions.parquet."""
    from curate.filter.stage import default_filter_config, filter_run, load_filter_config

    try:
        cfg = load_filter_config(config) if config else default_filter_config()
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    _run_stage(run, "filter", filter_run, run, cfg)


@app.command()
def export(
    run: Path = typer.Argument(..., help="run folder"),
    webdataset: bool = typer.Option(False, "--webdataset", help="also write webdataset .tar shards"),
):
    """Write the kept rows as the training corpus: RUN/corpus/."""
    from curate.export.stage import export as export_stage
    from curate.options import ExportOptions

    _run_stage(run, "export", export_stage, run, ExportOptions(webdataset=webdataset))


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., help="run config YAML"),
    run: Optional[Path] = typer.Option(None, "--run", help="run folder (default: the config's run_dir, or runs/<name>)"),
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
    try:
        run_pipeline(cfg, run_dir)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))


@app.command()
def demo(
    run: Path = typer.Option(Path("runs/demo"), "--run", help="run folder"),
    model: Optional[str] = typer.Option(None, "--model", help="open_clip model; default ViT-B-32 if its weights load, else tiny-test"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint"),
):
    """Serve the bundled sample on 127.0.0.1, then crawl, download, dedup, score, filter, export, audit and report it."""
    from pipelines.demo import run_demo

    _check_run_folder(run)
    run_demo(run, model=model, pretrained=pretrained, checkpoint=str(checkpoint) if checkpoint else None)


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
    min_count: int = typer.Option(30, "--min-count", help="cells with fewer rows are flagged"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for CIs"),
    seed: int = typer.Option(0, "--seed"),
):
    """Group signals and audit tables: RUN/signals/groups/ and RUN/audit/*.parquet."""
    from audit.run import AuditOptions, run_audit

    _run_stage(run, "audit", run_audit, run, AuditOptions(perceived=perceived, min_count=min_count, n_boot=n_boot, seed=seed))


@app.command()
def probe(
    model: str = typer.Option("ViT-B-32", "--model"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint"),
    dataset: List[str] = typer.Option(..., "--dataset", help="KIND:PATH, e.g. fairface:DIR or country:CSV (repeatable)"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    device: str = typer.Option("auto", "--device"),
    n_boot: int = typer.Option(1000, "--n-boot"),
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
