"""The filter's global top-fraction cut (curate.filter.global_cut: DuckDB, two streaming passes and a sorted window)
against the bare baseline that sorts every (score, uid) in memory with numpy, on the same clip parts.

Prints seconds and the peak RSS each needs: the cut's memory must stay flat as rows grow, the sort's grows with n.

    python benchmarks/bench_global_cut.py --rows 1000000 10000000
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_clip_parts(folder: Path, rows: int, rows_per_part: int = 1_000_000, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, start in enumerate(range(0, rows, rows_per_part)):
        n = min(rows_per_part, rows - start)
        raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
        uids = pa.array(raw.view("S16").ravel()).cast(pa.binary())
        hex_uids = pa.array([b.hex() for b in raw.view("S16").ravel().tolist()], pa.string()) if n else uids
        scores = np.round(rng.normal(0.28, 0.06, n), 4).astype(np.float32)  # 4 decimals: many ties, as real scores
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(pa.table({"uid": hex_uids, "clip_score": scores}), path)
        files.append(path)
    return files


CHILD = r"""
import resource, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
files = sorted(Path({folder!r}).glob("part-*.parquet"))
k = {k}
start = time.perf_counter()
if {mode!r} == "cut":
    from curate.filter.global_cut import kth_best
    result = kth_best(files, k)
else:
    import numpy as np, pyarrow.parquet as pq, pyarrow as pa
    t = pa.concat_tables([pq.read_table(f) for f in files])
    scores = t.column("clip_score").to_numpy().astype(np.float64)
    uids = np.array(t.column("uid").to_pylist(), dtype=object)
    order = np.lexsort((uids, -scores))
    result = (float(scores[order[k - 1]]), uids[order[k - 1]])
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, result[0], result[1])
"""


def measure(mode: str, folder: Path, k: int) -> tuple[float, int, float, str]:
    out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), folder=str(folder), k=k, mode=mode)],
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1]), float(out[2]), out[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--fraction", type=float, default=0.3)
    args = parser.parse_args()
    print(f"{'rows':>12}{'cut s':>9}{'cut MiB':>10}{'sort s':>9}{'sort MiB':>10}{'speed-up':>10}  same cut")
    for rows in args.rows:
        root = Path(tempfile.mkdtemp(prefix="fairsift-bench-cut-"))
        try:
            write_clip_parts(root / "clip", rows)
            k = round(args.fraction * rows)
            cut = measure("cut", root / "clip", k)
            bare = measure("sort", root / "clip", k)
            same = abs(cut[2] - bare[2]) < 1e-9 and cut[3] == bare[3]
            print(f"{rows:>12,}{cut[0]:>9.2f}{cut[1] / 2**20:>10.0f}{bare[0]:>9.2f}{bare[1] / 2**20:>10.0f}"
                  f"{bare[0] / cut[0]:>10.2f}  {'yes' if same else 'NO'}", flush=True)
        finally:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
