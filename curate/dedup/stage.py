"""The dedup stage: exact, near, semantic and eval-set duplicates -> RUN/signals/phash/ and RUN/signals/dedup/.

signals/dedup has one row per shards row, in shards order. Rows without an image (failed downloads) cannot be
compared, so they get null dup_of / dup_kind / cluster_size: the filter drops them for their status anyway, and a
join on uid still finds every row. Among the rows with an image:

- duplicates are linked by, in order of precedence, the same URL, the same sha256 (the shards column — img2dataset
  hashes the downloaded bytes; hashed from the stored image where it is null), pHash Hamming distance
  <= phash_distance, and (when signals/embeddings exists) cosine >= semantic_threshold inside k-means clusters;
- linked rows form clusters (connected components); the representative is kept: the member not matching the eval
  set, then with the highest clip_score (when signals/clip exists), then the smallest uid. Every other member gets
  dup_of = representative and dup_kind = the first kind that joins it to the representative;
- a row within eval_phash_distance (default phash_distance) of an image in the eval-set folder is flagged
  "eval_set" whatever else it is; `eval_match` names the nearest eval image (file name relative to the folder, ties
  to the smaller name) and dup_of keeps the contract's meaning: the uid of its cluster's kept representative, null
  when the row is that representative or has no other copy. A representative is flagged too when every member of its cluster matches the eval set.

Extra columns: cluster_size (members of the row's cluster, 1 when unique) and phash_distance (Hamming distance
between the row's pHash and that of its dup_of image, when both exist).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curate import tables
from curate.dedup.clusters import cluster, star_links
from curate.dedup.hamming_index import hamming_distance, near_duplicate_pairs, query
from curate.options import DedupOptions
from curate.dedup.phash import compute_phashes, hash_folder, read_phashes, worker_pool
from curate.schemas import DEDUP, DUP_KINDS, STATUS_SUCCESS, conform, is_test_model_id
from curate.dedup.semantic import embeddings_matrix, semantic_pairs

SHARDS_COLUMNS = ("uid", "url", "status", "sha256")


def _read_shards(run_dir: Path) -> pd.DataFrame:
    parts = tables.list_parts(run_dir, "shards")
    if not parts:
        raise tables.MissingTableError(run_dir, "shards")
    frames = []
    for part in parts:
        missing = [c for c in (*SHARDS_COLUMNS, "image") if c not in pq.read_schema(part).names]
        if missing:
            raise ValueError(f"{part}: shards part lacks columns {missing}")
        frame = tables.read_part(part, columns=SHARDS_COLUMNS).to_pandas()
        success = (frame["status"] == STATUS_SUCCESS).to_numpy()
        if frame.loc[success, "sha256"].isna().any():
            frame["sha256"] = _fill_sha256(part, frame["sha256"], success)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _fill_sha256(part: Path, sha256: pd.Series, success: np.ndarray) -> pd.Series:
    """sha256 of the stored image bytes where the shards column is null (e.g. a downloader that did not hash)."""
    images = tables.read_part(part, columns=["image"]).column("image").to_pylist()
    filled = sha256.copy()
    for i in np.flatnonzero(success & sha256.isna().to_numpy()):
        if images[i]:
            filled.iat[i] = hashlib.sha256(images[i]).hexdigest()
    return filled


def _clip_scores(run_dir: Path, uids: pd.Series) -> np.ndarray | None:
    """clip_score aligned to `uids` (NaN where missing; a repeated uid's first row wins), None without signals/clip."""
    clip = tables.read_table(run_dir, "clip", columns=["uid", "clip_score"], required=False)
    if clip is None:
        return None
    scores = clip.to_pandas().drop_duplicates("uid").set_index("uid")["clip_score"]
    return scores.reindex(uids.to_numpy()).to_numpy(dtype=np.float64)


def _phash_links(phash: np.ndarray, valid: np.ndarray, max_distance: int) -> np.ndarray:
    """Links between rows with pHashes within max_distance: identical hashes as stars, near ones via the index."""
    rows = np.flatnonzero(valid)
    unique, first, inverse = np.unique(phash[rows], return_index=True, return_inverse=True)
    identical = np.stack([rows[first[inverse]], rows], axis=1)
    identical = identical[identical[:, 0] != identical[:, 1]]
    near = near_duplicate_pairs(unique, max_distance)
    return np.concatenate([identical, rows[first[near]].reshape(-1, 2)])


def _from_test_model(run_dir: Path) -> bool:
    """Embeddings of the tiny test model carry no meaning: near-identical vectors would merge unrelated images."""
    clip = tables.read_table(run_dir, "clip", columns=["model"], required=False)
    return clip is not None and any(is_test_model_id(m) for m in clip.column("model").unique().to_pylist() if m)


def _semantic_links(run_dir: Path, uids: pd.Series, options: DedupOptions) -> np.ndarray | None:
    """Links between rows whose image embeddings are semantic duplicates; None when there are no embeddings."""
    if not options.semantic:
        return None
    embeddings = tables.read_table(run_dir, "embeddings", columns=["uid", "image_embedding"], required=False)
    if embeddings is None or _from_test_model(run_dir):
        return None
    first_row = pd.Series(np.arange(embeddings.num_rows), index=embeddings.column("uid").to_pandas())
    row_of_uid = first_row[~first_row.index.duplicated()].reindex(uids.to_numpy()).to_numpy()
    present = np.flatnonzero(~np.isnan(row_of_uid))
    taken = embeddings.column("image_embedding").take(pa.array(row_of_uid[present].astype(np.int64)))
    kept, matrix = embeddings_matrix(taken, str(tables.table_path(run_dir, "embeddings")))
    rows = present[kept]
    pairs = semantic_pairs(matrix, options.semantic_threshold, options.semantic_clusters)
    return rows[pairs].reshape(-1, 2)


def _eval_matches(folder: str, phash: np.ndarray, valid: np.ndarray, max_distance: int):
    """For each row: the file name of its nearest eval image within max_distance (None if none), the distance to it
    (-1 if none); and counts."""
    with worker_pool() as pool:
        names, eval_hashes, unreadable = hash_folder(folder, pool)
    if unreadable:
        print(f"warning: {len(unreadable)} eval-set files did not decode, e.g. {unreadable[0]}", file=sys.stderr)
    rows = np.flatnonzero(valid)
    matched = np.full(len(phash), None, dtype=object)
    matched_distance = np.full(len(phash), -1, dtype=np.int64)
    pairs = query(phash[rows], eval_hashes, max_distance)
    if len(pairs):
        eval_index, row = pairs[:, 0], rows[pairs[:, 1]]
        distance = hamming_distance(eval_hashes[eval_index], phash[row]).astype(np.int64)
        # names are sorted, so the smaller eval index is the smaller name
        best = np.lexsort((eval_index, distance, row))
        first = np.ones(len(best), dtype=bool)
        first[1:] = row[best[1:]] != row[best[:-1]]
        for r, e, d in zip(row[best[first]], eval_index[best[first]], distance[best[first]]):
            matched[r] = names[e]
            matched_distance[r] = d
    counts = {"eval_images": len(names), "eval_unreadable": len(unreadable)}
    return matched, matched_distance, counts


def dedup(run_dir: str | os.PathLike, options: DedupOptions) -> dict:
    run_dir = Path(run_dir)
    hashing = compute_phashes(run_dir)
    shards = _read_shards(run_dir)
    success = (shards["status"] == STATUS_SUCCESS).to_numpy()
    rows = shards.loc[success].reset_index(drop=True)
    n = len(rows)

    hashed = read_phashes(run_dir).column("phash")
    valid = ~np.asarray(hashed.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    phash = np.asarray(hashed.fill_null(0).to_numpy(), dtype=np.uint64)

    links = {
        "url": star_links(rows["url"]),
        "sha256": star_links(rows["sha256"]),
        "phash": _phash_links(phash, valid, options.phash_distance),
    }
    semantic = _semantic_links(run_dir, rows["uid"], options)
    if semantic is not None:
        links["semantic"] = semantic

    extra_counts: dict = {}
    eval_match, eval_distance = np.full(n, None, dtype=object), np.full(n, -1, dtype=np.int64)
    if options.eval_set:
        max_eval = options.eval_phash_distance if options.eval_phash_distance is not None else options.phash_distance
        eval_match, eval_distance, extra_counts = _eval_matches(options.eval_set, phash, valid, max_eval)
    is_eval = eval_distance >= 0

    # NaN (no score) sorts as the lowest score
    clip = _clip_scores(run_dir, rows["uid"])
    clip_rank = -np.nan_to_num(clip, nan=-np.inf) if clip is not None else np.zeros(n)
    uid_rank = np.unique(rows["uid"].to_numpy(dtype=object), return_inverse=True)[1]
    clusters = cluster(n, links, [is_eval, clip_rank, uid_rank, np.arange(n)])

    is_rep = clusters.representative == np.arange(n)
    dup_of = np.where(is_rep, None, rows["uid"].to_numpy(dtype=object)[clusters.representative])
    dup_kind = clusters.kind.copy()
    dup_kind[is_eval] = "eval_set"
    # Hamming distance from the row's pHash to its dup_of image's; -1 (null) where either has none
    rep = clusters.representative
    distance = np.where(valid & valid[rep] & ~is_rep, hamming_distance(phash, phash[rep]).astype(np.int64), -1)
    distance[is_eval] = eval_distance[is_eval]

    out = _full_table(shards, success, dup_of, dup_kind, clusters.size, distance, eval_match)
    tables.write_table(run_dir, "dedup", out)

    kinds = pd.Series(dup_kind).value_counts()
    return {
        "rows": len(shards),
        "images": n,
        "phash_failed": int((~valid).sum()),
        "phash_parts_hashed": hashing["parts_hashed"],  # 0 on a rerun: finished parts are skipped
        "duplicates": {kind: int(kinds.get(kind, 0)) for kind in DUP_KINDS},
        "unique": int(pd.isna(pd.Series(dup_kind)).sum()),
        "semantic_search": _semantic_status(run_dir, semantic, options),
        **extra_counts,
    }


def _semantic_status(run_dir: Path, semantic, options: DedupOptions) -> str:
    if semantic is not None:
        return "on"
    if not options.semantic:
        return "off"
    if not tables.table_exists(run_dir, "embeddings"):
        return "off: no signals/embeddings"
    return "off: embeddings come from the tiny test model"


def _full_table(shards: pd.DataFrame, success: np.ndarray, dup_of, dup_kind, size, distance, eval_match) -> pa.Table:
    """One row per shards row; rows without an image get nulls."""
    n_all = len(shards)
    all_dup_of = np.full(n_all, None, dtype=object)
    all_kind = np.full(n_all, None, dtype=object)
    all_size = np.zeros(n_all, dtype=np.int64)
    all_distance = np.full(n_all, -1, dtype=np.int64)
    all_eval = np.full(n_all, None, dtype=object)
    all_dup_of[success], all_kind[success], all_size[success], all_distance[success] = dup_of, dup_kind, size, distance
    all_eval[success] = eval_match
    table = pa.table({
        "uid": pa.array(shards["uid"].to_numpy(dtype=object), type=pa.string()),
        "dup_of": pa.array(all_dup_of, type=pa.string()),
        "dup_kind": pa.array(all_kind, type=pa.string()),
        "cluster_size": pa.array(all_size, type=pa.int32(), mask=~success),
        "phash_distance": pa.array(all_distance, type=pa.int16(), mask=all_distance < 0),
        "eval_match": pa.array(all_eval, type=pa.string()),
    })
    return conform(table, DEDUP)
