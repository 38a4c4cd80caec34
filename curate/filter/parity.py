"""CLIP top-fraction selection, plain or with group parity.

Plain: keep the k = round(fraction * n_scored) best clip_scores; ties are broken by uid so reruns agree.

Group parity (the fairness-aware option): CLIP scores are known to rate some groups' pairs lower (e.g. captions that
mention women), so a single cut can keep one group at a much lower rate than the others. With
`group_parity: {attribute, min_ratio}` each group g (values of `attribute` in signals/groups) gets a quota
q_g = ceil(min_ratio * overall_rate * n_g), i.e. the fewest rows for which rate_g / overall_rate >= min_ratio.
Starting from the plain top-k, groups under quota are raised to it with their best-scoring excluded rows, and the
same number of the lowest-scoring kept rows are removed from groups that stay at or above their quota. The kept
count is exactly the plain k, so the only cost is a lower mean clip_score of the kept rows, which is reported.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np


def ranking(scores: np.ndarray, uids: np.ndarray) -> np.ndarray:
    """Indices from best to worst score; equal scores in uid order, so the cut is the same on every run."""
    return np.lexsort((uids.astype(str), -scores))


@dataclass
class Selection:
    kept: np.ndarray  # bool over the scored rows
    report: dict


def plain_top_k(scores: np.ndarray, uids: np.ndarray, k: int) -> np.ndarray:
    kept = np.zeros(len(scores), dtype=bool)
    kept[ranking(scores, uids)[:k]] = True
    return kept


def parity_top_k(scores: np.ndarray, uids: np.ndarray, groups: np.ndarray, k: int, min_ratio: float) -> Selection:
    """Top-k with every group's inclusion-rate ratio raised to min_ratio (where the other groups can give rows up)."""
    n = len(scores)
    order = ranking(scores, uids)
    plain = np.zeros(n, dtype=bool)
    plain[order[:k]] = True
    kept = plain.copy()
    names = sorted(set(groups.tolist()))
    size = {g: int(np.sum(groups == g)) for g in names}
    count = {g: int(np.sum(plain & (groups == g))) for g in names}
    rate = k / n if n else 0.0
    # the small epsilon keeps float noise (0.9 * 0.3 * 100 = 27.000000000000004) from adding a row to a quota
    quota = {g: min(size[g], math.ceil(min_ratio * rate * size[g] - 1e-9)) for g in names}

    spare = sum(max(count[g] - quota[g], 0) for g in names)
    additions = _allocate_additions(names, size, count, quota, spare)

    for g, extra in additions.items():
        if extra:
            excluded_best = [i for i in order if groups[i] == g and not kept[i]][:extra]
            kept[excluded_best] = True
    to_remove = sum(additions.values())
    current = {g: count[g] + additions.get(g, 0) for g in names}
    for i in order[::-1]:  # lowest scores first
        if to_remove == 0:
            break
        g = groups[i]
        if kept[i] and additions.get(g, 0) == 0 and current[g] > quota[g]:
            kept[i] = False
            current[g] -= 1
            to_remove -= 1

    report = _report(scores, groups, names, size, plain, kept, rate, min_ratio, sum(additions.values()))
    return Selection(kept=kept, report=report)


def _allocate_additions(names, size, count, quota, spare) -> dict[str, int]:
    """Rows to add per group under quota; when the other groups cannot give up enough (a min_ratio near 1 with
    many small groups), the rows that can be moved go one at a time to the group furthest below parity."""
    need = {g: max(quota[g] - count[g], 0) for g in names}
    if sum(need.values()) <= spare:
        return need
    added = {g: 0 for g in names}
    heap = [(count[g] / size[g], g) for g in names if need[g] > 0]
    heapq.heapify(heap)
    while spare and heap:
        _, g = heapq.heappop(heap)
        added[g] += 1
        spare -= 1
        if added[g] < need[g]:
            heapq.heappush(heap, ((count[g] + added[g]) / size[g], g))
    return added


def _report(scores, groups, names, size, plain, kept, rate, min_ratio, moved) -> dict:
    def threshold(mask: np.ndarray) -> Optional[float]:
        return round(float(scores[mask].min()), 6) if mask.any() else None

    per_group = {}
    for g in names:
        in_g = groups == g
        rate_plain = float(np.sum(plain & in_g)) / size[g]
        rate_parity = float(np.sum(kept & in_g)) / size[g]
        per_group[g] = {
            "n": size[g],
            "kept_plain": int(np.sum(plain & in_g)),
            "kept_parity": int(np.sum(kept & in_g)),
            "rate_plain": round(rate_plain, 6),
            "rate_parity": round(rate_parity, 6),
            "ratio_plain": round(rate_plain / rate, 6) if rate else None,
            "ratio_parity": round(rate_parity / rate, 6) if rate else None,
            "threshold_plain": threshold(plain & in_g),
            "threshold_parity": threshold(kept & in_g),
        }
    mean_plain = float(scores[plain].mean()) if plain.any() else None
    mean_parity = float(scores[kept].mean()) if kept.any() else None
    return {
        "min_ratio": min_ratio,
        "kept": int(kept.sum()),
        "moved": int(moved),
        "parity_met": all(v["ratio_parity"] is None or v["ratio_parity"] >= min_ratio - 1e-9
                          for v in per_group.values()),
        "mean_clip_kept_plain": round(mean_plain, 6) if mean_plain is not None else None,
        "mean_clip_kept_parity": round(mean_parity, 6) if mean_parity is not None else None,
        "mean_clip_cost": round(mean_plain - mean_parity, 6) if mean_plain is not None else None,
        "groups": per_group,
    }
