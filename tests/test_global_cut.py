"""The out-of-core top-fraction cut equals a full in-memory sort (numpy), ties and duplicate scores included."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.filter import global_cut


def _write_parts(folder, scores, uids, n_parts):
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, idx in enumerate(np.array_split(np.arange(len(scores)), n_parts)):
        path = folder / f"part-{i:05d}.parquet"
        pq.write_table(pa.table({"uid": pa.array(uids[idx], pa.string()),
                                 "clip_score": pa.array(scores[idx], pa.float32())}), path)
        files.append(path)
    return files


def _oracle(scores, uids, k):
    scores = scores.astype(np.float32).astype(np.float64)
    ok = ~np.isnan(scores)
    order = sorted(zip(-scores[ok], uids[ok]))  # score desc, uid asc
    neg, uid = order[k - 1]
    return -neg, uid


@pytest.mark.parametrize("seed", range(6))
def test_kth_best_matches_a_full_sort(tmp_path, seed, monkeypatch):
    monkeypatch.setattr(global_cut, "MIN_WINDOW_ROWS", 5)  # small windows, so the widening path runs too
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    # few distinct values: many ties at the cut
    scores = np.round(rng.normal(0.25, 0.05, n), int(rng.integers(1, 4)))
    scores[rng.random(n) < 0.05] = np.nan
    uids = np.array([f"{rng.integers(0, 10**9):032x}" for _ in range(n)], dtype=object)
    files = _write_parts(tmp_path / "clip", scores, uids, int(rng.integers(1, 7)))
    scored = int((~np.isnan(scores)).sum())
    assert global_cut.count_scored(files) == scored
    for k in {1, 2, scored // 3, scored // 2, scored - 1, scored}:
        if k >= 1:
            assert global_cut.kth_best(files, k) == pytest.approx(_oracle(scores, uids, k)), k
    assert global_cut.kth_best(files, 0) is None


def test_at_or_above_orders_by_score_then_uid():
    cut = (0.3, "b")
    assert global_cut.at_or_above(0.31, "z", cut)
    assert global_cut.at_or_above(0.3, "a", cut) and global_cut.at_or_above(0.3, "b", cut)
    assert not global_cut.at_or_above(0.3, "c", cut)
    assert not global_cut.at_or_above(0.29, "a", cut)
    assert not global_cut.at_or_above(1.0, "a", None)
