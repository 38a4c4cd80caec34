"""The `fairsift` command. Command names and flags are a public interface: keep their names.

Each command is thin: it builds the stage's options, runs the stage under the manifest's timer and prints a summary
(pipelines.cli_support). Heavy imports happen inside the commands so that `fairsift --help` stays instant. Each
command keeps its options together, stage options first, then output options (--json).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import typer  # noqa: E402

from pipelines.cli_support import (  # noqa: E402
    check_run_folder, fail, groups_stale, main as _main, model_options, next_free_port, plain_help_types, port_is_free,
    report_missing, run_stage, stage_options, warn_all,
)

from pipelines.summary import console  # noqa: E402

plain_help_types()

HELP = """fairsift builds filtered image-text training corpora and audits what each curation step does to whom.

Start with `fairsift demo`; run a whole pipeline with `fairsift run CONFIG.yaml`, or one stage at a time
(crawl or ingest, download, dedup, score, filter, export, audit, report). Reference: docs/ in the repository."""

app = typer.Typer(add_completion=False, no_args_is_help=True, help=HELP, pretty_exceptions_enable=False)

RUN_HELP = "the run folder (created if missing); every stage reads and writes its tables there"
JSON_HELP = "print the stage summary as one JSON object on stdout instead of a table"
PRIVATE_HELP = ("also fetch from private, loopback and link-local addresses (127.0.0.1, 10.x, 192.168.x, ...); "
                "refused by default")


# every stage command takes these two: where its parts run (pipelines/engines)
ENGINE_OPTION = typer.Option("local", "--engine", metavar="ENGINE",
                             help="where the parts run: local (this machine's cores) or ray (a Ray cluster)")
WORKERS_OPTION = typer.Option(None, "--engine-workers", metavar="N", min=1,
                              help="parts run at once, at most (local: processes, default every core; ray: "
                                   "actors for model work); 1 runs every part in this process")
RAY_ADDRESS_OPTION = typer.Option(None, "--ray-address", metavar="ADDRESS",
                                  help="the Ray cluster to join (auto, or HEAD:6379); without it --engine ray starts "
                                       "a local Ray instance")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"fairsift {version('fairsift')}")
        except PackageNotFoundError:
            print("fairsift (not installed: run `pip install -e .`)")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print fairsift's version and exit")):
    pass


@app.command()
def crawl(
    sources: List[str] = typer.Argument(..., metavar="SOURCE...",
                                        help="HTML files, WARC/WAT/ARC files (plain, .gz, .lz4, .zst), folders of them, "
                                             "or http(s) start URLs"),
    run: Path = typer.Option(..., "--run", metavar="RUN", help=RUN_HELP),
    max_depth: int = typer.Option(1, "--max-depth", metavar="N",
                                  help="how many links deep to follow from an http start URL (same host only)"),
    max_pages: int = typer.Option(100, "--max-pages", metavar="N", help="at most this many pages per http start URL"),
    allow_private_network: bool = typer.Option(False, "--allow-private-network", help=PRIVATE_HELP),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Extract (image URL, alt text) pairs from web pages into RUN/pairs/."""
    from curate.options import CrawlOptions
    from curate.sources.crawl import crawl as crawl_stage

    opts = stage_options(CrawlOptions, sources=list(sources), max_depth=max_depth, max_pages=max_pages,
                    allow_private_network=allow_private_network)
    run_stage(run, "crawl", crawl_stage, run, opts, json_output=json_output, engine=engine,
              ray_address=ray_address, workers=engine_workers)


@app.command()
def ingest(
    list_path: Path = typer.Argument(..., metavar="LIST",
                                     help="an existing URL list: Parquet, CSV, JSON Lines or TXT (as img2dataset reads)"),
    run: Path = typer.Option(..., "--run", metavar="RUN", help=RUN_HELP),
    url_col: str = typer.Option("url", "--url-col", metavar="COLUMN", help="the list's column that holds image URLs"),
    caption_col: Optional[str] = typer.Option("caption", "--caption-col", metavar="COLUMN",
                                              help="the list's column that holds captions (alt texts); none for a "
                                                   "list of URLs only"),
    save_additional_columns: Optional[str] = typer.Option(None, "--save-additional-columns", metavar="COLUMNS",
                                                          help="other columns of the list to keep in pairs/, "
                                                               "comma-separated (as img2dataset)"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Take an existing URL list into RUN/pairs/ instead of crawling."""
    from curate.options import IngestOptions
    from curate.sources.ingest import ingest as ingest_stage

    if not list_path.exists():
        fail(f"URL list not found: {list_path}")
    opts = stage_options(IngestOptions, path=str(list_path), url_col=url_col, caption_col=caption_col,
                         save_additional_columns=save_additional_columns)
    run_stage(run, "ingest", ingest_stage, run, opts, json_output=json_output, engine=engine,
              ray_address=ray_address, workers=engine_workers)


@app.command()
def download(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    image_size: int = typer.Option(256, "--image-size", metavar="PIXELS",
                                   help="resize every image to this size (see --resize-mode)"),
    resize_mode: str = typer.Option("border", "--resize-mode", metavar="MODE",
                                    help="border (pad to a square), center_crop, keep_ratio, keep_ratio_largest, "
                                         "or no (keep the original size)"),
    processes: int = typer.Option(1, "--processes", metavar="N",
                                  help="parts downloaded at once by the local engine (one process each)"),
    threads: int = typer.Option(32, "--threads", metavar="N", help="concurrent downloads within a part"),
    timeout: int = typer.Option(10, "--timeout", metavar="SECONDS",
                                help="give up on a connection or a read after this long"),
    allow_private_network: bool = typer.Option(False, "--allow-private-network", help=PRIVATE_HELP),
    retries: int = typer.Option(0, "--retries", metavar="N",
                                help="retries of timeouts, resets and 500/502/504 answers (never of dead hosts)"),
    user_agent: Optional[str] = typer.Option(None, "--user-agent", metavar="TEXT",
                                             help="the User-Agent sent; it must hold a contact URL or e-mail"),
    contact: Optional[str] = typer.Option(None, "--contact", metavar="URL_OR_EMAIL",
                                          help="a contact put in the default User-Agent, so site owners can reach you"),
    ignore_robots_txt: bool = typer.Option(False, "--ignore-robots-txt",
                                           help="do not fetch or obey the image hosts' robots.txt"),
    per_host_concurrency: int = typer.Option(8, "--per-host-concurrency", metavar="N",
                                             help="at most this many requests in flight to one host"),
    per_host_rps: Optional[float] = typer.Option(None, "--per-host-rps", metavar="RATE",
                                                 help="at most this many requests per second to one host"),
    host_failure_limit: int = typer.Option(3, "--host-failure-limit", metavar="N",
                                           help="after this many failed connections in a row a host is given up "
                                                "(its rows get status host_unreachable)"),
    allow_domain: Optional[List[str]] = typer.Option(None, "--allow-domain", metavar="DOMAIN",
                                                     help="download only from this domain and its subdomains "
                                                          "(repeatable)"),
    block_domain: Optional[List[str]] = typer.Option(None, "--block-domain", metavar="DOMAIN",
                                                     help="never download from this domain or its subdomains "
                                                          "(repeatable)"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Download and resize every pair's image (img2dataset's resizer) into RUN/shards/."""
    from curate.download.stage import download as download_stage
    from curate.options import DownloadOptions

    extra = {"contact": contact} if contact else {}
    opts = stage_options(DownloadOptions, image_size=image_size, resize_mode=resize_mode, processes=processes,
                         threads=threads, timeout=timeout, allow_private_network=allow_private_network,
                         retries=retries, user_agent=user_agent, respect_robots_txt=not ignore_robots_txt,
                         per_host_concurrency=per_host_concurrency, per_host_rps=per_host_rps,
                         host_failure_limit=host_failure_limit, allowed_domains=list(allow_domain or []),
                         blocked_domains=list(block_domain or []), **extra)
    run_stage(run, "download", download_stage, run, opts, json_output=json_output, engine=engine,
              ray_address=ray_address,
              workers=engine_workers if engine_workers is not None
              else processes if engine == "local" and processes > 1 else None)


@app.command()
def dedup(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    eval_set: Optional[Path] = typer.Option(None, "--eval-set", metavar="DIR",
                                            help="a folder of evaluation images: training pairs that match one are "
                                                 "marked (decontamination)"),
    phash_distance: int = typer.Option(4, "--phash-distance", metavar="BITS",
                                       help="images whose perceptual hashes differ in at most this many bits are "
                                            "near duplicates"),
    semantic_threshold: float = typer.Option(0.95, "--semantic-threshold", metavar="COSINE",
                                             help="images whose CLIP embeddings have at least this cosine similarity "
                                                  "are semantic duplicates"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Find exact, near, semantic and eval-set duplicates: RUN/signals/phash/ and RUN/signals/dedup/."""
    from curate.dedup.stage import dedup as dedup_stage
    from curate.options import DedupOptions

    if eval_set is not None and not eval_set.is_dir():
        fail(f"--eval-set folder not found: {eval_set}")
    opts = stage_options(DedupOptions, phash_distance=phash_distance, semantic_threshold=semantic_threshold,
                    eval_set=str(eval_set) if eval_set else None)
    run_stage(run, "dedup", dedup_stage, run, opts, json_output=json_output, engine=engine,
              ray_address=ray_address, workers=engine_workers)


MODEL_HELP = "the CLIP model: an open_clip architecture (ViT-B-32), hf-hub:ORG/REPO, or tiny-test (tests only)"
PRETRAINED_HELP = "which trained weights of the architecture (open_clip's tag, e.g. laion2b_s34b_b79k or openai)"
CHECKPOINT_HELP = "a local weights file to load into the architecture instead of downloading weights"
DEVICE_HELP = "where the model runs: cpu, cuda, or auto (cuda when available)"


@app.command()
def score(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    model: str = typer.Option("ViT-B-32", "--model", metavar="NAME", help=MODEL_HELP),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", metavar="TAG",
                                             help=PRETRAINED_HELP + "; default laion2b_s34b_b79k for ViT-B-32"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", metavar="FILE", help=CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    batch_size: int = typer.Option(256, "--batch-size", metavar="N", help="pairs encoded at once"),
    workers: int = typer.Option(2, "--workers", metavar="N", help="threads decoding images while the model runs"),
    decode: str = typer.Option("tensor", "--decode", metavar="PATH",
                               help="tensor (batched JPEG decode, on the GPU with CUDA) or pil (PIL in DataLoader "
                                    "workers)"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """CLIP-score every downloaded pair: RUN/signals/clip/ and RUN/signals/embeddings/."""

    from curate.options import ScoreOptions
    from curate.score.stage import score as score_stage

    opts = stage_options(ScoreOptions, **model_options(model, pretrained, checkpoint), device=device,
                    batch_size=batch_size, workers=workers, decode=decode)
    run_stage(run, "score", score_stage, run, opts, json_output=json_output, engine=engine,
              ray_address=ray_address, workers=engine_workers)


@app.command("filter")
def filter_cmd(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE",
                                          help="a YAML file with a `steps:` list (or a run config with a `filter:` "
                                               "section); default: dedup, basic, clip_top_fraction 0.3"),
    preset: Optional[str] = typer.Option(None, "--preset", metavar="NAME",
                                         help="a published baseline instead of --config: datacomp-basic, "
                                              "datacomp-clip-score, datacomp-basic-clip-score or laion-400m"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Decide for every pair which filter steps it passes: RUN/decisions.parquet (nothing is deleted)."""
    from curate.filter.stage import FilterConfig, default_filter_config, filter_run, load_filter_config

    if config is not None and preset is not None:
        fail("give --config or --preset, not both")
    try:
        if preset is not None:
            from curate.filter.presets import preset as named_preset

            named_preset(preset)  # an unknown name fails here with the list of presets, not pydantic's dump
        cfg = load_filter_config(config) if config else FilterConfig(preset=preset) if preset else default_filter_config()
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if "groups" in cfg.required_tables() and groups_stale(run):
        # group parity needs the group signals; compute them here as `fairsift run` does (the audit rewrites them)
        from audit.signals import build_group_signals

        run_stage(run, "groups", build_group_signals, run, json_output=json_output, engine=engine,
              ray_address=ray_address, workers=engine_workers)
    counts = run_stage(run, "filter", filter_run, run, cfg, json_output=json_output, engine=engine,
                       ray_address=ray_address, workers=engine_workers)
    if isinstance(counts.get("preset"), dict) and counts["preset"].get("model_note") and not json_output:
        console.print(f"preset {cfg.preset}: {counts['preset']['model_note']}", highlight=False, soft_wrap=True)


@app.command()
def export(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    webdataset: bool = typer.Option(False, "--webdataset", help="also write webdataset .tar shards to "
                                                                "RUN/corpus_webdataset/"),
    format: str = typer.Option("fairsift", "--format", metavar="FORMAT",  # noqa: A002
                               help="fairsift, or img2dataset: also write RUN/img2dataset/ in img2dataset's own layout"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Write the kept pairs as the training corpus: RUN/corpus/."""
    from curate.export.stage import export as export_stage
    from curate.options import ExportOptions

    if format not in ("fairsift", "img2dataset"):
        fail(f"--format must be fairsift or img2dataset, not {format!r}")
    run_stage(run, "export", export_stage, run, ExportOptions(webdataset=webdataset, format=format),
              json_output=json_output, engine=engine, ray_address=ray_address, workers=engine_workers)


@app.command("run")
def run_cmd(
    config: Path = typer.Argument(..., metavar="CONFIG", help="the run config (YAML): one section per stage; see "
                                                              "docs/config.md"),
    run: Optional[Path] = typer.Option(None, "--run", metavar="RUN",
                                       help="the run folder; default: the config's `run_dir`, else runs/NAME where NAME "
                                            "is the config's `name` or its file name"),
    engine: Optional[str] = typer.Option(None, "--engine", metavar="ENGINE",
                                         help="where the parts run: local or ray (default: the config's `engine` "
                                              "section, else local)"),
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    from_stage: Optional[str] = typer.Option(None, "--from", metavar="STAGE",
                                             help="redo this stage and every later one, even if nothing changed"),
    force: List[str] = typer.Option([], "--force", metavar="STAGE",
                                    help="redo this stage even if nothing changed (repeatable)"),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="say which stages would run or be skipped, and why; run nothing"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON object per stage on stdout"),
):
    """Run every stage from one config; a rerun skips what is already done and resumes what was interrupted."""
    from pipelines.config import ConfigError, load_config
    from pipelines.runner import run_pipeline
    from pipelines.summary import set_json_output

    set_json_output(json_output)
    try:
        cfg = load_config(config)
    except ConfigError as exc:
        fail(str(exc))
    run_dir = run or Path(cfg.run_dir or Path("runs") / (cfg.name or config.stem))
    check_run_folder(run_dir)
    if engine is not None or ray_address is not None:
        cfg.engine.name = engine or ("ray" if ray_address else cfg.engine.name)
        cfg.engine.address = ray_address if ray_address is not None else cfg.engine.address
    if engine_workers is not None:
        cfg.engine.workers = engine_workers
    from pipelines.engines import EngineError

    try:
        run_pipeline(cfg, run_dir, force=tuple(force), from_stage=from_stage, dry_run=dry_run)
    except (OSError, ValueError, EngineError) as exc:
        fail(str(exc))


@app.command()
def demo(
    run: Path = typer.Option(Path("runs/demo"), "--run", metavar="RUN",
                             help="the run folder for the demo (replaced if it holds an earlier demo)"),
    model: Optional[str] = typer.Option(None, "--model", metavar="NAME",
                                        help=MODEL_HELP + "; default ViT-B-32 if its weights load, else tiny-test"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", metavar="TAG", help=PRETRAINED_HELP),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", metavar="FILE", help=CHECKPOINT_HELP),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
):
    """Serve the bundled sample on 127.0.0.1, then crawl, download, dedup, score, filter, export, audit and report it."""
    from pipelines.demo import run_demo

    check_run_folder(run)
    if model is not None:
        model_options(model, pretrained, checkpoint)
    run_demo(run, model=model, pretrained=pretrained, checkpoint=str(checkpoint) if checkpoint else None,
             engine=engine, ray_address=ray_address, workers=engine_workers)


@app.command()
def sql(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    query: str = typer.Argument(..., metavar="QUERY",
                                help="one SELECT over the run's tables: pairs, shards, clip, embeddings, phash, dedup, "
                                     "groups, decisions, corpus, audit_NAME, probe_NAME (those that exist)"),
    format: str = typer.Option("table", "--format", metavar="FORMAT",  # noqa: A002
                               help="table (aligned text), csv, json (one array) or jsonl (one object a line)"),
):
    """Query the run's tables with DuckDB, read-only; every table is a view named after it."""
    from pipelines.sql import FORMATS, SqlError, format_result, run_query

    if format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    try:
        result = run_query(run, query)
    except SqlError as exc:
        fail(str(exc))
    format_result(result, format, sys.stdout)


@app.command()
def audit(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    perceived: bool = typer.Option(False, "--perceived", help="also estimate perceived gender presentation and age on "
                                                              "images of people (CLIP zero-shot; signals, not identities)"),
    min_count: int = typer.Option(30, "--min-count", metavar="N",
                                  help="groups with fewer rows are shown and flagged but not judged (no four-fifths "
                                       "test, never the reference group)"),
    n_boot: int = typer.Option(1000, "--n-boot", metavar="N",
                               help="bootstrap draws of the co-occurrence (nPMI) intervals; rates, ratios and "
                                    "four-fifths tests use exact intervals and need none"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="random seed of the bootstrap, for repeatable intervals"),
    engine: str = ENGINE_OPTION,
    ray_address: Optional[str] = RAY_ADDRESS_OPTION,
    engine_workers: Optional[int] = WORKERS_OPTION,
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Group signals and bias audit tables: RUN/signals/groups/ and RUN/audit/*.parquet."""
    from audit.run import AuditOptions, run_audit

    run_stage(run, "audit", run_audit, run, AuditOptions(perceived=perceived, min_count=min_count, n_boot=n_boot,
                                                         seed=seed), json_output=json_output, engine=engine,
              ray_address=ray_address, workers=engine_workers)


@app.command()
def probe(
    dataset: List[str] = typer.Option(..., "--dataset", metavar="KIND:PATH",
                                      help="a probe dataset, repeatable: fairface:DIR (a folder of images with "
                                           "labels.csv) or country:CSV (columns file, country); see docs/probes.md"),
    out: Path = typer.Option(..., "--out", metavar="DIR", help="where the probe tables go (RUN/probes for a run's "
                                                                "report and dashboard)"),
    model: str = typer.Option("ViT-B-32", "--model", metavar="NAME", help=MODEL_HELP),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", metavar="TAG", help=PRETRAINED_HELP),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", metavar="FILE", help=CHECKPOINT_HELP),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help=DEVICE_HELP),
    n_boot: int = typer.Option(1000, "--n-boot", metavar="N",
                               help="bootstrap resamples of the WEAT effect-size and fairness-difference intervals "
                                    "(rates use exact intervals)"),
    seed: int = typer.Option(0, "--seed", metavar="N", help="random seed of the bootstrap"),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Zero-shot probes of a CLIP model per group: FairFace accuracy, harmful labels, geography, associations."""
    from audit.probes import ProbeOptions, run_probes
    from pipelines.summary import print_stage_summary, set_json_output

    opts = stage_options(ProbeOptions, **model_options(model, pretrained, checkpoint), datasets=list(dataset),
                    device=device, n_boot=n_boot, seed=seed)
    set_json_output(json_output)
    try:
        counts = run_probes(opts, out)  # the probe folder has its own manifest.json, written by run_probes
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if json_output:
        print_stage_summary("probe", counts or {})


@app.command()
def report(
    run: Path = typer.Argument(..., metavar="RUN", help=RUN_HELP),
    json_output: bool = typer.Option(False, "--json", help=JSON_HELP),
):
    """Static report: RUN/report/index.html, figures/*.png and summary.json."""
    from reports.build import build_report

    if not run.is_dir():
        fail(f"run folder not found: {run}")
    missing, notes = report_missing(run)
    if missing:
        fail(f"the report needs tables this run does not have yet: {'; '.join(missing)}")
    warn_all(notes)
    run_stage(run, "report", build_report, run, json_output=json_output)


@app.command()
def search(
    run: Path = typer.Argument(..., help="run folder"),
    text: Optional[str] = typer.Option(None, "--text", help="find pairs whose images match this text"),
    image: Optional[Path] = typer.Option(None, "--image", help="find pairs whose images look like this image file"),
    uid: Optional[str] = typer.Option(None, "--uid", help="find pairs like this pair of the run"),
    k: int = typer.Option(20, "-k", help="how many pairs"),
    kept_only: bool = typer.Option(False, "--kept-only", help="only pairs the filter kept"),
    against: str = typer.Option("image", "--against", help="compare with the stored image (default) or text embeddings"),
    format: str = typer.Option("table", "--format", help="table | json"),  # noqa: A002
    model: Optional[str] = typer.Option(None, "--model", help="load this model for text/image queries instead of the run's"),
    pretrained: Optional[str] = typer.Option(None, "--pretrained", help="with --model: open_clip pretrained tag"),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="with --model: local checkpoint file"),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto, for encoding the query"),
):
    """Nearest pairs by cosine over the run's CLIP embeddings (a faiss index, built once per run)."""
    import json

    from curate.search.query import ModelSpec, search as search_run
    from curate.tables import MissingTableError

    check_run_folder(run)
    if format not in ("table", "json"):
        fail(f"--format must be table or json, not {format!r}")
    if against not in ("image", "text"):
        fail(f"--against must be image or text, not {against!r}")
    spec = ModelSpec(model, pretrained, str(checkpoint) if checkpoint else None) if model else None
    try:
        result = search_run(run, text=text, image=image, uid=uid, k=k, kept_only=kept_only, against=against,
                            model=spec, device=device)
    except (MissingTableError, FileNotFoundError, ValueError) as exc:
        fail(str(exc))
    if format == "json":
        sys.stdout.write(json.dumps({**result.info, "results": result.table.to_pylist()}, ensure_ascii=False,
                                    default=str) + "\n")
        return
    from pipelines.sql import format_result

    if result.info.get("index_rebuilt"):
        console.print(f"search index built: {result.info['index']}", highlight=False, soft_wrap=True)
    if result.info.get("note"):
        console.print(f"[bold yellow]note:[/] {result.info['note']}", highlight=False, soft_wrap=True)
    format_result(result.table, "table", sys.stdout)


@app.command()
def dashboard(
    runs: List[Path] = typer.Argument(..., metavar="RUN [RUN2]",
                                      help="one run folder, or two: a second run turns on the Compare page"),
    port: Optional[int] = typer.Option(None, "--port", metavar="PORT",
                                       help="port on 127.0.0.1; default 8501, or the next free one"),
):
    """Start the dashboard (Streamlit) on 127.0.0.1 and print its URL."""
    from dashboards.launch import launch

    if not 1 <= len(runs) <= 2:
        fail("give one run folder, or two to compare")
    for r in runs:
        if not r.is_dir():
            fail(f"run folder not found: {r}")
    if port is None:
        port = 8501 if port_is_free(8501) else next_free_port(8501)
        if port is None:
            fail("no free port in 8501-8601 on 127.0.0.1; pass --port PORT")
    elif not port_is_free(port):
        free = next_free_port(port)
        fail(f"port {port} on 127.0.0.1 is in use by another program; pass another --port"
             + (f" (e.g. --port {free}, free now)" if free else ""))
    raise typer.Exit(launch(runs, port=port))


def main() -> None:
    _main(app)


if __name__ == "__main__":
    main()
