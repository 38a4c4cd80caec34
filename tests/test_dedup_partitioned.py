"""Dedup's global step at scale: the partitioned searches equal brute force, the result does not depend on how the
run is split or run, and lineage redoes exactly what changed. Oracles: brute force over all pairs and scipy's
connected components (tests/dedup_oracle.py)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curate import tables
from curate.dedup import exact, near, shuffle
from curate.dedup.global_step import ShuffleSizes
from curate.dedup.hamming_index import hamming_distance
from curate.dedup.stage import WORK_PREFIX, dedup
from curate.options import DedupOptions
from curate.parts import serial_map
from tests.dedup_oracle import (RecordingMap, dedup_tuples, expected_dedup, process_pool_map, shuffled_map,
                                synthetic_rows, write_run)

TINY = ShuffleSizes(group_rows=150, partition_records=400, partition_vectors=60)  # dozens of partitions


def planted_hashes(seed: int, n: int = 1200, d: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    copies = []
    for i in rng.integers(0, n, size=n // 3):
        v = int(base[i])
        for bit in rng.choice(64, size=int(rng.integers(0, d + 3)), replace=False):
            v ^= 1 << int(bit)
        copies.append(v)
    # hashes that share a block of zeros, so one block value is crowded
    crowded = rng.integers(0, 2**64, size=60, dtype=np.uint64) & np.uint64(~((1 << 13) - 1) & (2**64 - 1))
    hashes = np.concatenate([base, np.array(copies, dtype=np.uint64), crowded])
    return hashes[rng.permutation(len(hashes))]


def partitioned_links(hashes: np.ndarray, d: int, n_partitions: int, n_maps: int, tmp: Path) -> np.ndarray:
    """The map and reduce of the pHash search over real shuffle files, with rows split over several map tasks."""
    rows = np.arange(len(hashes), dtype=np.int64)
    found = []
    for m, chunk in enumerate(np.array_split(rows, n_maps)):
        heads, distinct, local_links = near.combine(chunk, hashes[chunk])  # the map-side combiner
        found.append(local_links)
        table, partition = near.records(heads, distinct, d, n_partitions)
        shuffle.write(tmp / f"{m:06d}", table, partition, n_partitions)
    files = [str(tmp / f"{m:06d}") for m in range(n_maps)]
    found += [near.links_in_partition(shuffle.read(files, p, near.RECORD_SCHEMA), d) for p in range(n_partitions)]
    return np.concatenate(found)


def scipy_labels(n: int, links: np.ndarray) -> np.ndarray:
    links = np.asarray(links).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(links)), (links[:, 0], links[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Do two labelings define the same components?"""
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("d,n_partitions", [(0, 1), (0, 7), (1, 5), (2, 13), (4, 1), (4, 9), (4, 31), (6, 17)])
def test_partitioned_phash_pairs_equal_brute_force(tmp_path, d, n_partitions):
    hashes = np.unique(planted_hashes(seed=d * 100 + n_partitions, d=d))  # distinct: pairs, not stars
    links = partitioned_links(hashes, d, n_partitions, n_maps=4, tmp=tmp_path)
    pairs = [tuple(sorted(p)) for p in links.tolist()]
    assert len(pairs) == len(set(pairs)), "a pair was reported by two partitions"
    dist = hamming_distance(hashes[:, None], hashes[None, :])
    i, j = np.nonzero(np.triu(dist <= d, k=1))
    assert set(pairs) == set(zip(i.tolist(), j.tolist()))
    if d > 0:
        assert len(pairs) > 50


@pytest.mark.parametrize("n_partitions", [1, 6])
def test_identical_hashes_and_chains_give_the_brute_force_components(tmp_path, n_partitions):
    hashes = planted_hashes(seed=3)
    hashes = np.concatenate([hashes, hashes[:200], hashes[:50]])  # every hash of these repeated, some 3 times
    links = partitioned_links(hashes, 4, n_partitions, n_maps=3, tmp=tmp_path)
    dist = hamming_distance(hashes[:, None], hashes[None, :])
    expected = scipy_labels(len(hashes), np.argwhere(np.triu(dist <= 4, k=1)))
    assert same_partition(scipy_labels(len(hashes), links), expected)


def test_large_distance_uses_one_partition_and_stays_exact(tmp_path):
    hashes = np.unique(planted_hashes(seed=5, n=300, d=18))
    assert near.outer_blocks(18) == []
    links = partitioned_links(hashes, 18, 1, n_maps=2, tmp=tmp_path)
    dist = hamming_distance(hashes[:, None], hashes[None, :])
    assert {tuple(sorted(p)) for p in links.tolist()} == set(map(tuple, np.argwhere(np.triu(dist <= 18, k=1)).tolist()))


@pytest.mark.parametrize("n_partitions", [1, 4, 19])
def test_partitioned_exact_keys_equal_brute_force(tmp_path, n_partitions):
    rng = np.random.default_rng(n_partitions)
    urls = [f"http://x.test/{int(v)}" for v in rng.integers(0, 300, size=800)]
    shas = [None if v < 40 else f"{int(v):064x}" for v in rng.integers(0, 500, size=800)]
    rows = np.arange(800, dtype=np.int64) * 3 + 11  # row ids need not be dense
    found = {"url": [], "sha256": []}
    for m, chunk in enumerate(np.array_split(np.arange(800), 5)):
        table = exact.records(rows[chunk], {"url": pa.array([urls[i] for i in chunk]),
                                            "sha256": pa.array([shas[i] for i in chunk])})
        table, local_links = exact.combine(table)  # the map-side combiner, as the stage runs it
        for kind, links in local_links.items():
            found[kind].append(links)
        shuffle.write(tmp_path / f"{m:06d}", table, exact.partitions(table, n_partitions), n_partitions)
    files = [str(tmp_path / f"{m:06d}") for m in range(5)]
    for p in range(n_partitions):
        for kind, links in exact.links_in_partition(shuffle.read(files, p, exact.RECORD_SCHEMA)).items():
            found[kind].append(links)
    for kind, keys in (("url", urls), ("sha256", shas)):
        links = (np.concatenate(found[kind]) - 11) // 3  # back to positions
        got = scipy_labels(800, links)
        brute = [(i, j) for i in range(800) for j in range(i + 1, 800) if keys[i] is not None and keys[i] == keys[j]]
        assert same_partition(got, scipy_labels(800, np.array(brute)))
        n_groups = len({k for k in keys if k is not None})
        assert len(links) == sum(k is not None for k in keys) - n_groups  # star links: g - 1 per group, no repeats


def test_shuffle_files_round_trip(tmp_path):
    table = pa.table({"a": np.arange(100), "b": [str(i) for i in range(100)]})
    partition = np.arange(100) % 7
    partition[partition == 3] = 5  # an empty partition
    shuffle.write(tmp_path / "m0", table, partition, 7)
    shuffle.write(tmp_path / "m1", table.slice(0, 0), np.empty(0, dtype=np.int64), 7)
    files = [str(tmp_path / "m0"), str(tmp_path / "m1")]
    got = [shuffle.read(files, p) for p in range(7)]
    assert got[3] is None
    for p in range(7):
        if p != 3:
            assert got[p].column("a").to_pylist() == [i for i in range(100) if partition[i] == p]
    with pytest.raises(ValueError, match="partition"):
        shuffle.read(files, 7)


# ---- the whole stage against the brute-force oracle ----------------------------------------------------------


@pytest.fixture(scope="module")
def rows():
    return synthetic_rows(seed=11)


def cut(n: int, sizes: list[int]) -> list[int]:
    """Part sizes cycling through `sizes` until n rows are covered."""
    out, i = [], 0
    while sum(out) < n:
        out.append(min(sizes[i % len(sizes)], n - sum(out)))
        i += 1
    return out


def test_stage_equals_brute_force_oracle(tmp_path, rows):
    run = tmp_path / "run"
    write_run(run, rows, cut(len(rows), [400, 37, 250, 1]))
    counts = dedup(run, DedupOptions(), sizes=TINY)
    got = dedup_tuples(run)
    assert got == expected_dedup(rows, 4)
    flagged = sum(1 for r in got if r[2] is not None)
    assert flagged > 100 and counts["duplicates"]["url"] > 0 and counts["duplicates"]["sha256"] > 0
    assert counts["rows"] == len(rows) and counts["images"] == sum(r.success for r in rows)
    assert not list(run.glob(f"{WORK_PREFIX}*")), "the work folder is removed"


def test_stage_with_clip_semantic_and_eval_equals_oracle(tmp_path, rows):
    from curate.dedup.phash import phash_of_bytes

    sample = sorted((Path(__file__).resolve().parents[1] / "pipelines" / "sample" / "images").glob("*.jpg"))[:3]
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    eval_hashes = {}
    for path in sample:
        (eval_dir / path.name).write_bytes(path.read_bytes())
        eval_hashes[path.name] = phash_of_bytes(path.read_bytes())
    rows = [r for r in rows]  # plant rows near the eval images, one of them also an exact copy of another row
    import copy

    leaked = []
    for k, (name, h) in enumerate(eval_hashes.items()):
        for j in range(3):
            row = copy.copy(rows[k * 7 + j])
            if not row.success or row.phash is None:
                continue
            row.url, row.caption, row.phash = f"http://leak.test/{k}/{j}", "leak", h ^ (1 << j) ^ (1 << (j + 9))
            leaked.append(row)
    rows = rows + leaked
    run = tmp_path / "run"
    write_run(run, rows, cut(len(rows), [300, 77]), clip=True, embeddings_parts=3)
    options = DedupOptions(eval_set=str(eval_dir), eval_phash_distance=3, semantic_threshold=0.99, semantic_clusters=6)
    counts = dedup(run, options, sizes=TINY)
    assert counts["semantic_search"] == "on" and counts["eval_images"] == 3
    assert counts["duplicates"]["semantic"] > 0 and counts["duplicates"]["eval_set"] >= len(leaked)
    expected = expected_dedup(rows, 4, clip=True, semantic_threshold=0.99, eval_hashes=eval_hashes, eval_distance=3)
    assert dedup_tuples(run) == expected


# ---- independence from part order, part sizes, engine ---------------------------------------------------------


def run_variant(root: Path, rows, sizes, names=None, map_parts=serial_map, shuffle_sizes=TINY) -> list[tuple]:
    run = root / f"run-{len(list(root.iterdir()))}"
    write_run(run, rows, sizes, names, clip=True, embeddings_parts=2)
    dedup(run, DedupOptions(semantic_threshold=0.99, semantic_clusters=5), map_parts=map_parts, sizes=shuffle_sizes)
    phash = sorted(tuple(r.values()) for r in tables.read_table(run, "phash").to_pylist())
    return dedup_tuples(run), phash


def test_result_does_not_depend_on_parts_order_or_engine(tmp_path, rows):
    n = len(rows)
    reference = run_variant(tmp_path, rows, [n // 2, n - n // 2])
    flagged = [r for r in reference[0] if r[1] is not None]
    assert len(flagged) > 100 and any(r[2] == "semantic" for r in flagged)
    variants = {
        "other part sizes": dict(sizes=cut(n, [13, 200, 90])),
        # names that sort in the reverse of the row order
        "parts listed in another order": dict(sizes=cut(n, [300]), names=[f"part-{9 - i:05d}.parquet" for i in range(4)]),
        "items run in shuffled order": dict(sizes=cut(n, [100, 33]), map_parts=shuffled_map),
        "one partition each": dict(sizes=cut(n, [250]), shuffle_sizes=ShuffleSizes()),
        "a process pool": dict(sizes=cut(n, [180]), map_parts=process_pool_map),
    }
    for label, kwargs in variants.items():
        if "names" in kwargs:
            kwargs["names"] = kwargs["names"][: len(kwargs["sizes"])]
        assert run_variant(tmp_path, rows, **kwargs) == reference, label


# ---- lineage: what a rerun recomputes -------------------------------------------------------------------------


def mtimes(run: Path, table: str) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in tables.list_parts(run, table)}


def test_rerun_recomputes_nothing_and_a_changed_part_redoes_the_global_step(tmp_path, rows):
    run = tmp_path / "run"
    sizes = cut(len(rows), [350])
    write_run(run, rows, sizes)
    dedup(run, DedupOptions(), sizes=TINY)
    phash_before, dedup_before = mtimes(run, "phash"), mtimes(run, "dedup")

    engine = RecordingMap()
    counts = dedup(run, DedupOptions(), map_parts=engine, sizes=TINY)
    assert counts["phash_parts_hashed"] == 0
    assert engine.calls == [("phash_part", 0)], "nothing but an empty pHash map ran"
    assert mtimes(run, "phash") == phash_before and mtimes(run, "dedup") == dedup_before

    # part 1 is downloaded again and its images differ: its shards part changes, its pHash part is redone (here by
    # write_run, as the stage would), and the global step with it
    changed = list(rows)
    start = sizes[0]
    for i in range(start, start + 40):
        changed[i] = type(rows[i])(**{**rows[i].__dict__})
        if changed[i].success:
            changed[i].image = b"downloaded again %d" % i
            changed[i].sha256 = hashlib.sha256(changed[i].image).hexdigest()
        if changed[i].phash is not None:
            changed[i].phash = rows[(i * 7) % start].phash  # now a copy of a row of part 0
    shards0 = tables.part_path(run, "shards", 0).read_bytes()
    write_run(run, changed, sizes)
    assert tables.part_path(run, "shards", 0).read_bytes() == shards0
    engine = RecordingMap()
    counts = dedup(run, DedupOptions(), map_parts=engine, sizes=TINY)
    assert counts["phash_parts_hashed"] == 0  # write_run recorded the new pHash part as the stage would
    assert engine.count("keys_task") > 0 and engine.count("write_dedup_part") == len(sizes)
    assert dedup_tuples(run) == expected_dedup(changed, 4)

    # an output-shaping option redoes the dedup parts; a shuffle size does not
    engine = RecordingMap()
    dedup(run, DedupOptions(phash_distance=2), map_parts=engine, sizes=TINY)
    assert engine.count("write_dedup_part") == len(sizes)
    assert dedup_tuples(run) == expected_dedup(changed, 2)
    engine = RecordingMap()
    dedup(run, DedupOptions(phash_distance=2), map_parts=engine, sizes=ShuffleSizes())
    assert engine.count("write_dedup_part") == 0


def test_new_clip_scores_redo_the_dedup_parts_and_a_removed_part_leaves_no_output(tmp_path, rows):
    run = tmp_path / "run"
    sizes = cut(len(rows), [400])
    write_run(run, rows, sizes)
    dedup(run, DedupOptions(), sizes=TINY)
    write_run(run, rows, sizes, clip=True)  # scoring ran: representatives now follow clip_score
    engine = RecordingMap()
    dedup(run, DedupOptions(), map_parts=engine, sizes=TINY)
    assert engine.count("write_dedup_part") == len(sizes) and engine.count("phash_part") == 0
    assert dedup_tuples(run) == expected_dedup(rows, 4, clip=True)

    last = tables.part_path(run, "shards", len(sizes) - 1)
    last.unlink()
    dedup(run, DedupOptions(), sizes=TINY)
    assert [p.name for p in tables.list_parts(run, "dedup")] == [p.name for p in tables.list_parts(run, "shards")]
    assert [p.name for p in tables.list_parts(run, "phash")] == [p.name for p in tables.list_parts(run, "shards")]
    assert dedup_tuples(run) == expected_dedup(rows[: sum(sizes[:-1])], 4, clip=True)


def test_work_folder_is_removed_when_a_task_fails(tmp_path, rows):
    run = tmp_path / "run"
    write_run(run, rows, cut(len(rows), [500]))

    def failing_map(fn, items, **kwargs):
        if fn.__name__ == "reduce_task":
            raise RuntimeError("worker lost")
        return serial_map(fn, items, **kwargs)

    with pytest.raises(RuntimeError, match="worker lost"):
        dedup(run, DedupOptions(), map_parts=failing_map, sizes=TINY)
    assert not list(run.glob(f"{WORK_PREFIX}*"))
    assert not tables.list_parts(run, "dedup")
    dedup(run, DedupOptions(), sizes=TINY)
    assert dedup_tuples(run) == expected_dedup(rows, 4)
    shutil.rmtree(run)
