"""Looking at a run folder for the fault-injection harness (tests/chaos_harness.py): its tables compared with a
clean run's (sorted by uid, image bytes included, NaN equal to NaN), duplicate and missing uids, temporary files,
manifest entries, and snapshots that show whether anything changed."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.parquet as pq

STAGES = ("download", "dedup", "score", "filter", "export", "audit")
# the folders (or files) each stage writes, for "how far had it got when it was killed"
RUN_TARGET = "run"  # `fairsift run CONFIG`: the whole pipeline killed and resumed as one command
STAGE_OUTPUTS = {
    "download": ("shards",), "dedup": ("signals/phash", "signals/dedup"),
    "score": ("signals/clip", "signals/embeddings"), "filter": ("decisions.parquet", "signals/lang"),
    "export": ("corpus", "corpus_webdataset"), "audit": ("audit", "signals/groups"),
}
STAGE_OUTPUTS[RUN_TARGET] = ("pairs",) + tuple(rel for outputs in STAGE_OUTPUTS.values() for rel in outputs)
# manifest counts that describe what one invocation did rather than the table it left (a resumed run skips parts)
VOLATILE_COUNT = re.compile(r"parts_|skipped|written|rebuilt|redone|resumed|todo|reused|cached|seconds|elapsed|per_s$")

def temp_entries(run_dir: Path) -> list[str]:
    """Temporary files or folders (a name starting with .tmp) anywhere in the run folder."""
    return sorted(str(p.relative_to(run_dir)) for p in Path(run_dir).rglob(".tmp*"))


def stage_temp_entries(run_dir: Path, stage: str) -> set[str]:
    """The temporary files in the run folder and the stage's output folders right now (cheap enough to poll)."""
    found = set()
    for folder in {Path(run_dir)} | {(Path(run_dir) / rel).parent if rel.endswith(".parquet") else Path(run_dir) / rel
                                     for rel in STAGE_OUTPUTS[stage]}:
        try:
            with os.scandir(folder) as it:
                found.update(e.path for e in it if e.name.startswith(".tmp"))
        except OSError:
            continue
    return found


def output_part_count(run_dir: Path, stage: str) -> int:
    n = 0
    for rel in STAGE_OUTPUTS[stage]:
        path = run_dir / rel
        if path.is_file():
            n += 1
        elif path.is_dir():
            n += sum(1 for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_")))
    return n


def _canon(value):
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, (list, tuple)):
        return tuple(_canon(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _canon(v)) for k, v in value.items()))
    return value


def table_groups(run_dir: Path) -> dict[str, list[Path]]:
    """Every Parquet table of a run folder: a folder of part files is one table, any other .parquet file is one."""
    groups: dict[str, list[Path]] = {}
    for path in sorted(Path(run_dir).rglob("*.parquet")):
        rel = path.relative_to(run_dir)
        if any(p.startswith(".") for p in rel.parts):
            continue
        key = str(rel.parent) if path.name.startswith("part-") else str(rel)
        groups.setdefault(key, []).append(path)
    return groups


def read_group(paths: list[Path]) -> pa.Table:
    tables_ = [pq.read_table(p) for p in paths]
    table = pa.concat_tables(tables_, promote_options="default") if len(tables_) > 1 else tables_[0]
    return table.replace_schema_metadata(None)


def sorted_rows(table: pa.Table) -> list[tuple]:
    """Rows as comparable tuples (NaN equal to NaN), sorted by uid when the table has one, else by the whole row."""
    rows = [tuple((k, _canon(v)) for k, v in row.items()) for row in table.to_pylist()]
    if "uid" in table.column_names:
        return sorted(rows, key=lambda r: (str(dict(r)["uid"]), repr(r)))
    return sorted(rows, key=repr)


def uid_problems(name: str, ref: pa.Table, got: pa.Table) -> list[str]:
    problems = []
    if "uid" not in got.column_names:
        return problems
    uids = got.column("uid").to_pylist()
    dups = len(uids) - len(set(uids))
    if dups:
        problems.append(f"{name}: {dups} duplicate uid(s)")
    if "uid" in ref.column_names:
        missing = set(ref.column("uid").to_pylist()) - set(uids)
        extra = set(uids) - set(ref.column("uid").to_pylist())
        if missing:
            problems.append(f"{name}: {len(missing)} uid(s) missing, e.g. {sorted(missing)[0]}")
        if extra:
            problems.append(f"{name}: {len(extra)} uid(s) not in the clean run, e.g. {sorted(extra)[0]}")
    return problems


def compare_table(name: str, ref: pa.Table, got: pa.Table) -> list[str]:
    problems = uid_problems(name, ref, got)
    if ref.schema != got.schema:
        problems.append(f"{name}: schema differs: {got.schema} vs clean {ref.schema}")
        return problems
    a, b = sorted_rows(ref), sorted_rows(got)
    if a != b:
        if len(a) != len(b):
            problems.append(f"{name}: {len(b)} rows, the clean run has {len(a)}")
        else:
            diff = [(dict(x), dict(y)) for x, y in zip(a, b) if x != y]
            x, y = diff[0]
            cols = sorted(k for k in x if x[k] != y.get(k))
            problems.append(f"{name}: {len(diff)} row(s) differ after sorting by uid, e.g. uid {x.get('uid')} in "
                            f"column(s) {cols}")
    return problems


def compare_runs(ref_dir: Path, got_dir: Path, stages: Optional[tuple[str, ...]]) -> list[str]:
    """Everything that differs between a resumed run folder and the clean one: tables (sorted by uid, image bytes
    included), other files byte for byte, temp files, and the manifest entries of `stages` (None: every stage the
    clean run's manifest has)."""
    problems: list[str] = []
    ref_groups, got_groups = table_groups(ref_dir), table_groups(got_dir)
    for name in sorted(set(ref_groups) | set(got_groups)):
        if name not in got_groups:
            problems.append(f"{name}: missing (the clean run has it)")
        elif name not in ref_groups:
            problems.append(f"{name}: present, but not in the clean run")
        else:
            ref_parts = [p.name for p in ref_groups[name]]
            got_parts = [p.name for p in got_groups[name]]
            if ref_parts != got_parts:
                problems.append(f"{name}: part files {got_parts} differ from the clean run's {ref_parts}")
            problems += compare_table(name, read_group(ref_groups[name]), read_group(got_groups[name]))
    problems += compare_other_files(ref_dir, got_dir)
    leftovers = temp_entries(got_dir)
    if leftovers:
        problems.append(f"temporary files left: {leftovers[:5]}{' ...' if len(leftovers) > 5 else ''}")
    problems += compare_manifests(ref_dir, got_dir, stages)
    return problems


def _other_files(run_dir: Path) -> dict[str, Path]:
    found = {}
    for path in Path(run_dir).rglob("*"):
        rel = path.relative_to(run_dir)
        if path.is_file() and path.suffix != ".parquet" and rel.name != "manifest.json" \
                and not any(p.startswith(".tmp") for p in rel.parts):
            found[str(rel)] = path
    return found


def compare_other_files(ref_dir: Path, got_dir: Path) -> list[str]:
    """Non-Parquet outputs (webdataset tars, bookkeeping JSON) must be byte-identical too."""
    problems = []
    ref, got = _other_files(ref_dir), _other_files(got_dir)
    for rel in sorted(set(ref) | set(got)):
        if rel not in got:
            problems.append(f"{rel}: missing (the clean run has it)")
        elif rel not in ref:
            problems.append(f"{rel}: present, but not in the clean run")
        elif ref[rel].read_bytes() != got[rel].read_bytes():
            problems.append(f"{rel}: bytes differ from the clean run's")
    return problems


def stable_counts(counts) -> object:
    if isinstance(counts, dict):
        return {k: stable_counts(v) for k, v in counts.items() if not VOLATILE_COUNT.search(k)}
    return counts


def compare_manifests(ref_dir: Path, got_dir: Path, stages: Optional[tuple[str, ...]]) -> list[str]:
    problems = []
    try:
        ref = json.loads((ref_dir / "manifest.json").read_text())
        got = json.loads((got_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return [f"manifest.json unreadable: {exc}"]
    for stage in stages if stages is not None else tuple(ref.get("stages", {})):
        entry = got.get("stages", {}).get(stage)
        ref_entry = ref.get("stages", {}).get(stage, {})
        if not entry:
            problems.append(f"manifest: no entry for {stage}")
            continue
        if entry.get("status") != "done":
            problems.append(f"manifest: {stage} status {entry.get('status')!r}, not 'done'")
        if stable_counts(entry.get("counts")) != stable_counts(ref_entry.get("counts")):
            problems.append(f"manifest: {stage} counts {stable_counts(entry.get('counts'))} differ from the clean "
                            f"run's {stable_counts(ref_entry.get('counts'))}")
    return problems


def copy_run(src: Path, dst: Path) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


def tree_snapshot(run_dir: Path) -> dict[str, tuple]:
    """Every file and folder of a run folder with its size, mode and content hash: "nothing changed" compares two."""
    snap = {}
    for path in sorted(Path(run_dir).rglob("*")):
        rel = str(path.relative_to(run_dir))
        st = path.lstat()
        digest = hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest() if path.is_file() else None
        snap[rel] = (st.st_mode, st.st_size if path.is_file() else None, st.st_mtime_ns if path.is_file() else None,
                     digest)
    return snap


def part_integrity_problems(run_dir: Path, clean: Path) -> list[str]:
    """Every Parquet file must read back whole and hold the same rows as the clean run's file of that name."""
    problems = []
    for path in sorted(Path(run_dir).rglob("*.parquet")):
        rel = path.relative_to(run_dir)
        if path.name.startswith("."):
            continue
        try:
            table = pq.read_table(path).replace_schema_metadata(None)
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            problems.append(f"{rel}: unreadable ({type(exc).__name__}: {exc})")
            continue
        if not (clean / rel).is_file():
            problems.append(f"{rel}: not a file the clean run wrote")
        elif sorted_rows(table) != sorted_rows(pq.read_table(clean / rel).replace_schema_metadata(None)):
            problems.append(f"{rel}: rows differ from the clean run's (half written?)")
    return problems


