"""How the part-parallel stages scale with workers: download (loopback), pHash and CPU scoring, each run on the same
parts with the local engine at 1, 2, ... workers; prints throughput and parallel efficiency (throughput at w workers
/ (w x throughput at 1 worker)). The 1-worker run is the bare baseline, measured in the same run.

    python benchmarks/bench_scaling.py                         # 1 and 2 workers, 8,000 rows (2-core machines)
    python benchmarks/bench_scaling.py --workers 1 2 4 8 16 --rows 64000   # a 16-core machine
    python benchmarks/bench_scaling.py --engine ray --ray-address auto      # workers = tasks on a Ray cluster
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from benchmarks.synthetic_images import ImageServer, write_url_list  # noqa: E402


def _prepare(root: Path, server: ImageServer, rows: int, rows_per_part: int) -> Path:
    """A run with pairs parts and downloaded shards, the input of every measured stage."""
    from curate.download.stage import download
    from curate.options import DownloadOptions, IngestOptions
    from curate.sources.ingest import ingest

    run = root / "base"
    ingest(run, IngestOptions(path=str(write_url_list(root / "urls.parquet", server, rows)),
                              rows_per_part=rows_per_part))
    download(run, DownloadOptions(image_size=256, allow_private_network=True))
    return run


def _stage(name: str):
    """(function(run_dir, map_parts) -> None, the folders it writes, so that each measurement starts clean)."""
    if name == "download":
        from curate.download.stage import download
        from curate.options import DownloadOptions

        return (lambda run, map_parts: download(run, DownloadOptions(image_size=256, allow_private_network=True),
                                                map_parts=map_parts)), ["shards"]
    if name == "phash":
        from curate.dedup.phash import compute_phashes

        return (lambda run, map_parts: compute_phashes(run, map_parts=map_parts)), ["signals/phash"]
    if name == "score":
        from curate.options import ScoreOptions
        from curate.score.stage import score

        opts = ScoreOptions(model="tiny-test", batch_size=128, workers=0, device="cpu")
        return (lambda run, map_parts: score(run, opts, map_parts=map_parts)), ["signals/clip", "signals/embeddings"]
    raise ValueError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rows", type=int, default=8000)
    parser.add_argument("--rows-per-part", type=int, default=500)
    parser.add_argument("--stages", nargs="+", default=["download", "phash", "score"])
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--ray-address", default=None)
    args = parser.parse_args()

    from pipelines.engines import make_engine

    root = Path(tempfile.mkdtemp(prefix="fairsift-bench-scaling-"))
    results: dict[tuple[str, int], float] = {}
    try:
        with ImageServer() as server:
            base = _prepare(root, server, args.rows, args.rows_per_part)
            for stage in args.stages:
                fn, outputs = _stage(stage)
                for workers in args.workers:
                    run = root / f"{stage}-{workers}"
                    shutil.copytree(base, run)
                    for rel in outputs:
                        shutil.rmtree(run / rel, ignore_errors=True)
                    with make_engine(args.engine, address=args.ray_address, workers=workers) as engine:
                        start = time.perf_counter()
                        fn(run, engine.map_parts)
                        seconds = time.perf_counter() - start
                    results[(stage, workers)] = args.rows / seconds
                    print(f"  {stage:<9} workers={workers:<3} {seconds:7.1f} s  {args.rows / seconds:9.1f} rows/s",
                          flush=True)
                    shutil.rmtree(run, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\nscaling on {os.cpu_count()} cores, {args.rows:,} rows in parts of {args.rows_per_part:,} "
          f"({args.engine} engine); efficiency = throughput / (workers x throughput at 1 worker)")
    print(f"{'stage':<10}{'workers':>8}{'rows/s':>11}{'speed-up':>10}{'efficiency':>12}")
    for stage in args.stages:
        one = results[(stage, args.workers[0])] / args.workers[0]
        for workers in args.workers:
            rate = results[(stage, workers)]
            print(f"{stage:<10}{workers:>8}{rate:>11.1f}{rate / one / args.workers[0]:>10.2f}"
                  f"{rate / (workers * one):>12.2f}")


if __name__ == "__main__":
    main()
