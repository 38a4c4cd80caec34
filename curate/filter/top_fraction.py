"""The clip_top_fraction step: a global step finds the cut over the whole run, then each part is decided alone.

`prepare_top_fraction` (once per run) counts the scored rows n, takes k = top_count(n, fraction) and finds the k-th
best (clip_score, uid) out of core (curate.filter.global_cut); with `group_parity` it runs the parity selection of
curate.filter.parity and keeps each group's lowest kept (clip_score, uid) as that group's cut. `top_fraction_step`
(per part) passes a row when its (clip_score, uid) is at or above its cut in the order clip_score desc, uid asc, and
gives every row left out a reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import duckdb
import numpy as np

from curate import tables
from curate.filter.global_cut import at_or_above, count_scored, kth_best, part_files
from curate.filter.parity import parity_top_k
from curate.filter.step_base import FilterStep, StepResult, fmt, nullable

if TYPE_CHECKING:
    from curate.filter.context import FilterContext

MISSING_GROUP = "unknown"


def top_count(n: int, fraction: float) -> int:
    """How many of n scored rows the top `fraction` keeps."""
    return round(fraction * n)


def _group_label(value) -> str:
    missing = value is None or value == "" or (isinstance(value, float) and math.isnan(value))
    return MISSING_GROUP if missing else str(value)


def ranked_rows_with_groups(run_dir: Path, attribute: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, uids, group labels) of every scored row, best first (clip_score desc, uid asc).

    Parity's selection needs every scored row's score and group at once: about 60 bytes a row in this process.
    """
    clip_files = part_files(run_dir, "signals/clip")
    group_files = tables.list_parts(run_dir, "groups")
    if not group_files:
        raise tables.MissingTableError(run_dir, "groups")
    quoted = lambda files: "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"  # noqa: E731
    with duckdb.connect() as con:
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({quoted(group_files)}, "
                                             f"union_by_name = true)").fetchall()]
        if attribute not in columns:
            raise ValueError(f"group_parity attribute '{attribute}' is not a column of signals/groups (it has "
                             f"{[c for c in columns if c != 'uid']}); run `fairsift audit` to write it")
        rows = con.execute(
            f"""SELECT CAST(c.clip_score AS DOUBLE), c.uid, g.grp
                FROM read_parquet({quoted(clip_files)}, union_by_name = true) c
                LEFT JOIN (SELECT uid, first("{attribute}") AS grp
                           FROM read_parquet({quoted(group_files)}, union_by_name = true) GROUP BY uid) g USING (uid)
                WHERE c.clip_score IS NOT NULL AND isfinite(c.clip_score)
                ORDER BY c.clip_score DESC, c.uid ASC""").to_arrow_table()
    scores = rows.column(0).to_numpy().astype(np.float64)
    uids = np.array(rows.column(1).to_pylist(), dtype=object)
    groups = np.array([_group_label(v) for v in rows.column(2).to_pylist()], dtype=object)
    return scores, uids, groups


def prepare_top_fraction(step: FilterStep, run_dir: str | Path) -> dict:
    """The step's global facts: n, k, the cut and, with group_parity, each group's cut and the parity report."""
    run_dir = Path(run_dir)
    clip_files = part_files(run_dir, "signals/clip")
    n = count_scored(clip_files)
    k = top_count(n, step.fraction)
    cut = kth_best(clip_files, k, n)
    prepared: dict = {"n": n, "k": k, "cut": list(cut) if cut else None}
    if step.group_parity is not None:
        attribute = step.group_parity.attribute
        scores, uids, groups = ranked_rows_with_groups(run_dir, attribute)
        selection = parity_top_k(scores, uids, groups, k, step.group_parity.min_ratio)
        group_cuts: dict[str, Optional[list]] = {}
        for g in sorted(set(groups.tolist())):
            kept = np.flatnonzero(selection.kept & (groups == g))
            group_cuts[g] = [float(scores[kept[-1]]), uids[kept[-1]]] if len(kept) else None  # rows are ranked
        prepared.update(attribute=attribute, group_cuts=group_cuts,
                        report={"group_parity": {"attribute": attribute, **selection.report}})
    return prepared


def top_fraction_step(step: FilterStep, ctx: "FilterContext") -> StepResult:
    """`step` is a ClipTopFractionStep; its global facts are in ctx.prepared[step.name]."""
    prepared = ctx.prepared.get(step.name)
    if prepared is None:
        raise RuntimeError(f"{step.name}: the global cut was not prepared before the parts were decided")
    scores = ctx.clip_scores
    uids = ctx.uids
    pct = f"top {fmt(step.fraction * 100)}%"
    cut = tuple(prepared["cut"]) if prepared["cut"] else None
    passed = np.zeros(len(scores), dtype=bool)
    reasons: list[Optional[str]] = ["no clip_score"] * len(scores)
    result = StepResult(passed=passed, reasons=reasons, helpers={"clip_score": nullable(scores)})

    if step.group_parity is None:
        cut_of_row = [cut] * len(scores)
        reason = _plain_reason(pct, cut[0] if cut else None)
    else:
        attribute = prepared["attribute"]
        labels = [_group_label(v) for v in ctx.groups(attribute).tolist()]
        group_cuts = {g: (tuple(c) if c else None) for g, c in prepared["group_cuts"].items()}
        cut_of_row = [group_cuts.get(g) for g in labels]
        result.helpers[f"group_{attribute}"] = labels
        reason = _group_reason(attribute, labels, {g: (c[0] if c else None) for g, c in group_cuts.items()})

    for i, score in enumerate(scores):
        if math.isnan(score):
            continue
        if at_or_above(float(score), uids[i], cut_of_row[i]):
            passed[i] = True
            reasons[i] = None
        else:
            reasons[i] = reason(i, float(score))
    return result


def _plain_reason(pct: str, cut: Optional[float]):
    def reason(_: int, score: float) -> str:
        if cut is None:
            return f"clip_score {fmt(score)} not in the {pct} (no row kept)"
        if score < cut:
            return f"clip_score {fmt(score)} < {pct} cut {fmt(cut)}"
        return f"clip_score {fmt(score)} = {pct} cut {fmt(cut)}, left out by uid order"

    return reason


def _group_reason(attribute: str, labels: list[str], cuts: dict[str, Optional[float]]):
    def reason(i: int, score: float) -> str:
        g = labels[i]
        thr = cuts.get(g)
        if thr is None:
            return f"clip_score {fmt(score)}: no row of {attribute}={g} kept"
        if score < thr:
            return f"clip_score {fmt(score)} < group threshold {fmt(thr)} ({attribute}={g})"
        return f"clip_score {fmt(score)} = group threshold {fmt(thr)} ({attribute}={g}), left out by uid order"

    return reason
