"""CLIP top-k selection with group parity: keep exactly k rows, every constrained group's inclusion-rate ratio at
least `min_ratio`, and the highest total (so mean) CLIP score of the kept rows that these constraints allow.

CLIP scores rate some groups' pairs lower (e.g. captions that mention women), so a single cut can keep one group at
a much lower rate than the others. `group_parity: {attribute, min_ratio, reference, min_count}`:
- reference "max" (default; the four-fifths rule's own comparison): rate_g >= min_ratio x the highest rate among
  constrained groups; reference "overall": rate_g >= min_ratio x k / n;
- constrained groups are those with at least `min_count` scored rows; smaller groups are left out of the constraint
  (they neither get a quota nor set the reference) and are listed in the report: a quota of one row per one-row
  group would force rows in whatever their score;
- when no selection of k rows meets min_ratio, the selection meets the best achievable ratio instead, and the report
  says so (`parity_met: false`, `best_achievable_ratio`).

Algorithm (exact). With c_g rows kept in group g, the best rows of g are its top c_g by score, so the objective is
a sum of concave per-group prefix sums. For a bound M on the rates of constrained groups, each such group needs
c_g in [ceil(r M n_g), floor(M n_g)] (other groups [0, n_g]; for "overall", [ceil(r k n_g / n), n_g] and no M);
within bounds the optimum takes every group's lower bound and fills the remaining slots with the best remaining rows
by score, each group up to its upper bound ("leftover rows go by score"). The optimum over M is attained at a
breakpoint c / n_g or c / (r n_g), so every breakpoint is evaluated, vectorised: for each, a binary search over the
distinct scores finds the fill threshold. Cost O((sum of constrained n_g) x G x log n), seconds at 10^6 rows.
tests/test_group_parity.py checks the optimum against brute force over every subset of small cases.
Ties: rows of equal score go by uid (the top-fraction rule's order), so reruns keep the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

from curate.selection import ranking, select_top_k

Reference = Literal["max", "overall"]
EPS = 1e-9


@dataclass
class Selection:
    kept: np.ndarray  # bool over the scored rows
    report: dict


def plain_top_k(scores: np.ndarray, uids: np.ndarray, k: int) -> np.ndarray:
    return select_top_k(scores, uids, k)


class _Groups:
    """Per group: scores sorted descending (ties by uid) and prefix sums."""

    def __init__(self, scores: np.ndarray, uids: np.ndarray, groups: np.ndarray, min_count: int):
        order = ranking(scores, uids)
        self.names = sorted(set(groups.tolist()))
        self.rows = [order[groups[order] == g] for g in self.names]  # row indices, best first
        self.size = np.array([len(r) for r in self.rows], dtype=np.int64)
        self.constrained = self.size >= max(min_count, 1)
        self.ascending = [np.sort(scores[r]) for r in self.rows]
        self.prefix = [np.concatenate([[0.0], np.cumsum(scores[r])]) for r in self.rows]
        self.distinct = np.unique(scores)[::-1]  # descending

    def bounds(self, ratio: float, levels: np.ndarray, k: int, n: int, reference: Reference):
        """lo, hi of shape (G, L) for every level M (max) or the one overall constraint."""
        size = self.size[:, None].astype(np.float64)
        c = self.constrained[:, None]
        if reference == "overall":
            lo = np.where(c, np.minimum(self.size[:, None], np.ceil(ratio * k * size / n - EPS)), 0)
            return lo.astype(np.int64), np.broadcast_to(self.size[:, None], lo.shape).astype(np.int64)
        lo = np.where(c, np.ceil(ratio * levels[None, :] * size - EPS), 0)
        hi = np.where(c, np.floor(levels[None, :] * size + EPS), size)
        return lo.astype(np.int64), np.minimum(hi, size).astype(np.int64)

    def levels(self, ratio: float, k: int, n: int) -> np.ndarray:
        """Candidate bounds M on the constrained groups' rates: the breakpoints c/n_g and c/(r n_g) in (0, 1]."""
        cands = []
        for size in self.size[self.constrained]:
            c = np.arange(1, size + 1, dtype=np.float64)
            cands.append(c / size)
            if ratio > 0:
                cands.append(c / (ratio * size))
        # M = 0: no constrained row at all, which meets "rate_g >= r x max rate" with every rate 0
        levels = np.unique(np.concatenate([[0.0], *cands]))
        return levels[levels <= 1 + EPS]

    def counts_at(self, threshold: np.ndarray, strict: bool) -> np.ndarray:
        """(G, L) rows per group scoring >= threshold (or > threshold when strict)."""
        side = "right" if strict else "left"
        return np.stack([len(a) - np.searchsorted(a, threshold, side=side) for a in self.ascending])

    def best(self, lo: np.ndarray, hi: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Objective (sum of kept scores) and feasibility per level, for bounds lo, hi of shape (G, L)."""
        feasible = (lo <= hi).all(axis=0) & (lo.sum(axis=0) <= k) & (hi.sum(axis=0) >= k)
        levels = lo.shape[1]
        # smallest index j into the descending distinct scores with sum_g clamp(count_ge, lo, hi) >= k
        left, right = np.zeros(levels, dtype=np.int64), np.full(levels, len(self.distinct) - 1, dtype=np.int64)
        while np.any(left < right):
            mid = (left + right) // 2
            enough = np.clip(self.counts_at(self.distinct[mid], False), lo, hi).sum(axis=0) >= k
            active = left < right
            right = np.where(active & enough, mid, right)
            left = np.where(active & ~enough, mid + 1, left)
        t = self.distinct[left] if len(self.distinct) else np.zeros(levels)
        above = np.clip(self.counts_at(t, True), lo, hi)
        value = np.zeros(levels)
        for g, prefix in enumerate(self.prefix):
            value += prefix[above[g]]
        value += (k - above.sum(axis=0)) * t
        return np.where(feasible, value, -np.inf), feasible

    def select(self, lo: np.ndarray, hi: np.ndarray, k: int, n: int, order: np.ndarray, groups_of_row) -> np.ndarray:
        """The kept rows for one set of bounds: each group's top lo_g, then the best remaining rows in the rule's
        order, each group up to hi_g."""
        kept = np.zeros(n, dtype=bool)
        for g, rows in enumerate(self.rows):
            kept[rows[: lo[g]]] = True
        room = hi - lo
        taken = np.zeros(len(self.names), dtype=np.int64)
        need = k - int(lo.sum())
        for i in order:
            if need == 0:
                break
            if kept[i]:
                continue
            g = groups_of_row[i]
            if taken[g] < room[g]:
                kept[i] = True
                taken[g] += 1
                need -= 1
        return kept


def _solve(model: _Groups, ratio: float, k: int, n: int, reference: Reference):
    """(objective, lo, hi) of the best bounds for `ratio`, or None when no selection reaches it."""
    levels = model.levels(ratio, k, n) if reference == "max" else np.array([1.0])
    best_value, best = -np.inf, None
    for start in range(0, len(levels), 4096):  # chunks keep the (G, L) arrays small
        chunk = levels[start:start + 4096]
        lo, hi = model.bounds(ratio, chunk, k, n, reference)
        value, feasible = model.best(lo, hi, k)
        if feasible.any():
            j = int(np.argmax(value))  # the first (lowest M) among equal objectives: deterministic
            if best is None or value[j] > best_value + EPS * max(1.0, abs(best_value)):
                best_value, best = value[j], (lo[:, j], hi[:, j])
    return None if best is None else (best_value, *best)


def best_achievable_ratio(model: _Groups, k: int, n: int, reference: Reference, upper: float) -> float:
    """The largest ratio <= upper that some selection of k rows reaches (bisection to 1e-9)."""
    lo, hi = 0.0, upper
    for _ in range(34):
        mid = (lo + hi) / 2
        if _solve(model, mid, k, n, reference) is not None:
            lo = mid
        else:
            hi = mid
    return lo


def parity_top_k(scores: np.ndarray, uids: np.ndarray, groups: np.ndarray, k: int, min_ratio: float,
                 reference: Reference = "max", min_count: int = 30) -> Selection:
    """Top-k with every constrained group's rate ratio at least min_ratio (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups, dtype=object)
    n = len(scores)
    order = ranking(scores, uids)
    plain = np.zeros(n, dtype=bool)
    plain[order[:k]] = True
    model = _Groups(scores, uids, groups, min_count)
    code = {g: i for i, g in enumerate(model.names)}
    groups_of_row = np.array([code[g] for g in groups], dtype=np.int64)
    target = float(min_ratio)
    met = True
    solution = _solve(model, target, k, n, reference) if model.constrained.any() and k > 0 else None
    if solution is None and model.constrained.any() and k > 0:
        met = False
        target = best_achievable_ratio(model, k, n, reference, float(min_ratio))
        solution = _solve(model, target, k, n, reference)
        if solution is not None:
            # snap to the ratio that selection really reaches (an exact achievable value), then optimise for it
            achieved = _achieved(model.select(solution[1], solution[2], k, n, order, groups_of_row), groups, model,
                                 k, n, reference)
            if achieved is not None and achieved < target:
                target = achieved
                solution = _solve(model, target, k, n, reference)
    if solution is None:  # nothing to constrain (no group has min_count rows, or k = 0)
        kept = plain.copy()
    else:
        _, lo, hi = solution
        kept = model.select(lo, hi, k, n, order, groups_of_row)
    report = _report(scores, groups, model, plain, kept, k, n, float(min_ratio), reference, min_count, met, target)
    return Selection(kept=kept, report=report)


def _achieved(kept, groups, model, k, n, reference) -> Optional[float]:
    ratios, _, _ = _ratios(kept, groups, model, k, n, reference)
    values = [ratios[g] for g, c in zip(model.names, model.constrained) if c and ratios[g] is not None]
    return min(values) if values else None


def _ratios(kept: np.ndarray, groups: np.ndarray, model: _Groups, k: int, n: int,
            reference: Reference) -> tuple[dict, Optional[float], Optional[str]]:
    rates = {g: float(np.sum(kept & (groups == g))) / s for g, s in zip(model.names, model.size)}
    constrained = [g for g, c in zip(model.names, model.constrained) if c]
    if reference == "overall":
        base, base_group = (k / n if n else 0.0), "overall"
    else:
        base_group = max(constrained, key=lambda g: (rates[g], g)) if constrained else None
        base = rates[base_group] if base_group is not None else 0.0
    ratios = {g: (rates[g] / base if base else None) for g in model.names}
    return ratios, base, base_group


def _report(scores, groups, model: _Groups, plain, kept, k, n, min_ratio, reference, min_count, met,
            target) -> dict:
    def threshold(mask: np.ndarray) -> Optional[float]:
        return float(scores[mask].min()) if mask.any() else None

    ratio_plain, _, _ = _ratios(plain, groups, model, k, n, reference)
    ratio_parity, base, base_group = _ratios(kept, groups, model, k, n, reference)
    per_group = {}
    for g, size, constrained in zip(model.names, model.size, model.constrained):
        in_g = groups == g
        per_group[g] = {
            "n": int(size), "constrained": bool(constrained),
            "kept_plain": int(np.sum(plain & in_g)), "kept_parity": int(np.sum(kept & in_g)),
            "rate_plain": round(float(np.sum(plain & in_g)) / size, 6),
            "rate_parity": round(float(np.sum(kept & in_g)) / size, 6),
            "ratio_plain": None if ratio_plain[g] is None else round(ratio_plain[g], 6),
            "ratio_parity": None if ratio_parity[g] is None else round(ratio_parity[g], 6),
            "threshold_plain": threshold(plain & in_g), "threshold_parity": threshold(kept & in_g),
        }
    constrained_ratios = [ratio_parity[g] for g, c in zip(model.names, model.constrained)
                          if c and ratio_parity[g] is not None]
    achieved = min(constrained_ratios) if constrained_ratios else None
    mean_plain = float(scores[plain].mean()) if plain.any() else None
    mean_parity = float(scores[kept].mean()) if kept.any() else None
    return {
        "min_ratio": min_ratio,
        "reference": reference,
        "reference_group": base_group,
        "min_count": int(min_count),
        "kept": int(kept.sum()),
        "moved": int(np.sum(kept & ~plain)),
        "parity_met": bool(met),
        "achieved_ratio": None if achieved is None else round(achieved, 6),
        "best_achievable_ratio": None if met else round(target, 6),
        "excluded_groups": {g: int(s) for g, s, c in zip(model.names, model.size, model.constrained) if not c},
        "mean_clip_kept_plain": round(mean_plain, 6) if mean_plain is not None else None,
        "mean_clip_kept_parity": round(mean_parity, 6) if mean_parity is not None else None,
        "mean_clip_cost": round(mean_plain - mean_parity, 6) if mean_plain is not None else None,
        "groups": per_group,
    }
