"""Semantic duplicates from CLIP image embeddings, SemDeDup style (Abbas et al., 2023), for runs of any size.

Comparing every pair of embeddings is quadratic, so the embeddings are clustered with spherical k-means (faiss) and
pairs are only compared inside a cluster: two images with cosine >= threshold are semantic duplicates. Near-identical
embeddings (the only ones a high threshold keeps) almost always land in the same cluster, which is the premise
SemDeDup rests on; a pair split across clusters is missed, the price of not comparing all pairs.

Design (the global step, curate.dedup.global_step, runs these pieces through the engine):
1. sample (map over embeddings parts): a row is in the sample when a keyed hash of its uid falls below
   fraction x 2^64, fraction = min(1, max(10,000, 40 k) / n) (k clusters, default ~sqrt(n)). The sample is the same
   whatever the parts, their order or the engine, and holds ~40 points per centroid, faiss's own minimum;
2. train (one process): k-means on the sample in a canonical order (by uid), so the centroids are reproducible.
   Memory: sample x dim x 4 bytes (40 k x 512 x 4 = 2.6 GB for k = 31,623, the default at 10^9 rows);
3. assign (map over embeddings parts): nearest centroid of every row; each record (cluster, uid, embedding) goes to
   shuffle partition `cluster mod P`, P = ceil(rows / partition_vectors);
4. search (one task per partition): within each cluster, members in canonical order (uid, then vector), cosine of
   every pair in row blocks of at most 2^24 similarities (64 MB), so a large cluster never needs its full matrix.

Decisions never depend on how rows were split: a float32 screen keeps pairs (and centroid choices) within 1e-4 of a
boundary and these are decided again in float64 by one fixed computation per pair (row), so the BLAS path that a
batch of a given size takes cannot flip a pair at the threshold. The result is semantic links between uids.

Measured (benchmarks/bench_dedup.py, 100,000 512-d float16 embeddings, 1% planted near copies, threshold 0.95, the
shared 2-core dev machine): the same algorithm in one process (semantic_pairs) 32.9 s, peak RSS +908 MB over imports;
partitioned through the stage's tasks (5 partitions, run serially) 42.6 s, +306 MB; the same 955 pairs; on 500
sampled rows every pair that brute force (all pairs) finds is found.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

KMEANS_ITERATIONS = 20
KMEANS_SEED = 1234
SAMPLE_PER_CENTROID = 40
MIN_SAMPLE = 10_000
SIMILARITY_BLOCK = 1 << 24  # similarities computed at once within a cluster (64 MB of float32)
AMBIGUOUS = 1e-4  # float32 results this close to a decision are decided again in float64
_SAMPLE_KEY = "fairsift-semdedp"


def embeddings_matrix(column: pa.ChunkedArray | pa.Array, where: str) -> tuple[np.ndarray, np.ndarray]:
    """A list<float16> column as a float32 matrix of its non-null rows: (row indices, matrix (n, dim))."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    present = np.flatnonzero(~np.asarray(array.is_null().to_numpy(zero_copy_only=False)))
    if present.size == 0:
        return present, np.empty((0, 0), dtype=np.float32)
    kept = array.take(pa.array(present))
    lengths = np.asarray(kept.value_lengths().to_numpy(zero_copy_only=False))
    if lengths.min() != lengths.max():
        raise ValueError(f"{where}: image_embedding lists have different lengths ({lengths.min()}..{lengths.max()})")
    flat = kept.flatten().to_numpy(zero_copy_only=False)
    matrix = np.asarray(flat, dtype=np.float32).reshape(len(present), int(lengths[0]))
    return present, matrix


def l2_normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def default_clusters(n: int) -> int:
    return max(1, round(math.sqrt(n)))


def plan(n_vectors: int, n_clusters: Optional[int]) -> tuple[int, float]:
    """(k, sample fraction) for n_vectors embeddings."""
    k = max(1, min(n_clusters or default_clusters(n_vectors), max(n_vectors, 1)))
    target = max(MIN_SAMPLE, SAMPLE_PER_CENTROID * k)
    return k, min(1.0, target / max(n_vectors, 1))


def in_sample(uids: pa.Array | pa.ChunkedArray, fraction: float) -> np.ndarray:
    """Is each row in the sample: a keyed hash of its uid below fraction x 2^64 (the same on every machine)."""
    if fraction >= 1.0:
        return np.ones(len(uids), dtype=bool)
    objects = np.asarray(uids.to_numpy(zero_copy_only=False), dtype=object)
    hashed = pd.util.hash_array(objects, hash_key=_SAMPLE_KEY, categorize=False)
    return hashed.astype(np.float64) < fraction * 2.0**64


def canonical_order(uids: pa.Array | pa.ChunkedArray, matrix: np.ndarray) -> np.ndarray:
    """Row order by uid, then (for a repeated uid) by the vector's bytes: independent of where rows came from."""
    uids = uids.combine_chunks() if isinstance(uids, pa.ChunkedArray) else uids
    order = np.asarray(pc.sort_indices(uids).to_numpy(), dtype=np.int64)
    sorted_uids = uids.take(pa.array(order)).to_numpy(zero_copy_only=False)
    repeats = np.flatnonzero(sorted_uids[1:] == sorted_uids[:-1])
    if repeats.size:
        raw = np.ascontiguousarray(matrix)
        bounds = np.flatnonzero(np.r_[True, sorted_uids[1:] != sorted_uids[:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi - lo > 1:
                order[lo:hi] = sorted(order[lo:hi], key=lambda i: raw[i].tobytes())
    return order


def train_centroids(vectors: np.ndarray, k: int, seed: int = KMEANS_SEED) -> Optional[np.ndarray]:
    """Spherical k-means centroids (k, dim) of L2-normalised vectors given in canonical order; None when k <= 1."""
    k = min(k, len(vectors))
    if k <= 1:
        return None
    import faiss

    kmeans = faiss.Kmeans(vectors.shape[1], k, niter=KMEANS_ITERATIONS, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1)
    kmeans.train(np.ascontiguousarray(vectors, dtype=np.float32))
    return np.asarray(kmeans.centroids, dtype=np.float32)


def assign(raw: np.ndarray, centroids: Optional[np.ndarray]) -> np.ndarray:
    """Nearest centroid (largest inner product) of each row of `raw` (embeddings as stored, not normalised)."""
    n = len(raw)
    if centroids is None or n == 0:
        return np.zeros(n, dtype=np.int64)
    vectors = l2_normalise(raw.astype(np.float32))
    labels = np.empty(n, dtype=np.int64)
    centroids64 = centroids.astype(np.float64)
    step = max(1, SIMILARITY_BLOCK // len(centroids))
    for lo in range(0, n, step):
        scores = vectors[lo : lo + step] @ centroids.T
        best = np.argmax(scores, axis=1)
        if scores.shape[1] > 1:
            top2 = -np.partition(-scores, 1, axis=1)[:, :2]
            close = np.flatnonzero(top2[:, 0] - top2[:, 1] < AMBIGUOUS)
            for i in close:  # one fixed float64 computation per row, whatever batch it came in
                v = raw[lo + i].astype(np.float64)
                v /= max(np.linalg.norm(v), 1e-300)
                best[i] = int(np.argmax((centroids64 * v).sum(axis=1)))
        labels[lo : lo + step] = best
    return labels


def exact_cosines(raw: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine of rows a[i] and b[i] of `raw` in float64, one fixed computation per pair."""
    va = raw[a].astype(np.float64)
    vb = raw[b].astype(np.float64)
    na = np.sqrt((va * va).sum(axis=1))
    nb = np.sqrt((vb * vb).sum(axis=1))
    return (va * vb).sum(axis=1) / np.where(na * nb > 0, na * nb, 1.0)


def pairs_within(raw: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs (i, j), i < j, of the rows of one cluster (in canonical order) whose cosine is >= threshold."""
    n = len(raw)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    vectors = l2_normalise(raw.astype(np.float32))
    found = []
    step = max(1, SIMILARITY_BLOCK // n)
    for lo in range(0, n, step):
        sims = vectors[lo : lo + step] @ vectors.T
        rows, cols = np.nonzero(sims >= threshold - AMBIGUOUS)
        rows = rows + lo
        upper = cols > rows
        rows, cols = rows[upper], cols[upper]
        if rows.size:
            sure = sims[rows - lo, cols] >= threshold + AMBIGUOUS
            unsure = np.flatnonzero(~sure)
            if unsure.size:
                sure[unsure] = exact_cosines(raw, rows[unsure], cols[unsure]) >= threshold
            found.append(np.stack([rows[sure], cols[sure]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.concatenate(found).astype(np.int64)


def uid_pairs_in_clusters(clusters: np.ndarray, uids: pa.Array, raw: np.ndarray, threshold: float) -> pa.Table:
    """Semantic links (uid_a < uid_b) among rows grouped by cluster: the search of one shuffle partition."""
    uids = uids.combine_chunks() if isinstance(uids, pa.ChunkedArray) else uids
    uid_values = np.asarray(uids.to_numpy(zero_copy_only=False), dtype=object)
    a_all, b_all = [], []
    order = np.argsort(clusters, kind="stable")
    bounds = np.flatnonzero(np.diff(clusters[order])) + 1
    for members in np.split(order, bounds):
        if len(members) < 2:
            continue
        members = members[canonical_order(uids.take(pa.array(members)), raw[members])]
        pairs = pairs_within(raw[members], threshold)
        if len(pairs):
            a_all.append(uid_values[members[pairs[:, 0]]])
            b_all.append(uid_values[members[pairs[:, 1]]])
    a = np.concatenate(a_all) if a_all else np.empty(0, dtype=object)
    b = np.concatenate(b_all) if b_all else np.empty(0, dtype=object)
    first = np.where(a <= b, a, b) if a.size else a
    second = np.where(a <= b, b, a) if a.size else b
    keep = first != second  # a repeated uid is one node: its rows are linked by their URL anyway
    return pa.table({"uid_a": pa.array(first[keep], type=pa.string()),
                     "uid_b": pa.array(second[keep], type=pa.string())})


def semantic_pairs(embeddings: np.ndarray, threshold: float, n_clusters: Optional[int] = None,
                   seed: int = KMEANS_SEED, uids: Optional[list[str]] = None) -> np.ndarray:
    """In-memory reference of the whole search: index pairs (i, j), i < j, of rows whose embeddings have cosine
    >= threshold within a k-means cluster; (m, 2) int64, sorted. `uids` (default: the row numbers as text) fix the
    sample and the canonical order as the partitioned search does."""
    raw = np.asarray(embeddings, dtype=np.float32)
    n = len(raw)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    uid_array = pa.array(uids if uids is not None else [f"{i:012d}" for i in range(n)], type=pa.string())
    k, fraction = plan(n, n_clusters)
    sampled = np.flatnonzero(in_sample(uid_array, fraction))
    order = sampled[canonical_order(uid_array.take(pa.array(sampled)), raw[sampled])]
    centroids = train_centroids(l2_normalise(raw[order]), k, seed)
    links = uid_pairs_in_clusters(assign(raw, centroids), uid_array, raw, threshold)
    index = pd.Series(np.arange(n), index=uid_array.to_pandas()).groupby(level=0).min()
    a = index.reindex(links.column("uid_a").to_pandas()).to_numpy()
    b = index.reindex(links.column("uid_b").to_pandas()).to_numpy()
    pairs = np.sort(np.stack([a, b], axis=1).astype(np.int64), axis=1)
    pairs = np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)
    return pairs
