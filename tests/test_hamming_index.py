"""The multi-index Hamming search must find exactly the pairs brute force finds."""

import numpy as np
import pytest

from curate.dedup.hamming_index import (
    block_values,
    hamming_distance,
    near_duplicate_pairs,
    pairs_sharing_block,
    plan_blocks,
    popcount,
    popcount_lookup,
    query,
    split_blocks,
)


def flip_bits(rng, value: np.uint64, n_bits: int) -> np.uint64:
    positions = rng.choice(64, size=n_bits, replace=False)
    mask = np.uint64(0)
    for p in positions:
        mask |= np.uint64(1) << np.uint64(p)
    return value ^ mask


def planted_hashes(seed: int, n_random: int = 1500, n_planted: int = 300) -> np.ndarray:
    """Random hashes plus copies of some with 0..8 bits flipped (pairs right at and just past each distance)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=n_random, dtype=np.uint64)
    sources = rng.integers(0, n_random, size=n_planted)
    planted = [flip_bits(rng, base[s], int(k)) for s, k in zip(sources, rng.integers(0, 9, size=n_planted))]
    # a few hashes sharing one 16-bit block, so buckets hold more than one true group
    shared_block = (rng.integers(0, 2**48, size=50, dtype=np.uint64) << np.uint64(16)) | np.uint64(0xBEEF)
    hashes = np.concatenate([base, np.array(planted, dtype=np.uint64), shared_block])
    return hashes[rng.permutation(len(hashes))]


def brute_pairs(hashes: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    dist = hamming_distance(hashes[:, None], hashes[None, :])
    i, j = np.nonzero(np.triu(dist <= max_distance, k=1))
    return set(zip(i.tolist(), j.tolist()))


def brute_query(db: np.ndarray, q: np.ndarray, max_distance: int) -> set[tuple[int, int]]:
    qi, di = np.nonzero(hamming_distance(q[:, None], db[None, :]) <= max_distance)
    return set(zip(qi.tolist(), di.tolist()))


@pytest.mark.parametrize("max_distance", [0, 1, 2, 4, 6, 8])
def test_pairs_equal_brute_force_with_planned_blocks(max_distance):
    hashes = planted_hashes(seed=max_distance)
    pairs = near_duplicate_pairs(hashes, max_distance)
    expected = brute_pairs(hashes, max_distance)
    assert len(expected) > 20  # the planted near duplicates are there to be found
    assert pairs.dtype == np.int64 and pairs.shape[1] == 2
    assert (pairs[:, 0] < pairs[:, 1]).all()
    assert len(set(map(tuple, pairs.tolist()))) == len(pairs)  # no pair twice
    assert set(map(tuple, pairs.tolist())) == expected


@pytest.mark.parametrize("blocks", [5, 6, 7, 9, 12])
def test_every_block_count_is_exact(blocks):
    """Classic multi-index hashing (5 blocks for d=4) and the block-combination variants find the same pairs."""
    hashes = planted_hashes(seed=100 + blocks)
    pairs = near_duplicate_pairs(hashes, 4, blocks=blocks)
    assert set(map(tuple, pairs.tolist())) == brute_pairs(hashes, 4)


def test_identical_hashes_give_every_pair():
    hashes = np.array([7, 7, 7, 2**63, 7 ^ 1], dtype=np.uint64)
    pairs = near_duplicate_pairs(hashes, 0)
    assert pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    assert set(map(tuple, near_duplicate_pairs(hashes, 1).tolist())) == brute_pairs(hashes, 1)


@pytest.mark.parametrize("max_distance", [0, 3, 4, 7])
def test_query_equals_brute_force(max_distance):
    db = planted_hashes(seed=7 + max_distance)
    rng = np.random.default_rng(max_distance)
    near_copies = [flip_bits(rng, db[i], int(k)) for i, k in zip(rng.integers(0, len(db), 60), rng.integers(0, max_distance + 3, 60))]
    q = np.concatenate([np.array(near_copies, dtype=np.uint64), rng.integers(0, 2**64, 40, dtype=np.uint64)])
    found = query(db, q, max_distance)
    expected = brute_query(db, q, max_distance)
    assert len(expected) >= 10  # many near copies are within reach, some just past it
    assert set(map(tuple, found.tolist())) == expected
    assert len(found) == len(expected)


def test_empty_and_single_inputs():
    empty = np.array([], dtype=np.uint64)
    assert near_duplicate_pairs(empty, 4).shape == (0, 2)
    assert near_duplicate_pairs(np.array([5], dtype=np.uint64), 4).shape == (0, 2)
    assert query(empty, np.array([1], dtype=np.uint64), 4).shape == (0, 2)
    assert query(np.array([1], dtype=np.uint64), empty, 4).shape == (0, 2)


def test_bad_arguments_are_refused_with_a_clear_error():
    hashes = np.array([1, 2], dtype=np.uint64)
    with pytest.raises(ValueError, match="max_distance"):
        near_duplicate_pairs(hashes, 65)
    with pytest.raises(ValueError, match="blocks"):
        near_duplicate_pairs(hashes, 4, blocks=4)
    with pytest.raises(ValueError, match="1-d"):
        near_duplicate_pairs(hashes.reshape(1, 2), 4)
    with pytest.raises(ValueError, match="uint64"):
        near_duplicate_pairs(np.array([0.5, 1.5]), 4)


def test_plan_prefers_few_sorts_for_small_inputs_and_big_keys_for_large_ones():
    assert plan_blocks(100, 4) == 5
    assert plan_blocks(1_000_000, 4) > 5


def test_popcount_lookup_matches_numpy():
    values = np.random.default_rng(3).integers(0, 2**64, size=1000, dtype=np.uint64)
    values[:3] = [0, 2**64 - 1, 2**63]
    expected = np.array([bin(int(v)).count("1") for v in values])
    assert (popcount_lookup(values) == expected).all()
    assert (popcount(values) == expected).all()


@pytest.mark.parametrize("max_distance", [0, 1, 2, 4, 6])
def test_pairs_sharing_a_block_equal_brute_force(max_distance):
    """The search inside a shuffle partition: pairs within the distance that agree on one given outer block."""
    hashes = np.unique(planted_hashes(seed=50 + max_distance, n_random=800, n_planted=400))
    dist = hamming_distance(hashes[:, None], hashes[None, :])
    for block in split_blocks(max_distance + 1):
        values = block_values(hashes, block)
        i, j = np.nonzero(np.triu((dist <= max_distance) & (values[:, None] == values[None, :]), k=1))
        found = pairs_sharing_block(hashes, max_distance, block)
        assert set(map(tuple, found.tolist())) == set(zip(i.tolist(), j.tolist()))
        assert len(found) == len(i)
    for inner in (max_distance + 1, max_distance + 3):  # every inner block count is exact too
        if max_distance:
            found = pairs_sharing_block(hashes, max_distance, split_blocks(max_distance + 1)[0], inner_blocks=inner)
            values = block_values(hashes, split_blocks(max_distance + 1)[0])
            i, j = np.nonzero(np.triu((dist <= max_distance) & (values[:, None] == values[None, :]), k=1))
            assert set(map(tuple, found.tolist())) == set(zip(i.tolist(), j.tolist()))


def test_pairs_sharing_a_block_refuses_bad_blocks():
    hashes = np.array([1, 2, 3], dtype=np.uint64)
    with pytest.raises(ValueError, match="block"):
        pairs_sharing_block(hashes, 2, (60, 8))
    with pytest.raises(ValueError, match="inner_blocks"):
        pairs_sharing_block(hashes, 4, (0, 13), inner_blocks=3)
