"""Near-duplicate search over 64-bit hashes (pHashes) by Hamming distance, with an index instead of all pairs.

Multi-index hashing. Split the 64 bits into `m` blocks. Two hashes within distance `d` differ in at most `d` blocks,
so they agree exactly on at least `t = m - d` blocks (pigeonhole). Every choice of `t` blocks gives a key (the bits of
those blocks); a pair within distance `d` has an equal key under at least one of the C(m, t) choices. So we
bucket the hashes by each key (one numpy sort), treat hashes in the same bucket as candidates and verify them with a
popcount of their XOR.

With `m = d + 1` this is classic multi-index hashing (t = 1, one exact block). For a million hashes and d = 4 its
13-bit blocks hold ~120 hashes per bucket: ~300 million candidates to verify. Taking `m = d + 2` instead (pairs of
blocks, ~21-bit keys) costs 15 sorts rather than 5 but leaves a few million candidates, which is far cheaper; the
plan below picks `m` from a cost estimate, and `blocks=` forces it (the tests check every choice against brute force).

`pairs_sharing_block` is the same search restricted to pairs that agree on one given block: the partitioned search
(curate.dedup.near) shuffles hashes by the value of each of d + 1 outer blocks, and inside a partition only pairs
sharing that block's value are wanted. Their other 64 - w bits differ in at most d bits, so the inner keys are that
block's value followed by t' of m' inner blocks over the remaining bits: buckets are tiny and a few sorts suffice.
"""

from __future__ import annotations

import itertools
from math import comb, log2

import numpy as np

HASH_BITS = 64

# cost-model weights (seconds per unit), measured on this project's 2-core dev machine; only their ratio matters
_SORT_COST_PER_ITEM_LOG = 4e-9
_VERIFY_COST_PER_CANDIDATE = 3e-8
_MAX_EXTRA_BLOCKS = 6


_POPCOUNT16 = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def sorted_unique(values: np.ndarray, *, presorted: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(distinct values in ascending order, index of each one's first occurrence in the sorted input). Sort-based:
    numpy 2.3's np.unique takes a hash path that is ~100x slower on large integer arrays (3 s for 760k int64)."""
    s = np.asarray(values) if presorted else np.sort(values)
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if s.size else np.empty(0, dtype=np.int64)
    return s[first], first


def popcount_lookup(values: np.ndarray) -> np.ndarray:
    """Set bits of each uint64 by a 16-bit lookup table: the fallback for numpy < 2.0 (no np.bitwise_count)."""
    values = np.asarray(values, dtype=np.uint64)
    quarters = np.ascontiguousarray(values).view(np.uint16).reshape(*values.shape, 4)
    return _POPCOUNT16[quarters].sum(axis=-1, dtype=np.uint8)


popcount = getattr(np, "bitwise_count", popcount_lookup)


def hamming_distance(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Element-wise Hamming distance of uint64 hashes."""
    return popcount(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


def split_blocks(n_blocks: int, bits: int = HASH_BITS) -> list[tuple[int, int]]:
    """(first bit, width) of `n_blocks` contiguous blocks covering `bits` bits, widths as equal as possible."""
    widths = [bits // n_blocks + (1 if i < bits % n_blocks else 0) for i in range(n_blocks)]
    starts = np.cumsum([0] + widths[:-1]).tolist()
    return [(int(a), int(w)) for a, w in zip(starts, widths)]


def block_values(hashes: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    start, width = block
    return (hashes >> np.uint64(start)) & np.uint64((1 << width) - 1)


def _key_layouts(n_blocks: int, max_distance: int, bits: int = HASH_BITS) -> list[tuple[tuple[int, int], ...]]:
    """One key per choice of `n_blocks - max_distance` blocks: a pair within the distance agrees under one of them."""
    return list(itertools.combinations(split_blocks(n_blocks, bits), n_blocks - max_distance))


def _keys(hashes: np.ndarray, layout: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, int]:
    """The chosen blocks' bits gathered into the low bits of a uint64, and how many bits that is."""
    keys = np.zeros(hashes.shape, dtype=np.uint64)
    shift = 0
    for start, width in layout:
        keys |= ((hashes >> np.uint64(start)) & np.uint64((1 << width) - 1)) << np.uint64(shift)
        shift += width
    return keys, shift


def _sorted_keys(keys: np.ndarray, key_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted keys, the order that sorts them). When key and row index fit in 64 bits together they are packed
    into one word and sorted by value, which is ~2x faster than an argsort."""
    n = keys.size
    index_bits = max(int(n - 1).bit_length(), 1)
    if key_bits + index_bits <= HASH_BITS:
        packed = np.sort((keys << np.uint64(index_bits)) | np.arange(n, dtype=np.uint64))
        order = (packed & np.uint64((1 << index_bits) - 1)).astype(np.int64)
        return packed >> np.uint64(index_bits), order
    order = np.argsort(keys)
    return keys[order], order


def estimated_cost(n: int, max_distance: int, n_blocks: int, bits: int = HASH_BITS, fixed_bits: int = 0) -> float:
    """Rough seconds for n uniformly random hashes: one sort per key plus the verification of bucket mates.
    `bits`: the bits split into blocks; `fixed_bits`: bits every key shares besides (a block they must agree on)."""
    agree = n_blocks - max_distance
    keys = comb(n_blocks, agree)
    key_bits = fixed_bits + (bits // n_blocks) * agree  # the smallest key, hence the fullest buckets
    candidates = keys * n * max(n - 1, 0) / 2 / 2.0**key_bits
    return keys * n * max(log2(max(n, 2)), 1) * _SORT_COST_PER_ITEM_LOG + candidates * _VERIFY_COST_PER_CANDIDATE


def plan_blocks(n: int, max_distance: int, bits: int = HASH_BITS, fixed_bits: int = 0) -> int:
    """The block count with the lowest estimated cost (at least max_distance + 1, at most `bits` blocks)."""
    lowest = max_distance + 1
    options = range(lowest, min(bits, lowest + _MAX_EXTRA_BLOCKS) + 1)
    return min(options, key=lambda m: (estimated_cost(n, max_distance, m, bits, fixed_bits), m))


def _check(hashes: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(hashes)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of uint64 hashes, got shape {arr.shape}")
    if arr.size and arr.dtype != np.uint64:
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"{name} must hold uint64 hashes, got dtype {arr.dtype}")
        arr = arr.astype(np.uint64)
    return arr.astype(np.uint64, copy=False)


def _resolve_blocks(n: int, max_distance: int, blocks: int | None) -> int:
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"max_distance must be within 0..64, got {max_distance}")
    if blocks is None:
        return plan_blocks(n, max_distance)
    if not max_distance < blocks <= HASH_BITS:
        raise ValueError(f"blocks must be within max_distance+1..64, got {blocks} for max_distance {max_distance}")
    return blocks


def _unique_pairs(chunks: list[np.ndarray], n_right: int) -> np.ndarray:
    """Concatenate (a, b) pair chunks, drop repeats (a pair shares several keys) and sort them."""
    if not chunks:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(chunks)
    codes, _ = sorted_unique(pairs[:, 0] * np.int64(n_right) + pairs[:, 1])
    return np.stack([codes // n_right, codes % n_right], axis=1)


def _bucket_pairs(h: np.ndarray, keyings, max_distance: int) -> list[np.ndarray]:
    """Pairs (i, j), i < j, of hashes that share a key under one of `keyings` ((keys, key bits) per layout) and
    differ in at most max_distance bits; pairs found under several keys repeat."""
    n = h.size
    found: list[np.ndarray] = []
    positions = np.arange(n)
    for keys, key_bits in keyings:
        sorted_keys, order = _sorted_keys(keys, key_bits)
        starts_group = np.empty(n, dtype=bool)
        starts_group[0] = True
        np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts_group[1:])
        group_starts = np.flatnonzero(starts_group)
        group_ends = np.append(group_starts[1:], n)
        end_of = group_ends[np.cumsum(starts_group) - 1]
        # walk each bucket by offset: position p pairs with p+1, p+2, ... up to its bucket's end
        pos = positions[end_of - positions > 1]
        offset = 1
        while pos.size:
            mate = pos + offset
            inside = mate < end_of[pos]
            pos, mate = pos[inside], mate[inside]
            a, b = order[pos], order[mate]
            close = popcount(h[a] ^ h[b]) <= max_distance
            if close.any():
                a, b = a[close], b[close]
                found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1).astype(np.int64))
            offset += 1
    return found


def near_duplicate_pairs(hashes: np.ndarray, max_distance: int, *, blocks: int | None = None) -> np.ndarray:
    """All index pairs (i, j), i < j, whose hashes differ in at most `max_distance` bits; shape (m, 2) int64, sorted.

    Identical hashes are pairs too (distance 0); a group of g identical hashes gives g*(g-1)/2 pairs, so callers
    that only need connectivity should pass unique hashes (np.unique) and link the identical ones themselves.
    """
    h = _check(hashes, "hashes")
    n = h.size
    m = _resolve_blocks(n, max_distance, blocks)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    keyings = (_keys(h, layout) for layout in _key_layouts(m, max_distance))
    return _unique_pairs(_bucket_pairs(h, keyings, max_distance), n)


def pairs_sharing_block(hashes: np.ndarray, max_distance: int, block: tuple[int, int], *,
                        inner_blocks: int | None = None) -> np.ndarray:
    """All index pairs (i, j), i < j, whose hashes agree on the bits of `block` ((first bit, width)) and differ in at
    most `max_distance` bits in all; shape (m, 2) int64, sorted. Pass distinct hashes (identical ones always pair).

    The other 64 - width bits are split into `inner_blocks` blocks (planned by cost when None, at least
    max_distance + 1); every key is the block's value followed by the bits of a choice of the inner blocks.
    """
    h = _check(hashes, "hashes")
    n = h.size
    start, width = block
    if not (0 <= start and 1 <= width and start + width <= HASH_BITS):
        raise ValueError(f"block must be (first bit, width) within 64 bits, got {block}")
    if not 0 <= max_distance <= HASH_BITS:
        raise ValueError(f"max_distance must be within 0..64, got {max_distance}")
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    rest_bits = HASH_BITS - width
    if rest_bits == 0 or max_distance == 0:  # only identical hashes qualify: the whole hash is the key
        return _unique_pairs(_bucket_pairs(h, [(h, HASH_BITS)], max_distance), n)
    outer = block_values(h, block)
    # the bits outside the block, packed into the low rest_bits bits
    rest = h & np.uint64((1 << start) - 1)
    if start + width < HASH_BITS:
        rest |= (h >> np.uint64(start + width)) << np.uint64(start)
    if max_distance + 1 > rest_bits:
        raise ValueError(f"max_distance {max_distance} leaves too few bits outside a {width}-bit block to index")
    m = inner_blocks or plan_blocks(n, max_distance, rest_bits, width)
    if not max_distance < m <= rest_bits:
        raise ValueError(f"inner_blocks must be within max_distance+1..{rest_bits}, got {m}")

    def keyings():
        for layout in _key_layouts(m, max_distance, rest_bits):
            inner, inner_bits = _keys(rest, layout)
            yield (outer << np.uint64(inner_bits)) | inner, width + inner_bits

    return _unique_pairs(_bucket_pairs(h, keyings(), max_distance), n)


def query(hashes_db: np.ndarray, hashes_q: np.ndarray, max_distance: int, *, blocks: int | None = None) -> np.ndarray:
    """All pairs (query index, db index) whose hashes differ in at most `max_distance` bits; (m, 2) int64, sorted."""
    db = _check(hashes_db, "hashes_db")
    q = _check(hashes_q, "hashes_q")
    if db.size == 0 or q.size == 0:
        _resolve_blocks(max(db.size, 1), max_distance, blocks)
        return np.empty((0, 2), dtype=np.int64)
    m = _resolve_blocks(db.size, max_distance, blocks)
    found: list[np.ndarray] = []
    q_index = np.arange(q.size)
    for layout in _key_layouts(m, max_distance):
        sorted_keys, order = _sorted_keys(*_keys(db, layout))
        q_keys, _ = _keys(q, layout)
        lo = np.searchsorted(sorted_keys, q_keys, side="left")
        hi = np.searchsorted(sorted_keys, q_keys, side="right")
        qi, start, stop = q_index[hi > lo], lo[hi > lo], hi[hi > lo]
        offset = 0
        while qi.size:
            inside = start + offset < stop
            qi, start, stop = qi[inside], start[inside], stop[inside]
            d = order[start + offset]
            close = popcount(q[qi] ^ db[d]) <= max_distance
            if close.any():
                found.append(np.stack([qi[close], d[close]], axis=1).astype(np.int64))
            offset += 1
    return _unique_pairs(found, db.size)
