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
3. Semantic dedup (curate.dedup.semantic through the stage's own tasks: uid-hash sample, k-means, assign map,
   one search task per cluster partition) vs the single-process SemDeDup (k-means on all vectors, pairs within
   clusters, everything in one process: semantic.semantic_pairs) on N 512-d float16 embeddings with 1% planted
   near duplicates: seconds, peak RSS; checks: both give the same pairs, and on 500 sampled rows against brute force
   (all pairs) the share of true pairs found (SemDeDup misses pairs split across clusters by design).
4. Stage memory: peak RSS of the whole dedup stage (pHash parts already current, so the global step is what is
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
import pyarrow.parquet  # noqa: F401  (pa.parquet)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import schemas, tables  # noqa: E402

SAMPLE_IMAGES = sorted((ROOT / "pipelines" / "sample" / "images").glob("*.jpg"))


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not inherit the parent's peak across fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
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

    base = peak_rss_mb()
    hashes = np.load(hashes_file)
    start = time.perf_counter()
    pairs = near_duplicate_pairs(hashes, d)
    seconds = time.perf_counter() - start
    np.save(out, pairs)
    return {"seconds": seconds, "pairs": len(pairs), "peak_rss_mb": peak_rss_mb(), "imports_rss_mb": base}


def _map_task(args) -> int:
    from curate.dedup import near, shuffle

    hashes_file, m, lo, hi, d, n_partitions, work = args
    hashes = np.load(hashes_file, mmap_mode="r")[lo:hi]
    heads, distinct, links = near.combine(np.arange(lo, hi, dtype=np.int64), np.asarray(hashes))
    np.save(Path(work) / f"links-map{m:06d}.npy", links)
    table, partition = near.records(heads, distinct, d, n_partitions)
    shuffle.write(Path(work) / f"{m:06d}", table, partition, n_partitions)
    return peak_rss_mb()


def _reduce_task(args) -> int:
    from curate.dedup import near, shuffle

    work, p, n_maps, d = args
    files = [str(Path(work) / f"{m:06d}") for m in range(n_maps)]
    records = shuffle.read(files, p, near.RECORD_SCHEMA)
    links = near.links_in_partition(records, d)
    np.save(Path(work) / f"links-{p:06d}.npy", links)
    return records.num_rows, peak_rss_mb()


def case_partitioned(hashes_file: str, d: int, out: str, group_rows: int, partition_records: int, workers: int) -> dict:
    from curate.dedup import near, shuffle  # noqa: F401  (imported before the baseline is taken)
    from curate.dedup.shuffle import partition_count

    base = peak_rss_mb()
    n = len(np.load(hashes_file, mmap_mode="r"))
    n_partitions = partition_count(near.records_per_row(d) * n, partition_records)
    bounds = list(range(0, n, group_rows)) + [n]
    with tempfile.TemporaryDirectory(dir=Path(out).parent) as work:
        maps = [(hashes_file, m, lo, hi, d, n_partitions, work) for m, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:]))]
        reduces = [(work, p, len(maps), d) for p in range(n_partitions)]
        start = time.perf_counter()
        if workers > 1:
            with ProcessPoolExecutor(workers) as pool:
                map_rss = list(pool.map(_map_task, maps))
                reduced = list(pool.map(_reduce_task, reduces))
        else:
            map_rss = list(map(_map_task, maps))
            reduced = list(map(_reduce_task, reduces))
        sizes = [r[0] for r in reduced]
        worker_peak = max(map_rss + [r[1] for r in reduced])
        links = np.concatenate([np.load(f) for f in sorted(Path(work).glob("links-*.npy"))])
        seconds = time.perf_counter() - start
        shuffle_bytes = sum(f.stat().st_size for f in Path(work).glob("0*"))
    np.save(out, links)
    return {"seconds": seconds, "links": len(links), "partitions": n_partitions, "maps": len(maps),
            "largest_partition_records": max(sizes), "shuffle_mb": shuffle_bytes / 2**20,
            "peak_rss_mb": max(peak_rss_mb(), worker_peak), "imports_rss_mb": base}


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


# ---- 3. semantic ---------------------------------------------------------------------------------------------

def semantic_run(run: Path, n: int, dim: int, part_rows: int = 10_000, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    planted = rng.choice(n, size=n // 100, replace=False)
    vectors[planted] = vectors[rng.integers(0, n, size=len(planted))] + rng.normal(scale=0.02, size=(len(planted), dim))
    flat = vectors.astype(np.float16)
    for p, lo in enumerate(range(0, n, part_rows)):
        hi = min(n, lo + part_rows)
        emb = pa.ListArray.from_arrays(pa.array(np.arange(0, (hi - lo) * dim + 1, dim, dtype=np.int32)),
                                       pa.array(flat[lo:hi].reshape(-1), type=pa.float16()))
        tables.write_part(run, "embeddings", p, pa.table({"uid": [f"{i:032x}" for i in range(lo, hi)],
                                                          "image_embedding": emb, "text_embedding": emb},
                                                         schema=schemas.EMBEDDINGS))


def case_semantic_partitioned(run: str, threshold: float, out: str) -> dict:
    from curate.dedup import global_step
    from curate.dedup.tasks import reduce_task
    from curate.options import DedupOptions
    from curate.parts import serial_map

    base = peak_rss_mb()
    work = Path(run) / ".bench-work"
    start = time.perf_counter()
    n_vectors = sum(pa.parquet.read_metadata(p).num_rows for p in tables.list_parts(run, "embeddings"))
    reduces = global_step._semantic_map(Path(run), DedupOptions(semantic_threshold=threshold), work, serial_map,
                                        global_step.ShuffleSizes().resolved(0, n_vectors))
    serial_map(reduce_task, reduces)
    links = pa.concat_tables([pa.parquet.read_table(f) for f in sorted((work / "links").glob("semantic-*.parquet"))])
    seconds = time.perf_counter() - start
    pa.parquet.write_table(links, out)
    return {"seconds": seconds, "pairs": links.num_rows, "partitions": len(reduces), "peak_rss_mb": peak_rss_mb(),
            "imports_rss_mb": base}


def case_semantic_single(run: str, threshold: float, out: str) -> dict:
    from curate.dedup import semantic

    base = peak_rss_mb()
    start = time.perf_counter()
    table = tables.read_table(run, "embeddings", columns=["uid", "image_embedding"])
    _, raw = semantic.embeddings_matrix(table.column("image_embedding"), run)
    uids = table.column("uid").to_pylist()
    pairs = semantic.semantic_pairs(raw, threshold, uids=uids)
    seconds = time.perf_counter() - start
    pa.parquet.write_table(pa.table({"uid_a": [uids[i] for i in pairs[:, 0]], "uid_b": [uids[j] for j in pairs[:, 1]]}), out)
    return {"seconds": seconds, "pairs": len(pairs), "peak_rss_mb": peak_rss_mb(), "imports_rss_mb": base}


def bench_semantic(n: int, dim: int, threshold: float, workdir: Path) -> dict:
    import pyarrow.parquet as pq

    from curate.dedup import semantic

    run = workdir / f"semantic-{n}"
    semantic_run(run, n, dim)
    part = in_fresh_process("semantic_partitioned", run=str(run), threshold=threshold, out=str(workdir / "sp.parquet"))
    single = in_fresh_process("semantic_single", run=str(run), threshold=threshold, out=str(workdir / "ss.parquet"))
    as_set = lambda t: set(zip(t.column("uid_a").to_pylist(), t.column("uid_b").to_pylist()))  # noqa: E731
    found = as_set(pq.read_table(workdir / "sp.parquet"))
    same = found == as_set(pq.read_table(workdir / "ss.parquet"))
    table = tables.read_table(run, "embeddings", columns=["uid", "image_embedding"])
    _, raw = semantic.embeddings_matrix(table.column("image_embedding"), str(run))
    vectors = semantic.l2_normalise(raw)
    uids = table.column("uid").to_pylist()
    sample = np.random.default_rng(2).choice(n, size=500, replace=False)
    true_pairs = set()
    for q in sample:
        for j in np.flatnonzero(vectors @ vectors[q] >= threshold):
            if j != q:
                true_pairs.add((min(uids[q], uids[j]), max(uids[q], uids[j])))
    recall = len(true_pairs & found) / max(len(true_pairs), 1)
    return {"n": n, "partitioned": part, "single": single, "same_pairs": same, "sample_true_pairs": len(true_pairs),
            "sample_recall": recall}


# ---- 4. stage memory ------------------------------------------------------------------------------------------

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
    parser.add_argument("--embeddings", type=int, default=100_000, help="vectors in the semantic benchmark")
    parser.add_argument("--skip", nargs="*", default=[], choices=["phash", "search", "semantic", "memory"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--case-args", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        fn = {"single": case_single, "partitioned": case_partitioned, "stage": case_stage,
              "semantic_partitioned": case_semantic_partitioned, "semantic_single": case_semantic_single}[args.case]
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
                      f"({n / s['seconds'] / 1e6:.2f}M hashes/s), peak RSS {s['peak_rss_mb']:.0f} MB "
                      f"(+{s['peak_rss_mb'] - s['imports_rss_mb']:.0f} over imports), {s['pairs']} pairs")
                for workers in (1, 2):
                    p = r[f"partitioned_{workers}"]
                    print(f"[search]   partitioned, {workers} process(es): {p['seconds']:.2f}s "
                          f"({n / p['seconds'] / 1e6:.2f}M hashes/s; time ratio partitioned/single "
                          f"{p['seconds'] / s['seconds']:.2f}), peak RSS {p['peak_rss_mb']:.0f} MB "
                          f"(+{p['peak_rss_mb'] - p['imports_rss_mb']:.0f} over imports; increment ratio "
                          f"{(p['peak_rss_mb'] - p['imports_rss_mb']) / max(s['peak_rss_mb'] - s['imports_rss_mb'], 1):.2f}"
                          f"); {p['maps']} map tasks, "
                          f"{p['partitions']} partitions (largest {p['largest_partition_records']:,} records), "
                          f"shuffle {p['shuffle_mb']:.0f} MB")
                print(f"[search]   partitioned == single-process: {r['equal_to_single'] and r['same_pair_set']}; "
                      f"both == brute force (faiss IndexBinaryFlat) on 2,000 sampled rows: {r['brute_force_sample_ok']}")
        if "semantic" not in args.skip:
            r = bench_semantic(args.embeddings, 512, 0.95, workdir)
            p, s = r["partitioned"], r["single"]
            print(f"[semantic] {r['n']:,} embeddings (512-d): single-process SemDeDup {s['seconds']:.1f}s, peak RSS "
                  f"{s['peak_rss_mb']:.0f} MB (+{s['peak_rss_mb'] - s['imports_rss_mb']:.0f} over imports); "
                  f"partitioned {p['seconds']:.1f}s ({p['partitions']} partitions), peak RSS {p['peak_rss_mb']:.0f} MB "
                  f"(+{p['peak_rss_mb'] - p['imports_rss_mb']:.0f}); time ratio partitioned/single "
                  f"{p['seconds'] / s['seconds']:.2f}; same pairs: {r['same_pairs']} ({p['pairs']:,}); "
                  f"recall vs brute force on 500 sampled rows: {r['sample_recall']:.3f} of {r['sample_true_pairs']} pairs")
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
