"""Speed and memory of the filter-impact audit at scale: counts by DuckDB over the run's parts (what `fairsift audit`
does) against two baselines measured in the same run, each in its own process (peak RSS per process):

- bare scan: DuckDB joining decisions with signals/groups and counting rows, nothing else (the floor);
- pandas frame: the previous design, both tables read into pandas, merged, grouped.

    python benchmarks/bench_audit.py                       # 2,000,000 rows x 7 steps x 30 groups in 8 parts
    python benchmarks/bench_audit.py --rows 20000000       # larger; the pandas baseline grows with rows, ours not

The audit's own memory is DuckDB's (capped by --memory-limit, spilled beyond) plus the cell tables
(groups x 2^steps cells), so its peak RSS should stay flat as rows grow while the pandas frame's grows linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from curate.tables import write_part, write_table  # noqa: E402


def write_synthetic_run(run_dir: Path, n_rows: int, n_steps: int, n_groups: int, parts: int, seed: int) -> None:
    """decisions (one file, as the filter writes it today) and signals/groups in `parts` parts; a `country`
    attribute of n_groups Zipf-sized groups whose pass rates differ per step."""
    rng = np.random.default_rng(seed)
    sizes = 1.0 / np.arange(1, n_groups + 1)
    steps = ["download"] + [f"step{i}" for i in range(1, n_steps)]
    rates = {s: rng.uniform(0.6, 0.97, size=n_groups) for s in steps}
    decisions = []
    for part in range(parts):
        n = n_rows // parts + (1 if part < n_rows % parts else 0)
        codes = rng.choice(n_groups, size=n, p=sizes / sizes.sum())
        uids = np.char.add(f"p{part}-", np.arange(n).astype(str))
        write_part(run_dir, "groups", part, pa.table({"uid": uids, "country": np.array([f"C{c:02d}" for c in range(n_groups)])[codes]}))
        passes = {f"pass_{s}": rng.random(n) < rates[s][codes] for s in steps}
        kept = np.logical_and.reduce(list(passes.values()))
        decisions.append(pa.table({"uid": uids, **passes, "kept": kept}))
    write_table(run_dir, "decisions", pa.concat_tables(decisions))


def measure(kind: str, run_dir: Path, memory_limit: str) -> dict:
    start = time.perf_counter()
    if kind == "fairsift":
        from audit.counts import connect, cube_from_sql
        from audit.impact import impact_from_cubes

        con = connect(run_dir, memory_limit, tables=("decisions", "groups"))
        steps = [c[5:] for c in [r[0] for r in con.execute("describe decisions").fetchall()] if c.startswith("pass_")]
        rows = len(impact_from_cubes([cube_from_sql(con, steps, "country")], min_count=30))
    elif kind == "bare":
        from audit.counts import connect

        con = connect(run_dir, memory_limit, tables=("decisions", "groups"))
        rows = con.execute("select count(*) from decisions d left join groups g using (uid)").fetchall()[0][0]
    else:

        from curate.tables import read_table

        frame = read_table(run_dir, "decisions").to_pandas().merge(read_table(run_dir, "groups").to_pandas(),
                                                                   on="uid", how="left")
        passes = [c for c in frame.columns if c.startswith("pass_")]
        rows = len(frame.groupby(["country", *passes, "kept"]).size())
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "seconds": seconds, "peak_rss_mb": peak_mb, "rows": int(rows)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--steps", type=int, default=7, help="filter steps, the download included")
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--memory-limit", default="1GB", help="DuckDB's memory limit for the audit counts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", choices=["fairsift", "bare", "pandas"], help=argparse.SUPPRESS)
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.measure:  # a child process: one measurement, JSON on stdout
        print(json.dumps(measure(args.measure, args.run, args.memory_limit)))
        return

    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        write_synthetic_run(run_dir, args.rows, args.steps, args.groups, args.parts, args.seed)
        print(f"rows={args.rows:,} steps={args.steps} groups={args.groups} parts={args.parts} "
              f"memory_limit={args.memory_limit} cpus={os.cpu_count()}")
        results = {}
        for kind in ("bare", "fairsift", "pandas"):
            out = subprocess.run([sys.executable, __file__, "--measure", kind, "--run", str(run_dir),
                                  "--memory-limit", args.memory_limit], capture_output=True, text=True, check=True)
            results[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{'':28s}{'seconds':>10s}{'peak RSS MB':>14s}")
        for kind, label in (("bare", "bare DuckDB join + count"), ("fairsift", "fairsift filter impact"),
                            ("pandas", "pandas frame (old design)")):
            r = results[kind]
            print(f"{label:28s}{r['seconds']:10.2f}{r['peak_rss_mb']:14.0f}")
        f, b, p = results["fairsift"], results["bare"], results["pandas"]
        print(f"fairsift / bare scan: time {f['seconds'] / b['seconds']:.2f}x, memory {f['peak_rss_mb'] / b['peak_rss_mb']:.2f}x")
        print(f"pandas frame / fairsift: time {p['seconds'] / f['seconds']:.2f}x, memory "
              f"{p['peak_rss_mb'] / f['peak_rss_mb']:.2f}x")


if __name__ == "__main__":
    main()
