"""What the filters did to each group: inclusion rates per filter step, with the four-fifths rule against the
highest-rate group, and per CLIP-score top fraction (the threshold sweep).

Filter impact, for every step of decisions (its pass_<step> columns, in order), attribute and group:
- mode "marginal": the step alone, on every row whose image downloaded (on all rows for the download step itself);
- mode "sequential": the step among rows that passed every earlier step (the funnel as the filter ran it).
`same_population` marks sequential rows whose population equals the marginal one (the download step and the step
after it): they are one comparison, counted once in every summary.

Per group: `value` = inclusion rate (rows passing / rows in the population, `n`) with its Clopper-Pearson 95% CI.
Two references, both with 95% intervals that keep their coverage at every n (audit.stats):
- `ratio_to_max`: the rate divided by the rate of the REFERENCE GROUP, the highest-rate group among groups with at
  least `min_count` rows (the '(missing)' group, rows without the signal, is never the reference) — the four-fifths
  rule's own comparison (EEOC; Aequitas; fairlearn's ratio(method="between_groups")). Interval: MOVER on the log
  scale from Clopper-Pearson intervals of both rates. `difference_to_max` likewise (Newcombe-type MOVER).
- `ratio` (to the overall rate of the population, which contains the group itself) and `difference` (rate minus
  overall): intervals from the group-vs-rest comparison, mapped exactly (audit.stats.ratio_to_whole_interval).
Flags:
- `below_four_fifths`: ratio_to_max < 0.8 (the point estimate, at any n);
- `significant_below_four_fifths`: p_adjusted < alpha, where p_value is the one-sided test of H0: ratio_to_max >= 0.8
  that accounts for both groups' sampling error (audit.stats.ratio_p_below), and p_adjusted corrects it across the
  tested groups of one step x mode x attribute (the family), by Holm (default) or Benjamini-Hochberg. Tested are
  groups with at least `min_count` rows, other than the reference;
- `flag_low_n`: n < min_count: shown, never judged (no test, never the reference).
All intervals are analytic: filter impact needs no bootstrap, so `--n-boot` does not change it.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

import numpy as np
import pandas as pd

from audit.counts import Cube, cube_from_frame
from audit.frame import MISSING_GROUP, audit_rows, concat_rows, empty_frame
from audit.stats import (
    Correction, adjust_p_values, difference_interval, difference_to_whole_interval, proportion_interval,
    ratio_interval, ratio_p_below, ratio_to_whole_interval,
)
from curate.selection import Boundary

FOUR_FIFTHS = 0.8
MODES = ("marginal", "sequential")
DEFAULT_SWEEP_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(1, 21))


def reference_index(rate: np.ndarray, totals: np.ndarray, labels: np.ndarray, min_count: int) -> Optional[int]:
    """The four-fifths reference: the highest rate among groups with >= min_count rows ('(missing)' excluded);
    ties go to the larger group, then the first name. None when no group qualifies."""
    eligible = (totals >= max(min_count, 1)) & (labels != MISSING_GROUP)
    if not eligible.any():
        return None
    candidates = np.flatnonzero(eligible)
    order = sorted(candidates, key=lambda i: (-rate[i], -totals[i], str(labels[i])))
    return int(order[0])


def impact_rows(passed: np.ndarray, totals: np.ndarray, labels: np.ndarray, *, min_count: int,
                correction: Correction = "holm", alpha: float = 0.05, **context) -> pd.DataFrame:
    """Rows of one step x mode x attribute from the per-group counts (rows passing, rows in the population)."""
    passed = np.asarray(passed, dtype=np.int64)
    totals = np.asarray(totals, dtype=np.int64)
    labels = np.asarray(labels, dtype=object)
    n_rows, n_passed = int(totals.sum()), int(passed.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = passed / totals
        overall = n_passed / n_rows if n_rows else np.nan
        ratio = rate / overall
    rate_low, rate_high = proportion_interval(passed, totals)
    rest_passed, rest_totals = n_passed - passed, n_rows - totals
    ratio_low, ratio_high = ratio_to_whole_interval(passed, totals, rest_passed, rest_totals)
    diff_low, diff_high = difference_to_whole_interval(passed, totals, rest_passed, rest_totals)

    ref = reference_index(np.nan_to_num(rate, nan=-1.0), totals, labels, min_count)
    g = len(labels)
    to_max = np.full(g, np.nan)
    to_max_low, to_max_high, diff_max, diff_max_low, diff_max_high = (np.full(g, np.nan) for _ in range(5))
    p_value = np.full(g, np.nan)
    if ref is not None:
        ref_x, ref_n = np.full(g, passed[ref]), np.full(g, totals[ref])
        with np.errstate(invalid="ignore", divide="ignore"):
            to_max = np.where(totals > 0, rate / rate[ref], np.nan)
            diff_max = rate - rate[ref]
        to_max_low, to_max_high = ratio_interval(passed, totals, ref_x, ref_n)
        diff_max_low, diff_max_high = difference_interval(passed, totals, ref_x, ref_n)
        tested = (totals >= max(min_count, 1)) & (np.arange(g) != ref)
        if tested.any():
            p_value[tested] = ratio_p_below(passed[tested], totals[tested], ref_x[tested], ref_n[tested], FOUR_FIFTHS)
        # the reference compared with itself is 1 by definition, not an estimate with an interval
        to_max_low[ref] = to_max_high[ref] = diff_max_low[ref] = diff_max_high[ref] = np.nan
    p_adjusted = adjust_p_values(p_value, correction)
    is_reference = np.arange(g) == (ref if ref is not None else -1)
    return audit_rows(
        "filter_impact", **context, group=labels, n=totals, metric="inclusion_rate", value=rate,
        ci_low=rate_low, ci_high=rate_high, n_passed=passed, min_count=int(min_count), flag_low_n=totals < min_count,
        population_rows=n_rows, overall_rate=overall,
        ratio=ratio, ratio_ci_low=ratio_low, ratio_ci_high=ratio_high,
        difference=rate - overall, difference_ci_low=diff_low, difference_ci_high=diff_high,
        reference_group=labels[ref] if ref is not None else None,
        reference_rate=rate[ref] if ref is not None else np.nan,
        reference_n=int(totals[ref]) if ref is not None else 0, is_reference=is_reference,
        ratio_to_max=to_max, ratio_to_max_ci_low=to_max_low, ratio_to_max_ci_high=to_max_high,
        difference_to_max=diff_max, difference_to_max_ci_low=diff_max_low, difference_to_max_ci_high=diff_max_high,
        below_four_fifths=np.nan_to_num(to_max, nan=np.inf) < FOUR_FIFTHS,
        p_value=p_value, p_adjusted=p_adjusted, correction=correction,
        significant_below_four_fifths=np.nan_to_num(p_adjusted, nan=1.0) < alpha,
    )


def populations(cube: Cube) -> Iterable[tuple[str, str, np.ndarray, bool]]:
    """(step, mode, cell mask of the step's population, same_population) in table order."""
    steps = cube.steps
    all_cells = np.ones(len(cube.n), dtype=bool)
    downloaded = cube.step_bit("download") if "download" in steps else all_cells
    reached = all_cells.copy()
    for step in steps:
        marginal = all_cells if step == "download" else downloaded
        # the sequential population is a subset of the marginal one, so equal sizes mean equal sets
        same = bool(cube.n[marginal].sum() == cube.n[reached].sum())
        yield step, "marginal", marginal, False
        yield step, "sequential", reached.copy(), same
        reached &= cube.step_bit(step)


def impact_from_cubes(cubes: list[Cube], *, min_count: int = 30, correction: Correction = "holm",
                      alpha: float = 0.05, progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Rows of audit/filter_impact.parquet from one cell cube per attribute (audit.counts).

    Every group of an attribute appears for every step and mode, with n = 0 where none of its rows got there.
    """
    rows = []
    for cube in cubes:
        labels = cube.labels()
        for step, mode, population, same in populations(cube):
            totals = cube.per_group(labels, population)
            passed = cube.per_group(labels, population & cube.step_bit(step))
            rows.append(impact_rows(passed, totals, labels, min_count=min_count, correction=correction, alpha=alpha,
                                    step=step, mode=mode, attribute=cube.attribute, same_population=same))
        if progress is not None:
            progress(1)
    return concat_rows(rows)


def filter_impact(frame: pd.DataFrame, steps: list[str], attributes: list[str], *, min_count: int = 30,
                  correction: Correction = "holm", alpha: float = 0.05) -> pd.DataFrame:
    """filter_impact of an in-memory frame (pass_<step> booleans and one column per attribute): tests, benchmarks."""
    return impact_from_cubes([cube_from_frame(frame, steps, a) for a in attributes], min_count=min_count,
                             correction=correction, alpha=alpha)


def distinct_flags(impact: pd.DataFrame, column: str) -> int:
    """Flagged comparisons, each population counted once (a sequential row with same_population repeats the
    marginal row of its step)."""
    if impact is None or impact.empty or column not in impact:
        return 0
    repeat = impact["same_population"].fillna(False).astype(bool) if "same_population" in impact else False
    return int((impact[column].fillna(False).astype(bool) & ~repeat).sum())


def sweep_rows(counts: pd.DataFrame, boundaries: list[Boundary], fractions: list[float], attribute: str,
               min_count: int) -> pd.DataFrame:
    """Rows of audit/threshold_sweep.parquet for one attribute from its sweep counts (audit.counts.sweep_counts_sql:
    per group n and k0, k1, ... rows kept by each fraction's boundary)."""
    labels = counts["group"].to_numpy(dtype=object)
    totals = counts["n"].to_numpy(dtype=np.int64)
    rows = []
    for i, (fraction, boundary) in enumerate(zip(fractions, boundaries)):
        selected = counts[f"k{i}"].to_numpy(dtype=np.int64)
        n_scored = boundary.n
        overall = boundary.k / n_scored if n_scored else np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = selected / totals
            ratio = rate / overall
        low, high = proportion_interval(selected, totals)
        ref = reference_index(np.nan_to_num(rate, nan=-1.0), totals, labels, min_count)
        with np.errstate(invalid="ignore", divide="ignore"):
            to_max = rate / rate[ref] if ref is not None else np.full(len(labels), np.nan)
        rows.append(audit_rows(
            "threshold_sweep", step="clip_score", attribute=attribute, group=labels, n=totals,
            metric="inclusion_rate", value=rate, ci_low=low, ci_high=high, fraction=float(fraction),
            clip_threshold=boundary.threshold if boundary.threshold is not None else np.nan,
            n_kept=boundary.k, ties_cut_by_uid=boundary.ties_cut_by_uid, n_selected=selected,
            overall_rate=overall, ratio=ratio, reference_group=labels[ref] if ref is not None else None,
            ratio_to_max=to_max, min_count=int(min_count), flag_low_n=totals < min_count,
        ))
    return concat_rows(rows) if rows else empty_frame()


def threshold_sweep(frame: pd.DataFrame, attributes: list[str], fractions: Iterable[float] = DEFAULT_SWEEP_FRACTIONS,
                    min_count: int = 30) -> pd.DataFrame:
    """threshold_sweep of an in-memory frame (uid, clip_score, attributes), through the same SQL as a run's."""
    import duckdb

    from audit.counts import sweep_counts_sql
    from curate.selection import boundaries_from_sql

    fractions = list(fractions)
    con = duckdb.connect()
    con.register("clip", frame[["uid", "clip_score"]])
    con.register("groups", frame[["uid", *attributes]].drop_duplicates("uid"))
    boundaries = boundaries_from_sql(con, fractions)
    return concat_rows([sweep_rows(sweep_counts_sql(con, a, boundaries), boundaries, fractions, a, min_count)
                        for a in attributes])
