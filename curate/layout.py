"""The run folder's layout: where every table lives, which stage writes it, and how it is seen as a DuckDB view.

This is the one place that knows the layout (ARCHITECTURE.md, "The run folder"). The table I/O (curate.tables),
the runner, the CLI and `fairsift sql` read it from here; the dashboard, which may not import curate, reads a copy
of its plain data (`dashboards/run_layout.json`, written by `python -m curate.layout`; a test keeps the two equal).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

# table name -> path relative to the run folder; a name ending in ".parquet" is a single file, else a folder of parts
TABLE_PATHS: dict[str, str] = {
    "pairs": "pairs",
    "shards": "shards",
    "clip": "signals/clip",
    "embeddings": "signals/embeddings",
    "phash": "signals/phash",
    "dedup": "signals/dedup",
    "lang": "signals/lang",
    "groups": "signals/groups",
    "perceived": "signals/perceived",
    "decisions": "decisions.parquet",
    "corpus": "corpus",
}

# which command creates each table, for error messages that tell the user what to run
CREATED_BY: dict[str, str] = {
    "pairs": "fairsift crawl / fairsift ingest",
    "shards": "fairsift download",
    "clip": "fairsift score",
    "embeddings": "fairsift score",
    "phash": "fairsift dedup",
    "dedup": "fairsift dedup",
    "lang": "fairsift filter",
    "groups": "fairsift audit",
    "perceived": "fairsift audit --perceived",
    "decisions": "fairsift filter",
    "corpus": "fairsift export",
}

AUDIT_DIR = "audit"  # audit/<analysis>.parquet, each a view audit_<analysis>
PROBES_DIR = "probes"  # probes/<probe>.parquet, each a view probe_<probe>
REPORT_DIR = "report"
WEBDATASET_DIR = "corpus_webdataset"
DECISION_PARTS_DIR = "decisions_parts"  # the filter's per-part decisions; decisions.parquet is their merge
IMG2DATASET_DIR = "img2dataset"  # `fairsift export --format img2dataset`: img2dataset's own output layout
SEARCH_INDEX_DIR = "search_index"  # `fairsift search`: the faiss index of signals/embeddings, built once per run
MANIFEST = "manifest.json"

# what each stage of `fairsift run` writes (paths relative to the run folder). signals/dedup belongs to the second
# dedup pass and signals/groups to the groups stage, so that no two stages claim one path
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "crawl": ("pairs",), "ingest": ("pairs",), "download": ("shards",), "dedup": ("signals/phash",),
    "score": ("signals/clip", "signals/embeddings"), "dedup_semantic": ("signals/dedup",),
    "groups": ("signals/groups",), "filter": ("decisions.parquet", DECISION_PARTS_DIR),
    "export": ("corpus", WEBDATASET_DIR, IMG2DATASET_DIR),
    "audit": (AUDIT_DIR,), "probe": (PROBES_DIR,), "report": (REPORT_DIR,),
}

# prefix of the views of the folders of single-file tables
FOLDER_VIEW_PREFIXES: dict[str, str] = {AUDIT_DIR: "audit_", PROBES_DIR: "probe_"}


def table_path(run_dir: str | os.PathLike, table: str) -> Path:
    return Path(run_dir) / TABLE_PATHS.get(table, table)


def view_name(prefix: str, file_stem: str) -> str:
    """audit/filter_impact.parquet -> audit_filter_impact, probes/probe_fairface.parquet -> probe_fairface (the prefix
    is not doubled): a view name that needs no quoting."""
    stem = re.sub(r"\W", "_", file_stem)
    return stem if stem.startswith(prefix) else prefix + stem


def view_files(run_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """view name -> the Parquet files behind it, for every table the run folder has (nothing for missing ones)."""
    run_dir = Path(run_dir)
    views: dict[str, list[Path]] = {}
    for name, rel in TABLE_PATHS.items():
        path = run_dir / rel
        if rel.endswith(".parquet"):
            files = [path] if path.is_file() else []
        else:
            files = sorted(p for p in path.glob("part-*.parquet") if p.is_file()) if path.is_dir() else []
        if files:
            views[name] = files
    for folder, prefix in FOLDER_VIEW_PREFIXES.items():
        for path in sorted((run_dir / folder).glob("*.parquet")):
            views[view_name(prefix, path.stem)] = [path]
    return views


def plain_layout() -> dict:
    """The layout as plain JSON data, for readers that may not import curate (the dashboard)."""
    return {
        "tables": TABLE_PATHS,
        "created_by": CREATED_BY,
        "folder_view_prefixes": FOLDER_VIEW_PREFIXES,
        "audit_dir": AUDIT_DIR,
        "probes_dir": PROBES_DIR,
        "manifest": MANIFEST,
    }


if __name__ == "__main__":
    json.dump(plain_layout(), sys.stdout, indent=1)
    sys.stdout.write("\n")
