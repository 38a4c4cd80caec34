"""The clip_top_fraction step: the plain top-k cut of the ONE top-fraction rule (curate.selection: k from n and f,
ties by score then uid) or, with `group_parity`, the parity selection of curate.filter.parity, turned into pass/fail
per row with a reason for every row left out.

The threshold recorded for the step is the lowest kept score. When rows tied at that score were split by uid, the
reason of each tied row left out says so, with how many rows tied and how many of them were kept, and the stage's
report carries the boundary (`top_fraction_cut`).

For the per-part filter with a global cut: compute `curate.selection.boundary_from_sql(con, fraction)` once over a
view of every clip part, then `decide_part(scores, uids, boundary, fraction)` per part gives the same passes and
reasons as this step over the whole run.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from curate import tables
from curate.filter.parity import parity_top_k
from curate.selection import Boundary, boundary_at, kept_by_boundary, ranking, top_fraction_count
from curate.filter.step_base import FilterStep, StepResult, fmt, nullable

if TYPE_CHECKING:
    from curate.filter.context import FilterContext

MISSING_GROUP = "unknown"


def load_groups(ctx: "FilterContext", attribute: str) -> np.ndarray:
    """The attribute's value per row (MISSING_GROUP where null or absent) from signals/groups."""
    if not tables.table_exists(ctx.run_dir, "groups"):
        raise tables.MissingTableError(ctx.run_dir, "groups")
    groups = tables.read_table(ctx.run_dir, "groups")
    if attribute not in groups.column_names:
        attrs = [c for c in groups.column_names if c != "uid"]
        raise ValueError(f"group_parity attribute '{attribute}' is not a column of signals/groups "
                         f"(it has {attrs}); run `fairsift audit` to write it")
    values = ctx.align(groups.select(["uid", attribute]).to_pandas())[attribute].tolist()
    missing = [v is None or v == "" or (isinstance(v, float) and math.isnan(v)) for v in values]
    return np.array([MISSING_GROUP if m else str(v) for v, m in zip(values, missing)], dtype=object)


def decide_part(scores: np.ndarray, uids: np.ndarray, boundary: Boundary,
                fraction: float) -> tuple[np.ndarray, list[Optional[str]]]:
    """Passes and reasons of the plain cut for any rows (one part, or the whole run) given the run's boundary."""
    passed = kept_by_boundary(scores, uids, boundary)
    reason = plain_reason(f"top {fmt(fraction * 100)}%", boundary)
    reasons = [None if ok else ("no clip_score" if np.isnan(s) else reason(float(s)))
               for ok, s in zip(passed, np.asarray(scores, dtype=np.float64))]
    return passed, reasons


def top_fraction_step(step: FilterStep, ctx: "FilterContext") -> StepResult:
    """`step` is a ClipTopFractionStep (its fraction and group_parity options)."""
    scores = ctx.clip_scores
    scored = np.flatnonzero(~np.isnan(scores))
    k = top_fraction_count(len(scored), step.fraction)
    uids = ctx.uids[scored].astype(str)
    pct = f"top {fmt(step.fraction * 100)}%"
    passed = np.zeros(len(scores), dtype=bool)
    reasons: list[Optional[str]] = ["no clip_score"] * len(scores)
    order = ranking(scores[scored], uids)
    boundary = boundary_at(scores[scored], uids, order, k)
    plain = kept_by_boundary(scores[scored], uids, boundary)
    result = StepResult(passed=passed, reasons=reasons, helpers={"clip_score": nullable(scores)},
                        thresholds={step.name: boundary.threshold},
                        report={"top_fraction_cut": {"fraction": step.fraction, **boundary.as_dict()}})

    if step.group_parity is None:
        kept = plain
        plain_text = plain_reason(pct, boundary)
        reason = lambda j, score: plain_text(score)  # noqa: E731
    else:
        options = step.group_parity
        all_groups = load_groups(ctx, options.attribute)
        groups = all_groups[scored]
        selection = parity_top_k(scores[scored], uids, groups, k, options.min_ratio, reference=options.reference,
                                 min_count=options.min_count)
        kept = selection.kept
        result.report["group_parity"] = {"attribute": options.attribute, **selection.report}
        result.thresholds[f"{step.name}_groups"] = {g: v["threshold_parity"]
                                                    for g, v in selection.report["groups"].items()}
        result.helpers[f"group_{options.attribute}"] = all_groups.tolist()
        kept_scores = scores[scored]
        cuts = {g: (float(kept_scores[kept & (groups == g)].min()) if np.any(kept & (groups == g)) else None)
                for g in selection.report["groups"]}
        tied = {g: (int(np.sum((groups == g) & (kept_scores == c))), int(np.sum((groups == g) & kept & (kept_scores == c))))
                for g, c in cuts.items() if c is not None}
        reason = _group_reason(options.attribute, groups, cuts, tied)

    passed[scored[kept]] = True
    for j in np.flatnonzero(~kept):
        i = scored[j]
        reasons[i] = reason(j, float(scores[i]))
    for i in scored[kept]:
        reasons[i] = None
    return result


def plain_reason(pct: str, boundary: Boundary):
    cut = boundary.threshold

    def reason(score: float) -> str:
        if cut is None:
            return f"clip_score {fmt(score)} not in the {pct} (no row kept)"
        if score < cut:
            return f"clip_score {fmt(score)} < {pct} cut {fmt(cut)}"
        return (f"clip_score {fmt(score)} = {pct} cut {fmt(cut)}, left out by uid order "
                f"(a tie: {boundary.tied_kept} of {boundary.tied} rows at the cut kept)")

    return reason


def _group_reason(attribute: str, groups: np.ndarray, cuts: dict[str, Optional[float]],
                  tied: dict[str, tuple[int, int]]):
    def reason(j: int, score: float) -> str:
        g = groups[j]
        thr = cuts[g]
        if thr is None:
            return f"clip_score {fmt(score)}: no row of {attribute}={g} kept"
        if score < thr:
            return f"clip_score {fmt(score)} < group threshold {fmt(thr)} ({attribute}={g})"
        total, kept = tied[g]
        return (f"clip_score {fmt(score)} = group threshold {fmt(thr)} ({attribute}={g}), left out by uid order "
                f"(a tie: {kept} of {total} rows at the threshold kept)")

    return reason
