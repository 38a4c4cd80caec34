"""Dedup benchmarks, each as a ratio against a bare baseline.

1. pHash stage (curate.dedup.phash.compute_phashes: Parquet in/out, process pool) vs a bare single-process
   `imagehash.phash` loop over the same JPEG bytes: ratio = stage throughput / bare throughput.
2. Near-duplicate search (curate.dedup.hamming_index.near_duplicate_pairs) on 1,000,000 random 64-bit hashes with planted
   near duplicates, d = 4, vs faiss IndexBinaryFlat range search (exhaustive) run for a subsample of queries against
   all hashes and extrapolated linearly to every query. Also timed: classic multi-index hashing (d+1 blocks) and
   faiss IndexBinaryMultiHash (5 x 12-bit exact-match hashes, the exact setting for d = 4) on a query subsample.

Run: python benchmarks/bench_dedup.py [--images 1000] [--hashes 1000000] [--classic]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from curate import schemas, tables  # noqa: E402
from curate.dedup.hamming_index import near_duplicate_pairs, plan_blocks  # noqa: E402
from curate.dedup.phash import compute_phashes  # noqa: E402

SAMPLE_IMAGES = sorted((ROOT / "pipelines" / "sample" / "images").glob("*.jpg"))


def bench_phash(n_images: int, workers: int | None) -> dict:
    import imagehash
    from PIL import Image

    sources = [p.read_bytes() for p in SAMPLE_IMAGES]
    images = [sources[i % len(sources)] for i in range(n_images)]

    start = time.perf_counter()
    bare = [str(imagehash.phash(Image.open(io.BytesIO(data)), hash_size=8)) for data in images]
    bare_s = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp:
        rows = [{"uid": f"{i:08d}", "url": f"http://b.test/{i}", "caption": "", "status": "success",
                 "error_message": None, "image": data, "width": None, "height": None, "original_width": None,
                 "original_height": None, "sha256": None} for i, data in enumerate(images)]
        per_part = 1000
        for part in range(0, n_images, per_part):
            tables.write_part(tmp, "shards", part // per_part,
                              pa.Table.from_pylist(rows[part:part + per_part], schema=schemas.SHARDS))
        start = time.perf_counter()
        compute_phashes(tmp, workers=workers)
        stage_s = time.perf_counter() - start
        stage = tables.read_table(tmp, "phash").column("phash").to_pylist()
    assert [f"{v:016x}" for v in stage] == bare, "stage and bare loop disagree"
    return {"images": n_images, "workers": workers or os.cpu_count(), "bare_s": bare_s, "stage_s": stage_s,
            "bare_img_per_s": n_images / bare_s, "stage_img_per_s": n_images / stage_s, "ratio": bare_s / stage_s}


def planted_hashes(n: int, n_planted: int, max_distance: int, seed: int = 0) -> tuple[np.ndarray, set]:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    sources = rng.choice(n - n_planted, size=n_planted, replace=False)
    targets = np.arange(n - n_planted, n)
    for s, t in zip(sources, targets):
        flips = rng.choice(64, size=int(rng.integers(1, max_distance + 1)), replace=False)
        hashes[t] = hashes[s] ^ np.uint64(sum(1 << int(b) for b in flips))
    return hashes, {(int(s), int(t)) for s, t in zip(sources, targets)}


def bench_search(n: int, max_distance: int, n_planted: int, flat_queries: int, classic: bool) -> dict:
    import faiss

    hashes, planted = planted_hashes(n, n_planted, max_distance)
    blocks = plan_blocks(n, max_distance)
    start = time.perf_counter()
    pairs = near_duplicate_pairs(hashes, max_distance)
    ours_s = time.perf_counter() - start
    found = set(map(tuple, pairs.tolist()))
    result = {"hashes": n, "max_distance": max_distance, "blocks": blocks, "pairs_found": len(pairs),
              "planted_recall": len(planted & found) / len(planted), "ours_s": ours_s}

    if classic:
        start = time.perf_counter()
        classic_pairs = near_duplicate_pairs(hashes, max_distance, blocks=max_distance + 1)
        result["classic_mih_s"] = time.perf_counter() - start
        assert np.array_equal(classic_pairs, pairs)

    codes = hashes.astype(">u8").view(np.uint8).reshape(-1, 8)  # big-endian bytes: faiss reads bits in byte order
    rng = np.random.default_rng(1)
    sample = rng.choice(n, size=flat_queries, replace=False)
    flat = faiss.IndexBinaryFlat(64)
    flat.add(codes)
    start = time.perf_counter()
    flat.range_search(codes[sample], max_distance + 1)  # faiss keeps distances < radius
    flat_s = (time.perf_counter() - start) * n / flat_queries
    result.update(flat_extrapolated_s=flat_s, flat_queries=flat_queries, ratio_vs_flat=flat_s / ours_s)

    multi = faiss.IndexBinaryMultiHash(64, max_distance + 1, 64 // (max_distance + 1))
    start = time.perf_counter()
    multi.add(codes)
    add_s = time.perf_counter() - start
    multi_queries = min(n, flat_queries * 50)
    start = time.perf_counter()
    multi.range_search(codes[:multi_queries], max_distance + 1)
    result["faiss_multihash_extrapolated_s"] = add_s + (time.perf_counter() - start) * n / multi_queries
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="JPEGs hashed in the pHash benchmark")
    parser.add_argument("--workers", type=int, default=None, help="pHash pool size (default os.cpu_count())")
    parser.add_argument("--hashes", type=int, default=1_000_000)
    parser.add_argument("--distance", type=int, default=4)
    parser.add_argument("--planted", type=int, default=1000, help="near duplicates planted among the hashes")
    parser.add_argument("--flat-queries", type=int, default=2000, help="queries timed for the exhaustive baseline")
    parser.add_argument("--classic", action="store_true", help="also time classic MIH with d+1 blocks (slow)")
    parser.add_argument("--skip-phash", action="store_true")
    args = parser.parse_args()

    print(f"cpu_count={os.cpu_count()}")
    if not args.skip_phash:
        r = bench_phash(args.images, args.workers)
        print(f"[phash] {r['images']} images, {r['workers']} workers: bare loop {r['bare_s']:.2f}s "
              f"({r['bare_img_per_s']:.0f} img/s), stage {r['stage_s']:.2f}s ({r['stage_img_per_s']:.0f} img/s); "
              f"ratio stage/bare throughput = {r['ratio']:.2f}")
    r = bench_search(args.hashes, args.distance, args.planted, args.flat_queries, args.classic)
    print(f"[search] {r['hashes']:,} hashes, d={r['max_distance']}, {r['blocks']} blocks: {r['ours_s']:.2f}s, "
          f"{r['pairs_found']} pairs, planted recall {r['planted_recall']:.3f}")
    if "classic_mih_s" in r:
        print(f"[search] classic MIH ({args.distance + 1} blocks): {r['classic_mih_s']:.2f}s (same pairs)")
    print(f"[search] faiss IndexBinaryMultiHash (extrapolated from a query subsample): "
          f"{r['faiss_multihash_extrapolated_s']:.1f}s")
    print(f"[search] baseline faiss IndexBinaryFlat range search, {r['flat_queries']} queries extrapolated to all: "
          f"{r['flat_extrapolated_s']:.1f}s; ratio baseline/ours = {r['ratio_vs_flat']:.0f}x")


if __name__ == "__main__":
    main()
