"""The clip_top_fraction step: a global step finds the cut of the ONE top-fraction rule (curate.selection: k from n
and f, ties by score then uid) over the whole run, then every part is decided on its own.

`prepare_top_fraction` runs once per run: it counts the scored rows n, takes k = top_fraction_count(n, f) and finds
the k-th best (clip_score, uid) out of core (curate.filter.global_cut), giving the rule's Boundary; with
`group_parity` it runs the parity selection of curate.filter.parity over every scored row and keeps each group's
boundary (its lowest kept score and uid). `top_fraction_step` runs per part: a row passes when it is at or above its
boundary, and every row left out gets a reason — saying so when it tied at the cut and was left out by uid order.

The threshold recorded for the step is the lowest kept score; the stage's report carries the boundary
(`top_fraction_cut`) and, with parity, the parity report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import duckdb
import numpy as np

from curate import tables
from curate.filter.global_cut import count_scored, kth_best, part_files, scored_rows_sql
from curate.filter.parity import parity_top_k
from curate.filter.step_base import FilterStep, StepResult, fmt, nullable
from curate.selection import Boundary, kept_by_boundary, top_fraction_count

if TYPE_CHECKING:
    from curate.filter.context import FilterContext

MISSING_GROUP = "unknown"


def _group_label(value) -> str:
    missing = value is None or value == "" or (isinstance(value, float) and math.isnan(value))
    return MISSING_GROUP if missing else str(value)




def run_boundary(run_dir: Path, fraction: float) -> Boundary:
    """The rule's boundary over every clip part of the run, found out of core (no sort of all n rows)."""
    clip_files = part_files(run_dir, tables.TABLE_PATHS["clip"])
    n = count_scored(clip_files)
    k = top_fraction_count(n, fraction)
    cut = kth_best(clip_files, k, n)
    if cut is None:
        return Boundary(n=n, k=0, threshold=None, uid=None)
    threshold, uid = cut
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        tied, tied_kept = con.execute(
            f"SELECT count(*) FILTER (WHERE clip_score = ?), count(*) FILTER (WHERE clip_score = ? AND uid <= ?) "
            f"FROM {scored_rows_sql(clip_files)}", [threshold, threshold, uid]).fetchall()[0]
    return Boundary(n=n, k=k, threshold=threshold, uid=uid, tied=int(tied), tied_kept=int(tied_kept))


def ranked_rows_with_groups(run_dir: Path, attribute: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, uids, group labels) of every scored row, best first (clip_score desc, uid asc).

    Parity's selection needs every scored row's score and group at once: about 60 bytes a row in this process.
    """
    clip_files = part_files(run_dir, tables.TABLE_PATHS["clip"])
    group_files = tables.list_parts(run_dir, "groups")
    if not group_files:
        raise tables.MissingTableError(run_dir, "groups")
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")
        columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({tables.sql_file_list(group_files)}, "
                                             f"union_by_name = true)").fetchall()]
        if attribute not in columns:
            raise ValueError(f"group_parity attribute '{attribute}' is not a column of signals/groups (it has "
                             f"{[c for c in columns if c != 'uid']}); run `fairsift audit` to write it")
        rows = con.execute(
            f"""SELECT c.clip_score, c.uid, g.grp FROM {scored_rows_sql(clip_files)} c
                LEFT JOIN (SELECT uid, first("{attribute}") AS grp
                           FROM read_parquet({tables.sql_file_list(group_files)}, union_by_name = true) GROUP BY uid) g USING (uid)
                ORDER BY c.clip_score DESC, c.uid ASC""").to_arrow_table()
    scores = rows.column(0).to_numpy().astype(np.float64)
    uids = np.array(rows.column(1).to_pylist(), dtype=object)
    groups = np.array([_group_label(v) for v in rows.column(2).to_pylist()], dtype=object)
    return scores, uids, groups


def _group_boundary(scores: np.ndarray, uids: np.ndarray, in_group: np.ndarray, kept: np.ndarray) -> Optional[dict]:
    """A group's boundary under a selection (rows ranked best first): its last kept row, and the ties there."""
    kept_rows = np.flatnonzero(kept & in_group)
    if not len(kept_rows):
        return None
    last = kept_rows[-1]
    at = in_group & (scores == scores[last])
    return {"threshold": float(scores[last]), "uid": str(uids[last]), "tied": int(at.sum()),
            "tied_kept": int((at & kept).sum())}


def prepare_top_fraction(step: FilterStep, run_dir: str | Path) -> dict:
    """The step's global facts: the run's boundary and, with group_parity, each group's boundary and the report."""
    run_dir = Path(run_dir)
    boundary = run_boundary(run_dir, step.fraction)
    prepared: dict = {"boundary": boundary.as_dict(),
                      "report": {"top_fraction_cut": {"fraction": step.fraction, **boundary.as_dict()}}}
    if step.group_parity is not None:
        options = step.group_parity
        scores, uids, groups = ranked_rows_with_groups(run_dir, options.attribute)
        selection = parity_top_k(scores, uids.astype(str), groups, boundary.k, options.min_ratio,
                                 reference=options.reference, min_count=options.min_count)
        prepared["attribute"] = options.attribute
        prepared["group_boundaries"] = {g: _group_boundary(scores, uids, groups == g, selection.kept)
                                        for g in sorted(set(groups.tolist()))}
        prepared["report"]["group_parity"] = {"attribute": options.attribute, **selection.report}
    return prepared


def decide_part(scores: np.ndarray, uids: np.ndarray, boundary: Boundary,
                fraction: float) -> tuple[np.ndarray, list[Optional[str]]]:
    """Passes and reasons of the plain cut for any rows (one part, or the whole run) given the run's boundary."""
    passed = kept_by_boundary(scores, uids, boundary)
    reason = plain_reason(f"top {fmt(fraction * 100)}%", boundary)
    reasons = [None if ok else ("no clip_score" if np.isnan(s) else reason(float(s)))
               for ok, s in zip(passed, np.asarray(scores, dtype=np.float64))]
    return passed, reasons


def _boundary(found: dict) -> Boundary:
    return Boundary(n=found.get("n", 0), k=found.get("k", 0), threshold=found["threshold"], uid=found["uid"],
                    tied=found.get("tied", 0), tied_kept=found.get("tied_kept", 0))


def top_fraction_step(step: FilterStep, ctx: "FilterContext") -> StepResult:
    """`step` is a ClipTopFractionStep; its global facts are in ctx.prepared[step.name]."""
    prepared = ctx.prepared.get(step.name)
    if prepared is None:
        raise RuntimeError(f"{step.name}: the global cut was not prepared before the parts were decided")
    scores = ctx.clip_scores
    uids = ctx.uids.astype(str)
    result = StepResult(passed=np.zeros(len(scores), dtype=bool), reasons=["no clip_score"] * len(scores),
                        helpers={"clip_score": nullable(scores)})
    if step.group_parity is None:
        result.passed, result.reasons = decide_part(scores, uids, _boundary(prepared["boundary"]), step.fraction)
        return result
    else:
        attribute = prepared["attribute"]
        labels = np.array([_group_label(v) for v in ctx.groups(attribute).tolist()], dtype=object)
        found = prepared["group_boundaries"]
        passed = np.zeros(len(scores), dtype=bool)
        for g in set(labels.tolist()):
            if found.get(g) is not None:
                rows = labels == g
                passed[rows] = kept_by_boundary(scores[rows], uids[rows], _boundary(found[g]))
        result.helpers[f"group_{attribute}"] = labels.tolist()
        cuts = {g: (b["threshold"] if b else None) for g, b in found.items()}
        tied = {g: (b["tied"], b["tied_kept"]) for g, b in found.items() if b}
        reason = _group_reason(attribute, labels, cuts, tied)
    result.passed = passed
    result.reasons = [None if ok else ("no clip_score" if math.isnan(s) else reason(i, float(s)))
                      for i, (ok, s) in enumerate(zip(passed, scores))]
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
        thr = cuts.get(g)
        if thr is None:
            return f"clip_score {fmt(score)}: no row of {attribute}={g} kept"
        if score < thr:
            return f"clip_score {fmt(score)} < group threshold {fmt(thr)} ({attribute}={g})"
        total, kept = tied[g]
        return (f"clip_score {fmt(score)} = group threshold {fmt(thr)} ({attribute}={g}), left out by uid order "
                f"(a tie: {kept} of {total} rows at the threshold kept)")

    return reason
