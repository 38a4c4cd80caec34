"""pHash near duplicates found partition by partition (multi-index hashing over a shuffle), so no process holds
every hash.

Design. Split the 64 bits into d + 1 outer blocks (d = phash_distance; 13 bits each for d = 4). Two hashes within
distance d agree exactly on at least one outer block (pigeonhole). Map side (per group of shards parts): a combiner
links rows of the map task with identical hashes (stars, saved by the map task); each distinct hash, standing for its
smallest row, emits d + 1 records (block b, row id, pHash), record b going to partition `mix64(b, value of block b)
mod P`, so hashes that share a block's value meet in one partition. Reduce side (one task per partition, run by the engine),
for each block b present in the partition:

- identical hashes (they agree on every block) are linked as stars, from block 0's records only;
- among the distinct hashes, `hamming_index.pairs_sharing_block` finds the pairs that share block b's value and lie
  within d: inner multi-index hashing over the other 64 - w bits, keyed by block b's value, so buckets are tiny;
- a pair is kept only in the partition of the FIRST block on which the two agree, so each pair is reported once.

Every pair within d is found exactly once whatever P is (the tests check this against brute force). Memory per
reduce task: its records (17 bytes each, ~60 with the search's temporaries); P = ceil((d + 1) x rows /
partition_records). Total work is about the single-process search's (the d + 1 copies are balanced by the smaller
inner searches), plus writing and reading d + 1 records per row. A block value shared by very many hashes (e.g. a
flat image's block of zeros) lands in one partition: that partition is large but its inner search still keys on the
other bits. For d >= 16 the outer blocks would be under 4 bits wide and shuffle nothing apart; then one partition
holds every hash (a documented limit: near-duplicate thresholds beyond ~10 bits are not used in practice).

Measured (benchmarks/bench_dedup.py on the shared 2-core dev machine; d = 4, random hashes + 1,000 planted; peak
RSS above the process's RSS after imports):
  1M hashes:  single-process search 1.7 s, +105 MB;  partitioned 7.4 s run serially (20 map tasks x 20 partitions of
              <= 263k records, 81 MB of shuffle files), +39 MB.
  10M hashes: single-process 69.9 s, +864 MB;  partitioned 111.9 s serially (200 x 200, 829 MB shuffle), +48 MB:
              1.6x the CPU time for 1/18 of the memory, and the partitions are independent tasks for a cluster (a
              2-process pool gained nothing here only because other jobs shared the 2 cores).
  Both equal the single-process pairs and brute force (faiss IndexBinaryFlat) on 2,000 sampled rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from curate.dedup.exact import star_links_of_groups
from curate.dedup.hamming_index import (block_values, near_duplicate_pairs, pairs_sharing_block, sorted_unique,
                                        split_blocks)
from curate.dedup.shuffle import mix64

MAX_OUTER_BLOCKS = 16

RECORD_SCHEMA = pa.schema([("block", pa.uint8()), ("row", pa.int64()), ("phash", pa.uint64())])


def outer_blocks(max_distance: int) -> list[tuple[int, int]]:
    """The d + 1 outer blocks, or [] when d is too large to partition by (one partition then)."""
    if max_distance + 1 > MAX_OUTER_BLOCKS:
        return []
    return split_blocks(max_distance + 1)


def records_per_row(max_distance: int) -> int:
    return max(1, len(outer_blocks(max_distance)))


def combine(rows: np.ndarray, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map-side combiner: (smallest row of each distinct hash, the hash, star links among identical hashes)."""
    rows = np.asarray(rows, dtype=np.int64)
    hashes = np.asarray(hashes, dtype=np.uint64)
    order = np.lexsort((rows, hashes))
    unique, first = sorted_unique(hashes[order], presorted=True)
    return rows[order][first], unique, star_links_of_groups([hashes], rows)


def records(rows: np.ndarray, hashes: np.ndarray, max_distance: int, n_partitions: int) -> tuple[pa.Table, np.ndarray]:
    """Shuffle records (one per outer block) of rows with a pHash, and each record's partition."""
    rows = np.asarray(rows, dtype=np.int64)
    hashes = np.asarray(hashes, dtype=np.uint64)
    blocks = outer_blocks(max_distance)
    if not blocks:
        table = pa.table({"block": pa.array(np.zeros(rows.size, dtype=np.uint8)), "row": pa.array(rows),
                          "phash": pa.array(hashes)}, schema=RECORD_SCHEMA)
        return table, np.zeros(rows.size, dtype=np.int64)
    n = rows.size
    block_ids = np.repeat(np.arange(len(blocks), dtype=np.uint8), n)
    values = np.concatenate([block_values(hashes, b) for b in blocks])
    # the block number goes into the top bits, so equal values of different blocks spread apart
    partition = mix64(values ^ (block_ids.astype(np.uint64) << np.uint64(56))) % np.uint64(n_partitions)
    table = pa.table({"block": pa.array(block_ids), "row": pa.array(np.tile(rows, len(blocks))),
                      "phash": pa.array(np.tile(hashes, len(blocks)))}, schema=RECORD_SCHEMA)
    return table, partition.astype(np.int64)


def links_in_partition(table: pa.Table, max_distance: int) -> np.ndarray:
    """Links (row, row) among one partition's records: identical hashes as stars, near ones once per pair."""
    block = table.column("block").to_numpy()
    rows = table.column("row").to_numpy()
    hashes = table.column("phash").to_numpy()
    blocks = outer_blocks(max_distance)
    found = []
    for b in sorted_unique(block)[0]:
        sel = block == b
        b_rows, b_hashes = rows[sel], hashes[sel]
        if int(b) == 0:
            found.append(star_links_of_groups([b_hashes], b_rows))
        # distinct hashes, each standing for its smallest row (the centre of its identical-hash star)
        order = np.lexsort((b_rows, b_hashes))
        unique, first = sorted_unique(b_hashes[order], presorted=True)
        heads = b_rows[order][first]
        if not blocks:
            pairs = near_duplicate_pairs(unique, max_distance)
        else:
            pairs = pairs_sharing_block(unique, max_distance, blocks[int(b)])
            if int(b) > 0 and len(pairs):
                a, c = unique[pairs[:, 0]], unique[pairs[:, 1]]
                earlier = np.zeros(len(pairs), dtype=bool)
                for blk in blocks[: int(b)]:
                    earlier |= block_values(a, blk) == block_values(c, blk)
                pairs = pairs[~earlier]
        found.append(heads[pairs].reshape(-1, 2))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    return np.concatenate(found).astype(np.int64)
