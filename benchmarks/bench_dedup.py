"""Dedup benchmarks, each against a bare baseline measured in the same run. Every timed case runs in a fresh
process, so its peak RSS (ru_maxrss) is its own.

1. pHash part function (curate.dedup.phash.phash_part over the shards parts, serial map) vs a bare single-process
   `imagehash.phash` loop over the same JPEG bytes: ratio = stage throughput / bare throughput.
2. Near-duplicate search on N random 64-bit hashes with planted near duplicates (d = 4), for N in --hashes
   (default 1M and 10M): the partitioned search of the stage (curate.dedup.near: map tasks write shuffle files, one
   reduce task per partition, serial and in a 2-process pool) vs the single-process multi-index search
   (hamming_index.near_duplicate_pairs) on the same hashes: seconds, hashes/s, peak RSS, and ratios. Checks: the
   partitioned links give exactly the single-process pairs (components compared), and on a sample of queries both
   equal brute force (faiss IndexBinaryFlat range search, exhaustive).
3. Stage memory: peak RSS of the whole dedup stage (pHash parts already current, so the global step is what is
   measured) on synthetic runs of 20k and 400k rows in 10k-row parts, with ~10% duplicates, and in the worst case
   where every image is the same one; ratio 400k / 20k (goal <= 1.2).

Run: python benchmarks/bench_dedup.py [--images 1000] [--hashes 1000000 10000000] [--memory-rows 20000 400000]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import schemas, tables  # noqa: E402

SAMPLE_IMAGES = sorted((ROOT / "pipelines" / "sample" / "images").glob("*.jpg"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_fresh_process(case: str, **kwargs) -> dict:
    """Run one case of this file in a new Python process; returns the JSON it prints."""
    cmd = [sys.executable, __file__, "--case", case, "--case-args", json.dumps(kwargs)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- 1. pHash ---------------------------------------------------------------------------------------------------

def bench_phash(n_images: int) -> dict:
    import imagehash
    from PIL import Image

    from curate.dedup.phash import compute_phashes

    sources = [p.read_bytes() for p in SAMPLE_IMAGES]
    images = [sources[i % len(sources)] for i in range(n_images)]
    start = time.perf_counter()
    bare = [str(imagehash.phash(Image.open(io.BytesIO(data)), hash_size=8)) for data in images]
    bare_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"uid": f"{i:08d}", "url": f"http://b.test/{i}", "caption": "", "status": "success",
                 "error_message": None, "image": data, "width": None, "height": None, "original_width": None,
                 "original_height": None, "sha256": None} for i, data in enumerate(images)]
        for part in range(0, n_images, 1000):
            tables.write_part(tmp, "shards", part // 1000, pa.Table.from_pylist(rows[part:part + 1000], schema=schemas.SHARDS))
        start = time.perf_counter()
        compute_phashes(tmp)
        stage_s = time.perf_counter() - start
        stage = tables.read_table(tmp, "phash").column("phash").to_pylist()
    assert [f"{v:016x}" for v in stage] == bare, "stage and bare loop disagree"
    return {"images": n_images, "bare_s": bare_s, "stage_s": stage_s, "ratio": bare_s / stage_s}


# ---- 2. near-duplicate search -------------------------------------------------------------------------------------

def planted_hashes(n: int, n_planted: int, max_distance: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    sources = rng.choice(n - n_planted, size=n_planted, replace=False)
    for s, t in zip(sources, range(n - n_planted, n)):
        flips = rng.choice(64, size=int(rng.integers(1, max_distance + 1)), replace=False)
        hashes[t] = hashes[s] ^ np.uint64(sum(1 << int(b) for b in flips))
    return hashes


def case_single(hashes_file: str, d: int, out: str) -> dict:
    from curate.dedup.hamming_index import near_duplicate_pairs

    hashes = np.load(hashes_file)
    start = time.perf_counter()
    pairs = near_duplicate_pairs(hashes, d)
    seconds = time.perf_counter() - start
    np.save(out, pairs)
    return {"seconds": seconds, "pairs": len(pairs), "peak_rss_mb": peak_rss_mb()}


def _map_task(args) -> int:
    from curate.dedup import near, shuffle

    hashes_file, m, lo, hi, d, n_partitions, work = args
    hashes = np.load(hashes_file, mmap_mode="r")[lo:hi]
    heads, distinct, links = near.combine(np.arange(lo, hi, dtype=np.int64), np.asarray(hashes))
    np.save(Path(work) / f"links-map{m:06d}.npy", links)
    table, partition = near.records(heads, distinct, d, n_partitions)
    shuffle.write(Path(work) / f"{m:06d}", table, partition, n_partitions)
    return table.num_rows


def _reduce_task(args) -> int:
    from curate.dedup import near, shuffle

    work, p, n_maps, d = args
    files = [str(Path(work) / f"{m:06d}") for m in range(n_maps)]
    records = shuffle.read(files, p, near.RECORD_SCHEMA)
    links = near.links_in_partition(records, d)
    np.save(Path(work) / f"links-{p:06d}.npy", links)
    return records.num_rows


def case_partitioned(hashes_file: str, d: int, out: str, group_rows: int, partition_records: int, workers: int) -> dict:
    from curate.dedup import near
    from curate.dedup.shuffle import partition_count

    n = len(np.load(hashes_file, mmap_mode="r"))
    n_partitions = partition_count(near.records_per_row(d) * n, partition_records)
    bounds = list(range(0, n, group_rows)) + [n]
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as work:
        maps = [(hashes_file, m, lo, hi, d, n_partitions, work) for m, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]
        reduces = [(work, p, len(maps), d) for p in range(n_partitions)]
        start = time.perf_counter()
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                list(pool.map(_map_task, maps))
                sizes = list(pool.map(_reduce_task, reduces))
        else:
            list(map(_map_task, maps))
            sizes = list(map(_reduce_task, reduces))
        links = np.concatenate([np.load(f) for f in sorted(Path(work).glob("links-*.npy"))])
        seconds = time.perf_counter() - start
        shuffle_bytes = sum(f.stat().st_size for f in Path(work).glob("0*"))
    np.save(out, links)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "links": len(links), "partitions": n_partitions, "maps": len(maps),
            "largest_partition_records": max(sizes), "shuffle_mb": shuffle_bytes / 2**20,
            "peak_rss_mb": max(peak_rss_mb(), children)}


def same_components(n: int, a: np.ndarray, b: np.ndarray) -> bool:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    nodes = np.sort(np.concatenate([a.reshape(-1), b.reshape(-1)]))
    nodes = nodes[np.r_[True, nodes[1:] != nodes[:-1]]]
    labels = []
    for links in (a, b):
        e = np.searchsorted(nodes, links.reshape(-1, 2))
        graph = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(nodes), len(nodes)))
        labels.append(connected_components(graph, directed=False)[1])
    return len(set(zip(*[l.tolist() for l in labels]))) == len(set(labels[0].tolist())) == len(set(labels[1].tolist()))


def brute_force_sample(hashes: np.ndarray, d: int, pairs: np.ndarray, n_queries: int) -> bool:
    """Pairs of sampled rows found by exhaustive search (faiss IndexBinaryFlat) equal those in `pairs`."""
    import faiss

    codes = hashes.astype(">u8").view(np.uint8).reshape(-1, 8)  # big-endian bytes: faiss reads bits in byte order
    sample = np.random.default_rng(1).choice(len(hashes), size=n_queries, replace=False)
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, _, ids = index.range_search(codes[sample], d + 1)  # faiss keeps distances < radius
    brute = {(min(int(q), int(j)), max(int(q), int(j))) for k, q in enumerate(sample)
             for j in ids[lims[k]:lims[k + 1]] if j != q}
    chosen = set(sample.tolist())
    found = {tuple(p) for p in pairs.tolist() if p[0] in chosen or p[1] in chosen}
    return found == brute


def bench_search(n: int, d: int, n_planted: int, group_rows: int, partition_records: int, workdir: Path) -> dict:
    hashes = planted_hashes(n, n_planted, d)
    hashes_file = str(workdir / f"hashes-{n}.npy")
    np.save(hashes_file, hashes)
    single = in_fresh_process("single", hashes_file=hashes_file, d=d, out=str(workdir / "single.npy"))
    result = {"hashes": n, "single": single}
    for workers in (1, 2):
        result[f"partitioned_{workers}"] = in_fresh_process(
            "partitioned", hashes_file=hashes_file, d=d, out=str(workdir / f"part{workers}.npy"),
            group_rows=group_rows, partition_records=partition_records, workers=workers)
    pairs = np.load(workdir / "single.npy")
    links = np.load(workdir / "part1.npy")
    result["equal_to_single"] = same_components(n, pairs, links) and same_components(n, pairs, np.load(workdir / "part2.npy"))
    # distinct random hashes: the partitioned links are exactly the pairs, each once
    result["same_pair_set"] = (len(links) == len(pairs) and
                               set(map(tuple, np.sort(links, axis=1).tolist())) == set(map(tuple, pairs.tolist())))
    result["brute_force_sample_ok"] = brute_force_sample(hashes, d, pairs, 2000)
    return result


# ---- 3. stage memory ------------------------------------------------------------------------------------------

def synthetic_run(run: Path, n: int, worst_case: bool, part_rows: int = 10_000, seed: int = 0) -> None:
    """Shards parts (tiny stand-in image bytes) and current phash parts: ~10% duplicates of every kind, or (worst
    case) one image for every row."""
    from curate.dedup.phash import phash_tasks

    rng = np.random.default_rng(seed)
    ids = np.arange(n)
    phash = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    source = rng.integers(0, n, size=n)
    kind = rng.random(n)
    image_id = ids.copy()
    url_id = ids.copy()
    image_id[kind < 0.04] = source[kind < 0.04]  # same bytes
    url_id[(kind >= 0.04) & (kind < 0.06)] = source[(kind >= 0.04) & (kind < 0.06)]  # same URL
    near = (kind >= 0.06) & (kind < 0.10)
    phash[near] = phash[source[near]] ^ (np.uint64(1) << rng.integers(0, 64, size=near.sum()).astype(np.uint64))
    phash[kind < 0.04] = phash[source[kind < 0.04]]
    if worst_case:
        image_id[:] = 0
        phash[:] = phash[0]
    status = np.where(rng.random(n) < 0.95, "success", "failed_to_download")
    for p, lo in enumerate(range(0, n, part_rows)):
        hi = min(n, lo + part_rows)
        images = [b"image %d" % image_id[i] if status[i] == "success" else None for i in range(lo, hi)]
        tables.write_part(run, "shards", p, pa.table({
            "uid": [f"{i:032x}" for i in range(lo, hi)], "url": [f"http://img.test/{url_id[i]}.jpg" for i in range(lo, hi)],
            "caption": [f"c{i}" for i in range(lo, hi)], "status": status[lo:hi].tolist(),
            "error_message": [None] * (hi - lo), "image": pa.array(images, pa.binary()),
            "width": pa.array([None] * (hi - lo), pa.int32()), "height": pa.array([None] * (hi - lo), pa.int32()),
            "original_width": pa.array([None] * (hi - lo), pa.int32()),
            "original_height": pa.array([None] * (hi - lo), pa.int32()),
            "sha256": [hashlib.sha256(d).hexdigest() if d else None for d in images]}, schema=schemas.SHARDS))
    todo, _ = phash_tasks(run)
    for task in todo:
        lo = int(task.name[5:10]) * part_rows
        ok = np.flatnonzero(status[lo:lo + part_rows] == "success") + lo
        task.write(pa.table({"uid": [f"{i:032x}" for i in ok], "phash": pa.array(phash[ok])}, schema=schemas.PHASH))


def case_stage(run: str) -> dict:
    from curate.dedup.stage import dedup
    from curate.options import DedupOptions

    base = peak_rss_mb()
    start = time.perf_counter()
    counts = dedup(run, DedupOptions())
    return {"seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb(), "imports_rss_mb": base,
            "flagged": sum(counts["duplicates"].values()), "rows": counts["rows"]}


def bench_memory(sizes: list[int], workdir: Path) -> list[dict]:
    results = []
    for worst in (False, True):
        for n in sizes:
            run = workdir / f"run-{n}-{int(worst)}"
            synthetic_run(run, n, worst)
            r = in_fresh_process("stage", run=str(run))
            results.append({"rows": n, "worst_case": worst, **r})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="JPEGs hashed in the pHash benchmark")
    parser.add_argument("--hashes", type=int, nargs="*", default=[1_000_000, 10_000_000])
    parser.add_argument("--distance", type=int, default=4)
    parser.add_argument("--planted", type=int, default=1000, help="near duplicates planted among the hashes")
    parser.add_argument("--group-rows", type=int, default=None, help="rows per map task (default: the stage's)")
    parser.add_argument("--partition-records", type=int, default=None, help="records per partition (default: the stage's)")
    parser.add_argument("--memory-rows", type=int, nargs="*", default=[20_000, 400_000])
    parser.add_argument("--skip", nargs="*", default=[], choices=["phash", "search", "memory"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--case-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        fn = {"single": case_single, "partitioned": case_partitioned, "stage": case_stage}[args.case]
        print(json.dumps(fn(**json.loads(args.case_args))))
        return

    from curate.dedup.global_step import ShuffleSizes

    print(f"cpu_count={os.cpu_count()}")
    if "phash" not in args.skip:
        r = bench_phash(args.images)
        print(f"[phash] {r['images']} images, serial map: bare loop {r['bare_s']:.2f}s "
              f"({r['images'] / r['bare_s']:.0f} img/s), part function {r['stage_s']:.2f}s "
              f"({r['images'] / r['stage_s']:.0f} img/s); ratio stage/bare throughput = {r['ratio']:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if "search" not in args.skip:
            for n in args.hashes:
                sizes = ShuffleSizes().resolved(n, 0)
                r = bench_search(n, args.distance, args.planted, args.group_rows or sizes.group_rows,
                                 args.partition_records or sizes.partition_records, workdir)
                s = r["single"]
                print(f"[search] {n:,} hashes, d={args.distance}: single process {s['seconds']:.2f}s "
                      f"({n / s['seconds'] / 1e6:.2f}M hashes/s), peak RSS {s['peak_rss_mb']:.0f} MB, {s['pairs']} pairs")
                for workers in (1, 2):
                    p = r[f"partitioned_{workers}"]
                    print(f"[search]   partitioned, {workers} process(es): {p['seconds']:.2f}s "
                          f"({n / p['seconds'] / 1e6:.2f}M hashes/s; time ratio partitioned/single "
                          f"{p['seconds'] / s['seconds']:.2f}), peak RSS {p['peak_rss_mb']:.0f} MB "
                          f"(ratio {p['peak_rss_mb'] / s['peak_rss_mb']:.2f}); {p['maps']} map tasks, "
                          f"{p['partitions']} partitions (largest {p['largest_partition_records']:,} records), "
                          f"shuffle {p['shuffle_mb']:.0f} MB")
                print(f"[search]   partitioned == single-process: {r['equal_to_single'] and r['same_pair_set']}; "
                      f"both == brute force (faiss IndexBinaryFlat) on 2,000 sampled rows: {r['brute_force_sample_ok']}")
        if "memory" not in args.skip:
            results = bench_memory(args.memory_rows, workdir)
            for worst in (False, True):
                rows = [r for r in results if r["worst_case"] == worst]
                label = "every image the same" if worst else "~10% duplicates"
                for r in rows:
                    print(f"[memory] dedup stage, {r['rows']:,} rows ({label}): {r['seconds']:.1f}s, peak RSS "
                          f"{r['peak_rss_mb']:.0f} MB (after imports {r['imports_rss_mb']:.0f} MB), "
                          f"{r['flagged']:,} flagged")
                print(f"[memory]   ratio {rows[-1]['rows']:,} / {rows[0]['rows']:,} rows: "
                      f"{rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
