"""The map and reduce tasks of dedup's global step: module-level functions over small picklable items, so that any
engine (serial, local processes, Ray) can run them. Each reads and writes files in the step's work folder; results
are small count dicts. The design is in curate.dedup.global_step.

Work folder layout (`RUN/.dedup-work-*`, deleted when the stage ends):
  nodes/<shards part>      per image row: global row id, index in its part, uid, pHash, nearest eval-set image
  exact/NNNNNN, near/NNNNNN, semantic/NNNNNN   shuffle files of map task NNNNNN (curate.dedup.shuffle)
  links/<kind>-PPPPPP.npy  row links found by reduce task PPPPPP; links/semantic-PPPPPP.parquet: uid links
  sample/NNNNNN.parquet, centroids.npy   k-means sample and centroids
  resolved/<shards part>   per linked row: dup_of, dup_kind, cluster_size, phash_distance
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate import tables
from curate.dedup import exact, near, semantic, shuffle
from curate.dedup.hamming_index import hamming_distance, query
from curate.dedup.phash import check_shards_part, success_mask

# eval_index: position of the nearest eval-set image in the sorted list of eval file names
NODES_SCHEMA = pa.schema([("row", pa.int64()), ("index", pa.int32()), ("uid", pa.string()), ("phash", pa.uint64()),
                          ("eval_distance", pa.int16()), ("eval_index", pa.int32())])


def map_file(index: int) -> str:
    return f"{index:06d}"


def write_temp(table: pa.Table, path: Path) -> None:
    """Work files are scratch, not parts of a table: plain Parquet, no digest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="lz4")


@dataclass(frozen=True)
class KeysTask:
    """Map task over consecutive shards parts: (part name, global row id of its first row) each."""

    run_dir: str
    work: str
    index: int
    parts: tuple[tuple[str, int], ...]
    exact_partitions: int
    near_partitions: int
    phash_distance: int
    eval_hashes: tuple[int, ...] = ()
    eval_distance: int = 0


def nearest_eval(hashes: np.ndarray, eval_hashes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
    """For each hash: the index of its nearest eval hash within max_distance (ties to the smaller index, i.e. the
    smaller file name) and the distance; -1 and -1 where none."""
    match = np.full(len(hashes), -1, dtype=np.int64)
    distance = np.full(len(hashes), -1, dtype=np.int64)
    pairs = query(hashes, eval_hashes, max_distance) if len(eval_hashes) and len(hashes) else np.empty((0, 2), int)
    if len(pairs):
        eval_index, row = pairs[:, 0], pairs[:, 1]
        d = hamming_distance(eval_hashes[eval_index], hashes[row]).astype(np.int64)
        best = np.lexsort((eval_index, d, row))
        first = np.ones(len(best), dtype=bool)
        first[1:] = row[best[1:]] != row[best[:-1]]
        match[row[best[first]]] = eval_index[best[first]]
        distance[row[best[first]]] = d[best[first]]
    return match, distance


def _filled_sha256(path: Path, sha256: pa.Array, success: np.ndarray) -> pa.Array:
    """sha256 of the stored image bytes where the shards column is null (e.g. a downloader that did not hash)."""
    missing = np.flatnonzero(success & np.asarray(sha256.is_null().to_numpy(zero_copy_only=False), dtype=bool))
    if missing.size == 0:
        return sha256
    values = sha256.to_pylist()
    file = pq.ParquetFile(path)
    start = 0
    wanted = set(missing.tolist())
    for batch in file.iter_batches(batch_size=256, columns=["image"]):
        for i, data in enumerate(batch.column("image").to_pylist()):
            if start + i in wanted and data:
                values[start + i] = hashlib.sha256(data).hexdigest()
        start += batch.num_rows
    return pa.array(values, type=pa.string())


def keys_task(task: KeysTask) -> dict:
    """Map side: exact-key and pHash shuffle records of a group of shards parts, and each part's nodes file."""
    run, work = Path(task.run_dir), Path(task.work)
    eval_hashes = np.array(task.eval_hashes, dtype=np.uint64)
    exact_tables, near_rows, near_hashes = [], [], []
    counts = {"rows": 0, "images": 0, "phash_failed": 0, "eval_matches": 0}
    for name, offset in task.parts:
        shards_path = tables.part_path(run, "shards", name)
        check_shards_part(shards_path)
        shards = pq.read_table(shards_path, columns=["uid", "url", "status", "sha256"])
        success = success_mask(shards.column("status"))
        local = np.flatnonzero(success)
        take = pa.array(local)
        uid = shards.column("uid").combine_chunks().take(take)
        sha256 = _filled_sha256(shards_path, shards.column("sha256").combine_chunks(), success).take(take)
        phash_path = tables.part_path(run, "phash", name)
        hashed = pq.read_table(phash_path, columns=["uid", "phash"])
        if not hashed.column("uid").combine_chunks().equals(uid):
            raise ValueError(f"{phash_path} does not match {shards_path} (different uids); rerun `fairsift dedup`")
        phash = hashed.column("phash").combine_chunks()
        valid = ~np.asarray(phash.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        hashes = np.asarray(phash.fill_null(0).to_numpy(), dtype=np.uint64)
        rows = offset + local.astype(np.int64)

        exact_tables.append(exact.records(rows, {"url": shards.column("url").combine_chunks().take(take),
                                                 "sha256": sha256}))
        near_rows.append(rows[valid])
        near_hashes.append(hashes[valid])

        match = np.full(len(rows), -1, dtype=np.int64)
        distance = np.full(len(rows), -1, dtype=np.int64)
        match[valid], distance[valid] = nearest_eval(hashes[valid], eval_hashes, task.eval_distance)
        has_match = match >= 0
        write_temp(pa.table({
            "row": pa.array(rows), "index": pa.array(local.astype(np.int32)), "uid": uid,
            "phash": phash, "eval_distance": pa.array(distance.astype(np.int16), mask=~has_match),
            "eval_index": pa.array(match.astype(np.int32), mask=~has_match),
        }, schema=NODES_SCHEMA), work / "nodes" / name)
        counts["rows"] += shards.num_rows
        counts["images"] += len(rows)
        counts["phash_failed"] += int((~valid).sum())
        counts["eval_matches"] += int(has_match.sum())
    # combiners: rows of this task sharing a key or a pHash are linked here; one record per key goes on
    records, links = exact.combine(pa.concat_tables(exact_tables))
    del exact_tables
    shuffle.write(work / "exact" / map_file(task.index), records, exact.partitions(records, task.exact_partitions),
                  task.exact_partitions)
    del records
    heads, distinct, links["phash"] = near.combine(np.concatenate(near_rows), np.concatenate(near_hashes))
    del near_rows, near_hashes
    records, partition = near.records(heads, distinct, task.phash_distance, task.near_partitions)
    shuffle.write(work / "near" / map_file(task.index), records, partition, task.near_partitions)
    save_links(work, f"map{map_file(task.index)}", links)
    return counts


def save_links(work: Path, suffix: str, links: dict[str, np.ndarray]) -> None:
    (work / "links").mkdir(parents=True, exist_ok=True)
    for kind, pairs in links.items():
        if len(pairs):
            np.save(work / "links" / f"{kind}-{suffix}.npy", np.asarray(pairs, dtype=np.int64).reshape(-1, 2))


@dataclass(frozen=True)
class ReduceTask:
    """Reduce task: one partition of one shuffle ("exact", "near" or "semantic") over n_maps map files."""

    work: str
    shuffle: str
    partition: int
    n_maps: int
    phash_distance: int = 0
    threshold: float = 1.0


def _partition_records(task: ReduceTask, schema: Optional[pa.Schema] = None) -> Optional[pa.Table]:
    folder = Path(task.work) / task.shuffle
    return shuffle.read(shuffle.map_files(folder, [map_file(i) for i in range(task.n_maps)]), task.partition, schema)


def reduce_task(task: ReduceTask) -> dict:
    """Reduce side: the links within one partition, saved in the work folder; returns how many of each kind."""
    links_dir = Path(task.work) / "links"
    links_dir.mkdir(parents=True, exist_ok=True)
    suffix = f"{task.partition:06d}"
    if task.shuffle == "exact":
        records = _partition_records(task, exact.RECORD_SCHEMA)
        found = exact.links_in_partition(records)
    elif task.shuffle == "near":
        records = _partition_records(task, near.RECORD_SCHEMA)
        found = {"phash": near.links_in_partition(records, task.phash_distance)}
    elif task.shuffle == "semantic":
        records = _partition_records(task)
        if records is None or records.num_rows == 0:
            return {"semantic": 0}
        _, raw = semantic.embeddings_matrix(records.column("image_embedding"), f"{task.work} semantic {suffix}")
        links = semantic.uid_pairs_in_clusters(records.column("cluster").to_numpy(), records.column("uid"), raw,
                                               task.threshold)
        write_temp(links, links_dir / f"semantic-{suffix}.parquet")
        return {"semantic": links.num_rows}
    else:
        raise ValueError(f"unknown shuffle {task.shuffle!r}")
    save_links(Path(task.work), suffix, found)
    return {kind: len(pairs) for kind, pairs in found.items()}


@dataclass(frozen=True)
class EmbeddingsTask:
    """Map task over one embeddings part: take the k-means sample, or assign rows to centroids and shuffle them."""

    run_dir: str
    work: str
    index: int
    part: str
    fraction: float = 1.0
    partitions: int = 1


def _embeddings(task: EmbeddingsTask) -> tuple[pa.Array, np.ndarray, pa.Array]:
    path = tables.part_path(task.run_dir, "embeddings", task.part)
    table = pq.read_table(path, columns=["uid", "image_embedding"])
    column = table.column("image_embedding").combine_chunks()
    present, raw = semantic.embeddings_matrix(column, str(path))
    return table.column("uid").combine_chunks().take(pa.array(present)), raw, column.take(pa.array(present))


def sample_task(task: EmbeddingsTask) -> dict:
    uids, raw, column = _embeddings(task)
    chosen = pa.array(np.flatnonzero(semantic.in_sample(uids, task.fraction)))
    write_temp(pa.table({"uid": uids.take(chosen), "image_embedding": column.take(chosen)}),
               Path(task.work) / "sample" / f"{map_file(task.index)}.parquet")
    return {"rows": len(uids), "sampled": len(chosen)}


def assign_task(task: EmbeddingsTask) -> dict:
    uids, raw, column = _embeddings(task)
    centroids_path = Path(task.work) / "centroids.npy"
    centroids = np.load(centroids_path) if centroids_path.exists() else None
    labels = semantic.assign(raw, centroids)
    records = pa.table({"cluster": pa.array(labels.astype(np.int32)), "uid": uids, "image_embedding": column})
    shuffle.write(Path(task.work) / "semantic" / map_file(task.index), records,
                  labels % task.partitions, task.partitions)
    return {"rows": len(uids)}
