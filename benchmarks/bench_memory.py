"""Peak memory of each stage on a small and a large run: a stage streams part by part, so its peak RSS must not grow
with the run (goal: ratio <= 1.2 between 400k and 20k rows, and <= 2 GB).

Every stage runs as the CLI a user types, in its own process; the peak is the largest sum of RSS over that process
and all its children (engine workers, download threads live in the process), sampled every 20 ms from /proc.
Images are real 256-px JPEGs served over loopback (benchmarks/synthetic_images.py), scoring uses the tiny test model.

    python benchmarks/bench_memory.py                    # 20k vs 400k rows (about an hour on 2 cores)
    python benchmarks/bench_memory.py --sizes 2000 20000 # a quick look
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic_images import ImageServer, write_url_list  # noqa: E402

STAGES = ("ingest", "download", "dedup", "score", "filter", "export", "audit")


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return found


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def tree_rss(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += _rss_bytes(p)
        stack += _children(p)
    return total


def run_measured(args: list[str], env: dict) -> tuple[float, int]:
    """Run a command; (seconds, peak RSS of its process tree in bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.02)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:4])} failed ({proc.returncode}):\n{err[-3000:]}")
    return time.perf_counter() - start, peak


def stage_command(stage: str, run: Path, url_list: Path, workers: int, engine_workers: int) -> list[str]:
    cli = [sys.executable, "-m", "pipelines.cli"]
    command = {
        "ingest": cli + ["ingest", str(url_list), "--run", str(run)],
        "download": cli + ["download", str(run), "--image-size", "256", "--threads", "32",
                           "--allow-private-network"],
        "dedup": cli + ["dedup", str(run)],
        "score": cli + ["score", str(run), "--model", "tiny-test", "--batch-size", "256", "--workers", str(workers)],
        "filter": cli + ["filter", str(run)],
        "export": cli + ["export", str(run)],
        "audit": cli + ["audit", str(run), "--n-boot", "200", "--min-count", "30"],
    }[stage]
    return command + ["--engine-workers", str(engine_workers)]


def measure(n: int, server: ImageServer, root: Path, workers: int, engine_workers: int,
            stages: tuple[str, ...]) -> dict[str, tuple]:
    run = root / f"run-{n}"
    url_list = write_url_list(root / f"urls-{n}.parquet", server, n)
    env = dict(os.environ, WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    results = {}
    for stage in stages:
        seconds, peak = run_measured(stage_command(stage, run, url_list, workers, engine_workers), env)
        results[stage] = (seconds, peak)
        print(f"  {n:>9,} rows  {stage:<9} {seconds:8.1f} s  peak {peak / 2**20:8.1f} MiB", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[20_000, 400_000], metavar=("SMALL", "LARGE"))
    parser.add_argument("--workers", type=int, default=1, help="score's decode threads")
    parser.add_argument("--engine-workers", type=int, default=1,
                        help="parts at once (1: every part in the stage's own process, so the peak is one worker's; "
                             "a run with N workers needs about N times the per-worker memory)")
    parser.add_argument("--stages", nargs="*", default=list(STAGES))
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here")
    args = parser.parse_args()
    stages = tuple(s for s in STAGES if s in args.stages)
    root = args.keep or Path(tempfile.mkdtemp(prefix="fairsift-bench-memory-"))
    root.mkdir(parents=True, exist_ok=True)
    with ImageServer() as server:
        small = measure(args.sizes[0], server, root, args.workers, args.engine_workers, stages)
        large = measure(args.sizes[1], server, root, args.workers, args.engine_workers, stages)
    print(f"\npeak RSS per stage, {args.sizes[0]:,} vs {args.sizes[1]:,} rows in 10,000-row parts, "
          f"--engine-workers {args.engine_workers} (goal: ratio <= 1.2 and <= 2048 MiB)")
    print(f"{'stage':<10}{'small MiB':>11}{'large MiB':>11}{'ratio':>8}{'small s':>9}{'large s':>9}  ok")
    for stage in stages:
        (s_sec, s_peak), (l_sec, l_peak) = small[stage], large[stage]
        ratio = l_peak / s_peak if s_peak else float("nan")
        ok = ratio <= 1.2 and l_peak <= 2 * 2**30
        print(f"{stage:<10}{s_peak / 2**20:>11.1f}{l_peak / 2**20:>11.1f}{ratio:>8.2f}{s_sec:>9.1f}{l_sec:>9.1f}  "
              f"{'yes' if ok else 'NO'}")
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
