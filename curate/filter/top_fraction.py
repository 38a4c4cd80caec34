"""The clip_top_fraction step: the plain top-k cut or, with `group_parity`, the parity selection of
curate.filter.parity, turned into pass/fail per row with a reason for every row left out."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from curate import tables
from curate.filter.parity import parity_top_k, plain_top_k
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


def top_fraction_step(step: FilterStep, ctx: "FilterContext") -> StepResult:
    """`step` is a ClipTopFractionStep (its fraction and group_parity options)."""
    scores = ctx.clip_scores
    scored = np.flatnonzero(~np.isnan(scores))
    k = round(step.fraction * len(scored))
    uids = ctx.uids[scored]
    pct = f"top {fmt(step.fraction * 100)}%"
    passed = np.zeros(len(scores), dtype=bool)
    reasons: list[Optional[str]] = ["no clip_score"] * len(scores)
    plain = plain_top_k(scores[scored], uids, k)
    cut = float(scores[scored][plain].min()) if plain.any() else None
    result = StepResult(passed=passed, reasons=reasons, helpers={"clip_score": nullable(scores)},
                        thresholds={step.name: round(cut, 6) if cut is not None else None})

    if step.group_parity is None:
        kept = plain
        reason = _plain_reason(pct, cut)
    else:
        attribute = step.group_parity.attribute
        all_groups = load_groups(ctx, attribute)
        groups = all_groups[scored]
        selection = parity_top_k(scores[scored], uids, groups, k, step.group_parity.min_ratio)
        kept = selection.kept
        result.report = {"group_parity": {"attribute": attribute, **selection.report}}
        result.thresholds[f"{step.name}_groups"] = {g: v["threshold_parity"]
                                                    for g, v in selection.report["groups"].items()}
        result.helpers[f"group_{attribute}"] = all_groups.tolist()
        # exact per-group cuts for the reasons (the report's are rounded for reading)
        kept_scores = scores[scored]
        cuts = {g: (float(kept_scores[kept & (groups == g)].min()) if np.any(kept & (groups == g)) else None)
                for g in selection.report["groups"]}
        reason = _group_reason(attribute, groups, cuts)

    passed[scored[kept]] = True
    for j in np.flatnonzero(~kept):
        i = scored[j]
        reasons[i] = reason(j, float(scores[i]))
    for i in scored[kept]:
        reasons[i] = None
    return result


def _plain_reason(pct: str, cut: Optional[float]):
    def reason(_: int, score: float) -> str:
        if cut is None:
            return f"clip_score {fmt(score)} not in the {pct} (no row kept)"
        if score < cut:
            return f"clip_score {fmt(score)} < {pct} cut {fmt(cut)}"
        return f"clip_score {fmt(score)} = {pct} cut {fmt(cut)}, left out by uid order"

    return reason


def _group_reason(attribute: str, groups: np.ndarray, cuts: dict[str, Optional[float]]):
    def reason(j: int, score: float) -> str:
        g = groups[j]
        thr = cuts[g]
        if thr is None:
            return f"clip_score {fmt(score)}: no row of {attribute}={g} kept"
        if score < thr:
            return f"clip_score {fmt(score)} < group threshold {fmt(thr)} ({attribute}={g})"
        return f"clip_score {fmt(score)} = group threshold {fmt(thr)} ({attribute}={g}), left out by uid order"

    return reason
