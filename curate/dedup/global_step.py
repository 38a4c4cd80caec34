"""Dedup's global step over a whole run, built so that no process holds all rows, hashes or keys.

Rows are identified by a global row id: the position of the row in the shards parts taken in name order (part
offsets come from the Parquet footers). Row ids only name nodes; no decision depends on them except as the last
tie-break, where they stand for (part name, row), for a uid that repeats.

1. map (one task per group of consecutive shards parts, ~`group_rows` rows; tasks.keys_task): read uid, url,
   status, sha256 (sha256 from the image bytes where null) and the phash part; write exact-key records
   (curate.dedup.exact) and pHash multi-index records (curate.dedup.near) into shuffle files; match each pHash
   against the eval set (as today: nearest eval image within eval_phash_distance); write the part's nodes file.
2. semantic (when signals/embeddings holds real-model embeddings; curate.dedup.semantic): sample map, k-means
   trained on the sample in this process, assign map into a shuffle by cluster.
3. reduce (one task per partition of every shuffle; tasks.reduce_task): links within the partition, saved.
4. clusters (this process; curate.dedup.clusters): connected components over the links and the representative of
   each. Memory is proportional to the LINKS and the rows they touch, never to the run: the links (16 bytes each per
   kind), and for each linked row its uid, pHash, eval flag and clip_score (~100 bytes), read by streaming the nodes
   files and the clip parts and keeping only linked rows. E.g. 10^8 links among 10^8 rows: ~15 GB, within one large
   node; scipy's connected_components on the compacted graph is linear in links.
5. resolve: per linked row, dup_of / dup_kind / cluster_size / phash_distance, written per shards part for the
   final per-part write (stage.write_dedup_part).

The representative of a cluster: not an eval-set match, then the highest clip_score, then the smallest uid, then the
smallest (part name, row). No step depends on part order, part sizes, worker count or engine: shuffle partitions are
chosen by key hashes, links are exact sets, the k-means sample is chosen by uid hash and trained in uid order.

Measured (benchmarks/bench_dedup.py: the stage on synthetic runs in 10k-row parts, pHash parts current): peak RSS
241 MB for 20k rows and 269 MB for 400k rows with ~10% duplicates (ratio 1.12). In the worst case, every image the
same one, every row is linked and step 4 holds ~200 bytes per linked row: 226 MB vs 300 MB (ratio 1.33). More
figures: benchmarks/README.md ("dedup") and the docstrings of near, exact and semantic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import tables
from curate.dedup import near, semantic
from curate.dedup.clusters import cluster
from curate.dedup.hamming_index import hamming_distance, sorted_unique
from curate.dedup.shuffle import partition_count
from curate.dedup.tasks import (EmbeddingsTask, KeysTask, ReduceTask, assign_task, keys_task, map_file, reduce_task,
                                sample_task, write_temp)
from curate.options import DedupOptions
from curate.parts import MapParts, sum_counts
from curate.schemas import is_test_model_id

ROW_KINDS = ("url", "sha256", "phash")


@dataclass(frozen=True)
class ShuffleSizes:
    """How the global step cuts the work (speed and memory only; the result is the same for any sizes).

    Unset sizes are constant up to ~50M rows, so a task's memory does not grow with the run; beyond that they grow
    so the shuffle stays within ~1,000 map files x ~2,000 partitions (at 10^9 rows: 1M rows per map task, ~2.5M
    records per partition, a few hundred MB per task).
    """

    group_rows: Optional[int] = None  # shards rows per map task (its records are sorted in memory)
    partition_records: Optional[int] = None  # exact-key or pHash records per reduce task (~60 bytes each at peak)
    partition_vectors: Optional[int] = None  # embeddings per semantic reduce task

    def resolved(self, n_rows: int, n_vectors: int) -> "ShuffleSizes":
        return ShuffleSizes(
            group_rows=self.group_rows or max(MIN_GROUP_ROWS, -(-n_rows // MAX_MAP_TASKS)),
            partition_records=self.partition_records or max(MIN_PARTITION_RECORDS, -(-5 * n_rows // MAX_PARTITIONS)),
            partition_vectors=self.partition_vectors or max(MIN_PARTITION_VECTORS, -(-n_vectors // MAX_PARTITIONS)))


MIN_GROUP_ROWS = 50_000
MIN_PARTITION_RECORDS = 250_000
MIN_PARTITION_VECTORS = 20_000
MAX_MAP_TASKS = 1_000
MAX_PARTITIONS = 2_000


def map_groups(parts: list[tuple[str, int]], group_rows: int) -> list[tuple[tuple[str, int], ...]]:
    """Consecutive (part name, first row id) groups of about group_rows rows (at least one part each)."""
    groups, current, rows, offset = [], [], 0, 0
    for name, n in parts:
        if current and rows + n > group_rows:
            groups.append(tuple(current))
            current, rows = [], 0
        current.append((name, offset))
        rows += n
        offset += n
    if current:
        groups.append(tuple(current))
    return groups


def semantic_status(run_dir: Path, options: DedupOptions) -> str:
    if not options.semantic:
        return "off"
    if not tables.table_exists(run_dir, "embeddings"):
        return "off: no signals/embeddings"
    for path in tables.list_parts(run_dir, "clip"):
        models = pc.unique(pq.read_table(path, columns=["model"]).column("model")).to_pylist()
        if any(m and is_test_model_id(m) for m in models):
            # embeddings of the tiny test model carry no meaning: near-identical vectors would merge unrelated images
            return "off: embeddings come from the tiny test model"
    return "on"


def run(run_dir: Path, options: DedupOptions, parts: list[tuple[str, int]], work: Path, map_parts: MapParts,
        sizes: ShuffleSizes, eval_names: list[str], eval_hashes: np.ndarray) -> dict:
    """Run the global step into the work folder (resolved/<part> and nodes/<part> for the final write)."""
    work.mkdir(parents=True, exist_ok=True)
    write_temp(pa.table({"name": pa.array(eval_names, type=pa.string())}), work / "eval_names.parquet")
    n_rows = sum(n for _, n in parts)
    n_vectors = sum(pq.read_metadata(p).num_rows for p in tables.list_parts(run_dir, "embeddings"))
    sizes = sizes.resolved(n_rows, n_vectors)
    groups = map_groups(parts, sizes.group_rows)
    exact_partitions = partition_count(2 * n_rows, sizes.partition_records)
    near_partitions = (partition_count(near.records_per_row(options.phash_distance) * n_rows, sizes.partition_records)
                       if near.outer_blocks(options.phash_distance) else 1)
    eval_distance = options.eval_phash_distance if options.eval_phash_distance is not None else options.phash_distance
    keys = [KeysTask(run_dir=str(run_dir), work=str(work), index=i, parts=group, exact_partitions=exact_partitions,
                     near_partitions=near_partitions, phash_distance=options.phash_distance,
                     eval_hashes=tuple(int(h) for h in eval_hashes), eval_distance=eval_distance)
            for i, group in enumerate(groups)]
    map_counts = sum_counts(map_parts(keys_task, keys, desc="dedup keys"))

    reduces = [ReduceTask(str(work), "exact", p, len(groups)) for p in range(exact_partitions)]
    reduces += [ReduceTask(str(work), "near", p, len(groups), phash_distance=options.phash_distance)
                for p in range(near_partitions)]
    status = semantic_status(run_dir, options)
    if status == "on":
        reduces += _semantic_map(run_dir, options, work, map_parts, sizes)
    link_counts = sum_counts(map_parts(reduce_task, reduces, desc="dedup search"))
    resolved = resolve(run_dir, work, parts, with_semantic=status == "on")
    return {"semantic_search": status, "map": map_counts, "links": link_counts, "linked_rows": resolved}


def _semantic_map(run_dir: Path, options: DedupOptions, work: Path, map_parts: MapParts,
                  sizes: ShuffleSizes) -> list[ReduceTask]:
    """Sample, train k-means here, assign every embedding into the semantic shuffle; returns its reduce tasks."""
    emb_parts = tables.list_parts(run_dir, "embeddings")
    n_vectors = sum(pq.read_metadata(p).num_rows for p in emb_parts)
    k, fraction = semantic.plan(n_vectors, options.semantic_clusters)
    items = [EmbeddingsTask(str(run_dir), str(work), i, p.name, fraction=fraction) for i, p in enumerate(emb_parts)]
    map_parts(sample_task, items, desc="k-means sample")
    sample = pa.concat_tables([pq.read_table(work / "sample" / f"{map_file(i)}.parquet") for i in range(len(items))])
    present, raw = semantic.embeddings_matrix(sample.column("image_embedding"), str(work / "sample"))
    uids = sample.column("uid").combine_chunks().take(pa.array(present))
    order = semantic.canonical_order(uids, raw)
    centroids = semantic.train_centroids(semantic.l2_normalise(raw[order]), k)
    del sample, raw
    if centroids is not None:
        np.save(work / "centroids.npy", centroids)
    partitions = partition_count(n_vectors, sizes.partition_vectors)
    items = [EmbeddingsTask(str(run_dir), str(work), i, p.name, partitions=partitions) for i, p in enumerate(emb_parts)]
    map_parts(assign_task, items, desc="k-means assign")
    return [ReduceTask(str(work), "semantic", p, len(items), threshold=options.semantic_threshold)
            for p in range(partitions)]


def _endpoints(links) -> np.ndarray:
    """The distinct rows that links touch, ascending."""
    rows = np.concatenate([l.reshape(-1) for l in links]) if links else np.empty(0, dtype=np.int64)
    rows.sort()
    return sorted_unique(rows, presorted=True)[0]


def _row_links(work: Path, kind: str) -> np.ndarray:
    files = sorted((work / "links").glob(f"{kind}-*.npy"))
    arrays = [np.load(f) for f in files]
    return np.concatenate(arrays) if arrays else np.empty((0, 2), dtype=np.int64)


def _node_attributes(work: Path, part_names: list[str], linked: np.ndarray, uids: Optional[pa.Array]) -> pa.Table:
    """Nodes-file rows (row, uid, phash, eval_distance) whose row is in `linked` (sorted) or whose uid is in `uids`,
    streamed part by part."""
    pieces = []
    for name in part_names:
        nodes = pq.read_table(work / "nodes" / name, columns=["row", "uid", "phash", "eval_distance"])
        rows = nodes.column("row").to_numpy()
        pos = np.minimum(np.searchsorted(linked, rows), max(len(linked) - 1, 0))
        hit = (linked[pos] == rows) if len(linked) else np.zeros(len(rows), dtype=bool)
        if uids is not None and len(uids):
            hit |= np.asarray(pc.is_in(nodes.column("uid"), value_set=uids).to_numpy(zero_copy_only=False), bool)
        if hit.any():
            pieces.append(nodes.filter(pa.array(hit)).combine_chunks())
    if not pieces:
        return pa.table({"row": pa.array([], pa.int64()), "uid": pa.array([], pa.string()),
                         "phash": pa.array([], pa.uint64()), "eval_distance": pa.array([], pa.int16())})
    # one chunk per part is fine for what follows (takes, ranks): no copy of the whole
    return pa.concat_tables(pieces)


def _clip_scores(run_dir: Path, uids: pa.Array) -> Optional[np.ndarray]:
    """The highest clip_score of each uid (NaN where none), streamed over the clip parts; None without signals/clip."""
    parts = tables.list_parts(run_dir, "clip")
    if not parts:
        return None
    wanted = pc.unique(uids)
    pieces = []
    for path in parts:
        clip = pq.read_table(path, columns=["uid", "clip_score"])
        pieces.append(clip.filter(pc.is_in(clip.column("uid"), value_set=wanted)))
    found = pa.concat_tables(pieces).group_by("uid").aggregate([("clip_score", "max")])
    best = pd.Series(found.column("clip_score_max").to_numpy(zero_copy_only=False).astype(np.float64),
                     index=found.column("uid").to_pandas())
    return best.reindex(uids.to_pandas()).to_numpy(dtype=np.float64)


def resolve(run_dir: Path, work: Path, parts: list[tuple[str, int]], *, with_semantic: bool) -> int:
    """Connected components over all links, the representative of each, and resolved/<part> files; returns the
    number of linked rows."""
    links = {kind: _row_links(work, kind) for kind in ROW_KINDS}
    linked = _endpoints(links.values())
    sem_links = None
    if with_semantic:
        files = sorted((work / "links").glob("semantic-*.parquet"))
        sem_links = pa.concat_tables([pq.read_table(f) for f in files]) if files else None
    sem_uids = pc.unique(pa.concat_arrays([sem_links.column("uid_a").combine_chunks(),
                                           sem_links.column("uid_b").combine_chunks()])) if sem_links else None
    attrs = _node_attributes(work, [name for name, _ in parts], linked, sem_uids)
    if sem_links is not None:
        links["semantic"] = _semantic_row_links(sem_links, attrs)

    nodes = _endpoints(links.values()) if sem_links is not None else linked
    del linked
    if nodes.size == 0:
        return 0
    if attrs.num_rows != len(nodes):  # rows fetched for a semantic uid that stands for another row
        attrs = attrs.take(pa.array(np.searchsorted(attrs.column("row").to_numpy(), nodes)))
    n = len(nodes)
    kinds = list(links)
    compact = {}
    for kind in kinds:
        compact[kind] = np.searchsorted(nodes, links.pop(kind).reshape(-1, 2)).astype(np.int32 if n < 2**31 else np.int64)
    uids = attrs.column("uid")
    is_eval = ~np.asarray(attrs.column("eval_distance").is_null().to_numpy(zero_copy_only=False), dtype=bool)
    clip = _clip_scores(run_dir, uids)
    # NaN (no score) sorts as the lowest score
    clip_rank = -np.nan_to_num(clip, nan=-np.inf) if clip is not None else np.zeros(n)
    uid_rank = np.asarray(pc.rank(uids, sort_keys="ascending", tiebreaker="dense").to_numpy(), dtype=np.int64)
    clusters = cluster(n, compact, [is_eval, clip_rank, uid_rank, nodes])

    rep = clusters.representative
    is_rep = rep == np.arange(n)
    phash = attrs.column("phash")
    valid = ~np.asarray(phash.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    hashes = np.asarray(phash.fill_null(0).to_numpy(), dtype=np.uint64)
    distance = hamming_distance(hashes, hashes[rep]).astype(np.int16)
    dup_of = pc.if_else(pa.array(is_rep), pa.scalar(None, pa.string()), uids.take(pa.array(rep)))
    del compact
    kind = pa.array(kinds, pa.string()).take(pa.array(clusters.kind, mask=clusters.kind < 0))

    starts = np.array([0] + list(np.cumsum([n_rows for _, n_rows in parts])), dtype=np.int64)
    part_of = np.searchsorted(starts, nodes, side="right") - 1
    bounds = np.searchsorted(part_of, np.arange(len(parts) + 1))
    for i, (name, _) in enumerate(parts):
        lo, hi = bounds[i], bounds[i + 1]
        if hi == lo:
            continue
        sl = slice(lo, hi)
        write_temp(pa.table({
            "index": pa.array((nodes[sl] - starts[i]).astype(np.int32)),
            "dup_of": dup_of.slice(lo, hi - lo),
            "dup_kind": kind.slice(lo, hi - lo),
            "cluster_size": pa.array(clusters.size[sl].astype(np.int32)),
            "phash_distance": pa.array(distance[sl], mask=~(valid[sl] & valid[rep[sl]] & ~is_rep[sl])),
        }), work / "resolved" / name)
    return n


def _semantic_row_links(sem_links: pa.Table, attrs: pa.Table) -> np.ndarray:
    """Semantic links between uids as links between rows: each uid stands for its smallest row (rows sharing a uid
    share their URL, so they are linked anyway). Links to a uid without an image row are dropped."""
    first_row = attrs.group_by("uid").aggregate([("row", "min")])
    index = pd.Series(first_row.column("row_min").to_numpy(), index=first_row.column("uid").to_pandas())
    a = index.reindex(sem_links.column("uid_a").to_pandas()).to_numpy()
    b = index.reindex(sem_links.column("uid_b").to_pandas()).to_numpy()
    keep = ~(np.isnan(a) | np.isnan(b)) if a.dtype.kind == "f" else np.ones(len(a), dtype=bool)
    return np.stack([a[keep], b[keep]], axis=1).astype(np.int64).reshape(-1, 2)
