"""Semantic duplicates from CLIP image embeddings, SemDeDup style (Abbas et al., 2023).

Comparing every pair of embeddings is quadratic, so the embeddings are first clustered with spherical k-means (faiss)
and pairs are only compared inside a cluster: two images with cosine >= threshold are semantic duplicates. Near-
identical embeddings (the only ones a high threshold keeps) almost always land in the same cluster, which is the
premise SemDeDup rests on; a pair split across clusters is missed, the price of not comparing all pairs.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

ROW_BLOCK = 2048  # rows of a cluster compared at once, so a big cluster never needs its full similarity matrix
KMEANS_ITERATIONS = 20
KMEANS_SEED = 1234


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


def cluster_labels(vectors: np.ndarray, n_clusters: int, seed: int = KMEANS_SEED) -> np.ndarray:
    """Spherical k-means cluster of each (L2-normalised) vector, by inner product with the centroids."""
    n, dim = vectors.shape
    k = min(n_clusters, n)
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    import faiss

    kmeans = faiss.Kmeans(dim, k, niter=KMEANS_ITERATIONS, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1)
    kmeans.train(vectors)
    index = faiss.IndexFlatIP(dim)
    index.add(kmeans.centroids)
    _, labels = index.search(vectors, 1)
    return labels[:, 0].astype(np.int64)


def pairs_within(vectors: np.ndarray, members: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs (i, j), i < j, of `members` (row indices) whose cosine is >= threshold."""
    found = []
    cluster = vectors[members]
    for start in range(0, len(members), ROW_BLOCK):
        sims = cluster[start : start + ROW_BLOCK] @ cluster.T
        rows, cols = np.nonzero(sims >= threshold)
        rows = rows + start
        upper = cols > rows
        if upper.any():
            found.append(np.stack([members[rows[upper]], members[cols[upper]]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    return np.sort(pairs, axis=1)


def semantic_pairs(embeddings: np.ndarray, threshold: float, n_clusters: int | None = None,
                   seed: int = KMEANS_SEED) -> np.ndarray:
    """Index pairs (i, j), i < j, of rows whose L2-normalised embeddings have cosine >= threshold within a k-means
    cluster (k defaults to ~sqrt(n)); shape (m, 2) int64, sorted."""
    vectors = np.ascontiguousarray(l2_normalise(np.asarray(embeddings, dtype=np.float32)))
    n = len(vectors)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    labels = cluster_labels(vectors, n_clusters or default_clusters(n), seed)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    found = [pairs_within(vectors, members, threshold) for members in np.split(order, bounds) if len(members) > 1]
    found = [p for p in found if len(p)]
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
