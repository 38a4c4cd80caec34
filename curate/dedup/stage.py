"""The dedup stage: exact, near, semantic and eval-set duplicates -> RUN/signals/phash/ and RUN/signals/dedup/.

On the part model (curate.parts): pHash is a per-part function (shards part -> phash part), then a global step over
the whole run (curate.dedup.global_step: shuffled, partitioned searches run by the engine's map_parts), then a
per-part write (shards part -> dedup part). Every dedup part's lineage holds its shards and phash parts' digests, a
combined digest of everything the global step read (all shards, phash, clip and embeddings parts, the eval set's
image files) and the options that shape it: a rerun with nothing changed recomputes nothing, and any change redoes
the global step and rewrites exactly the dedup parts whose content can change.

signals/dedup has one part per shards part, one row per shards row, in shards order. Rows without an image (failed
downloads) cannot be compared, so they get null dup_of / dup_kind / cluster_size: the filter drops them for their
status anyway, and a join on uid still finds every row. Among the rows with an image:

- duplicates are linked by, in order of precedence, the same URL, the same sha256 (the shards column — img2dataset
  hashes the downloaded bytes; hashed from the stored image where it is null), pHash Hamming distance
  <= phash_distance, and (when signals/embeddings holds real-model embeddings) cosine >= semantic_threshold inside
  k-means clusters;
- linked rows form clusters (connected components); the representative is kept: the member not matching the eval
  set, then with the highest clip_score (when signals/clip exists), then the smallest uid, then the smallest
  (part name, row). Every other member gets dup_of = representative and dup_kind = the first kind that joins it to
  the representative;
- a row within eval_phash_distance (default phash_distance) of an image in the eval-set folder is flagged
  "eval_set" whatever else it is; `eval_match` names the nearest eval image (file name relative to the folder, ties
  to the smaller name) and dup_of keeps the contract's meaning: the uid of its cluster's kept representative, null
  when the row is that representative or has no other copy. A representative is flagged too when every member of
  its cluster matches the eval set.

Extra columns: cluster_size (members of the row's cluster, 1 when unique) and phash_distance (Hamming distance
between the row's pHash and that of its dup_of image, when both exist; for an eval-set match, to the eval image).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import tables
from curate.dedup import semantic
from curate.dedup.global_step import ShuffleSizes, run
from curate.dedup.phash import check_shards_part, compute_phashes, hash_folder, image_files, success_mask
from curate.options import DedupOptions
from curate.parts import (MapParts, PartTask, canonical, combined_digest, part_digest, plan_tasks,
                          remove_stale_outputs, serial_map)
from curate.schemas import DEDUP, DUP_KINDS, conform

WORK_PREFIX = ".dedup-work-"
SUMMARY_KEY = b"fairsift.dedup.summary"
# bump when the algorithm changes what it writes, so parts written by an older version are redone
ALGORITHM_VERSION = 2


def lineage_options(options: DedupOptions) -> dict:
    """What shapes the dedup parts: the stage options and the fixed parameters of the semantic search."""
    return {"options": canonical(options), "version": ALGORITHM_VERSION,
            "kmeans": {"iterations": semantic.KMEANS_ITERATIONS, "seed": semantic.KMEANS_SEED,
                       "sample_per_centroid": semantic.SAMPLE_PER_CENTROID, "min_sample": semantic.MIN_SAMPLE}}


def global_inputs_digest(run_dir: Path, options: DedupOptions) -> str:
    """One digest of everything the global step reads: every shards, phash, clip and embeddings part and the eval
    set's image files (by name and content)."""
    entries = []
    for table in ("shards", "phash", "clip", "embeddings"):
        entries += [f"{table}/{p.name}={part_digest(p)}" for p in tables.list_parts(run_dir, table)]
    if options.eval_set:
        root = Path(options.eval_set)
        entries += [f"eval/{p.relative_to(root).as_posix()}={part_digest(p)}" for p in image_files(root)]
    return combined_digest(entries)


def dedup(run_dir: str | os.PathLike, options: DedupOptions, *, map_parts: MapParts = serial_map,
          sizes: Optional[ShuffleSizes] = None) -> dict:
    """Compute signals/phash and signals/dedup (see the module docstring); returns counts over the whole table.
    `sizes` only changes how the global step cuts its work, never the result."""
    run_dir = Path(run_dir)
    shard_parts = tables.list_parts(run_dir, "shards")
    if not shard_parts:
        raise tables.MissingTableError(run_dir, "shards")
    for path in shard_parts:
        check_shards_part(path)
    hashing = compute_phashes(run_dir, map_parts=map_parts)

    work_name = f"{WORK_PREFIX}{uuid.uuid4().hex[:12]}"
    items = [(p.name, [f"shards/{p.name}", f"signals/phash/{p.name}"], [f"signals/dedup/{p.name}"])
             for p in shard_parts]
    digest = global_inputs_digest(run_dir, options)
    todo, current = plan_tasks("dedup", run_dir, items, lineage_options(options), settings={"work": work_name},
                               extra_inputs={"global": digest})
    if todo:
        for stale in run_dir.glob(f"{WORK_PREFIX}*"):  # left by a killed run; one stage writes a run at a time
            shutil.rmtree(stale, ignore_errors=True)
        work = run_dir / work_name
        try:
            summary = _global_step(run_dir, options, shard_parts, work, map_parts, sizes or ShuffleSizes())
            todo = [dataclasses.replace(t, settings={**t.settings, "summary": summary}) for t in todo]
            map_parts(write_dedup_part, todo, desc="dedup write")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    else:
        summary = _stored_summary(current)
    remove_stale_outputs(tables.table_path(run_dir, "dedup"), [o for t in todo + current for o in t.outputs])
    return _counts(run_dir, hashing["parts_hashed"], summary, options)


def _global_step(run_dir: Path, options: DedupOptions, shard_parts: list[Path], work: Path, map_parts: MapParts,
                 sizes: ShuffleSizes) -> dict:
    eval_names, eval_hashes, unreadable = [], np.empty(0, dtype=np.uint64), []
    if options.eval_set:
        eval_names, eval_hashes, unreadable = hash_folder(options.eval_set, map_parts)
        if unreadable:
            import sys

            print(f"warning: {len(unreadable)} eval-set files did not decode, e.g. {unreadable[0]}", file=sys.stderr)
    parts = [(p.name, pq.read_metadata(p).num_rows) for p in shard_parts]
    result = run(run_dir, options, parts, work, map_parts, sizes, eval_names, eval_hashes)
    summary = {"semantic_search": result["semantic_search"]}
    if options.eval_set:
        summary.update(eval_images=len(eval_names), eval_unreadable=len(unreadable))
    return summary


def write_dedup_part(task: PartTask) -> dict:
    """Part function: the dedup part of one shards part from the global step's nodes and resolved files."""
    work = Path(task.run_dir) / task.settings["work"]
    name = task.name
    shards = pq.read_table(task.input_paths[0], columns=["uid", "status"])
    n = shards.num_rows
    success = success_mask(shards.column("status"))
    dup_of = np.full(n, None, dtype=object)
    kind = np.full(n, None, dtype=object)
    size = np.where(success, 1, 0).astype(np.int32)
    distance = np.zeros(n, dtype=np.int16)
    has_distance = np.zeros(n, dtype=bool)
    eval_match = np.full(n, None, dtype=object)

    resolved_path = work / "resolved" / name
    if resolved_path.exists():
        resolved = pq.read_table(resolved_path)
        index = resolved.column("index").to_numpy()
        dup_of[index] = resolved.column("dup_of").to_numpy(zero_copy_only=False)
        kind[index] = resolved.column("dup_kind").to_numpy(zero_copy_only=False)
        size[index] = resolved.column("cluster_size").to_numpy()
        pd_col = resolved.column("phash_distance")
        has = ~np.asarray(pd_col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        distance[index[has]] = np.asarray(pd_col.drop_null().to_numpy(), dtype=np.int16)
        has_distance[index[has]] = True

    nodes = pq.read_table(work / "nodes" / name, columns=["index", "eval_distance", "eval_index"])
    matched = nodes.filter(pc.is_valid(nodes.column("eval_index")))
    if matched.num_rows:
        names = pq.read_table(work / "eval_names.parquet").column("name").to_numpy(zero_copy_only=False)
        index = matched.column("index").to_numpy()
        kind[index] = "eval_set"
        distance[index] = matched.column("eval_distance").to_numpy().astype(np.int16)
        has_distance[index] = True
        eval_match[index] = names[matched.column("eval_index").to_numpy()]

    table = pa.table({
        "uid": shards.column("uid").combine_chunks(),
        "dup_of": pa.array(dup_of, type=pa.string()),
        "dup_kind": pa.array(kind, type=pa.string()),
        "cluster_size": pa.array(size, type=pa.int32(), mask=~success),
        "phash_distance": pa.array(distance, type=pa.int16(), mask=~has_distance),
        "eval_match": pa.array(eval_match, type=pa.string()),
    })
    table = conform(table, DEDUP)
    meta = dict(table.schema.metadata or {})
    meta[SUMMARY_KEY] = json.dumps(task.settings.get("summary", {}), sort_keys=True).encode()
    task.write(table.replace_schema_metadata(meta))
    return {"rows": n}


def _stored_summary(current: list[PartTask]) -> dict:
    for task in current:
        meta = pq.read_schema(task.output_paths[0]).metadata or {}
        if SUMMARY_KEY in meta:
            return json.loads(meta[SUMMARY_KEY])
    return {}


def _counts(run_dir: Path, parts_hashed: int, summary: dict, options: DedupOptions) -> dict:
    """Counts over the whole dedup table (skipped parts included), streamed part by part."""
    rows = images = unique = phash_failed = 0
    duplicates = {kind: 0 for kind in DUP_KINDS}
    for path in tables.list_parts(run_dir, "dedup"):
        part = pq.read_table(path, columns=["dup_kind", "cluster_size"])
        rows += part.num_rows
        with_image = pc.is_valid(part.column("cluster_size"))
        images += pc.sum(with_image).as_py() or 0
        kinds = part.column("dup_kind")
        unique += pc.sum(pc.and_(with_image, pc.is_null(kinds))).as_py() or 0
        for entry in pc.value_counts(kinds.drop_null()).to_pylist() if kinds.null_count < len(kinds) else []:
            duplicates[entry["values"]] = duplicates.get(entry["values"], 0) + entry["counts"]
    for path in tables.list_parts(run_dir, "phash"):
        phash_failed += pq.read_table(path, columns=["phash"]).column("phash").null_count
    counts = {"rows": rows, "images": images, "phash_failed": phash_failed, "phash_parts_hashed": parts_hashed,
              "duplicates": duplicates, "unique": unique, "semantic_search": summary.get("semantic_search", "off")}
    if options.eval_set:
        counts.update(eval_images=summary.get("eval_images", 0), eval_unreadable=summary.get("eval_unreadable", 0))
    return counts
