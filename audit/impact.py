"""What the filters did to each group: inclusion rates per filter step (with bootstrap CIs and a four-fifths test)
and per CLIP-score top fraction (a threshold sweep).

Filter impact, for every step of decisions.parquet (its pass_<step> columns, in order), attribute and group:
- mode "marginal": the step alone, on every row whose image downloaded (on all rows for the download step itself);
- mode "sequential": the step among rows that passed every earlier step (the funnel as the filter ran it).
`inclusion_rate` is the share of the group's rows in that population that pass the step; `ratio` divides it by the
population's overall rate (the four-fifths rule compares this ratio with 0.8).

Uncertainty: a non-stratified row bootstrap of the step's population (as fairlearn's MetricFrame does), drawn as
multinomial cell counts (audit.stats.bootstrap_group_rates); 95% percentile CIs for the rate, the ratio and the
difference (rate − overall). p_value tests H0: ratio >= 0.8 against ratio < 0.8, one-sided, with an exact binomial
test of the group's passing count against 0.8 × the overall rate (audit.stats.binomial_p_below: unlike a bootstrap
p-value it stays honest for groups where none or all rows pass); p_adjusted corrects across the groups of one step × mode × attribute, by Holm
(family-wise error, the default) or Benjamini-Hochberg (false discovery rate); flag_four_fifths is
p_adjusted < alpha, i.e. the ratio is significantly below 0.8.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd

from audit.frame import audit_rows, concat_rows, group_labels
from audit.stats import (
    Correction, adjust_p_values, binomial_p_below, bootstrap_group_rates, percentile_interval, stream_rng,
    wilson_interval,
)

FOUR_FIFTHS = 0.8
MODES = ("marginal", "sequential")
DEFAULT_SWEEP_FRACTIONS = tuple(round(0.05 * i, 2) for i in range(1, 21))


def step_populations(frame: pd.DataFrame, steps: list[str]) -> Iterable[tuple[int, str, int, str, np.ndarray]]:
    """(step index, step, mode index, mode, boolean mask of the rows the step is judged on), in table order."""
    all_rows = np.ones(len(frame), dtype=bool)
    downloaded = frame["pass_download"].to_numpy(dtype=bool) if "download" in steps else all_rows
    reached = all_rows.copy()
    for i, step in enumerate(steps):
        yield i, step, 0, "marginal", all_rows if step == "download" else downloaded
        yield i, step, 1, "sequential", reached.copy()
        reached &= frame[f"pass_{step}"].to_numpy(dtype=bool)


def _group_codes(frame: pd.DataFrame, attribute: str) -> tuple[np.ndarray, np.ndarray]:
    codes, labels = pd.factorize(group_labels(frame[attribute]), sort=True)
    return codes, labels.to_numpy(dtype=object)


def impact_rows(passed: np.ndarray, totals: np.ndarray, labels: np.ndarray, *, n_boot: int,
                rng: np.random.Generator, correction: Correction, alpha: float, min_count: int,
                **context) -> pd.DataFrame:
    """Rows of one step × mode × attribute from the per-group counts (rows passing, rows in the population)."""
    n_rows = int(totals.sum())
    overall = passed.sum() / n_rows if n_rows else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = passed / totals
        ratio = rate / overall
        boot = bootstrap_group_rates(passed, totals, n_boot, rng)
        boot_ratio = boot.group_rates / boot.overall_rates[:, None]
        boot_diff = boot.group_rates - boot.overall_rates[:, None]
    rate_low, rate_high = percentile_interval(boot.group_rates)
    ratio_low, ratio_high = percentile_interval(boot_ratio)
    diff_low, diff_high = percentile_interval(boot_diff)
    p_value = binomial_p_below(passed, totals, overall, FOUR_FIFTHS)
    p_adjusted = adjust_p_values(p_value, correction)
    return audit_rows(
        "filter_impact", **context, group=labels, n=totals, metric="inclusion_rate", value=rate,
        ci_low=rate_low, ci_high=rate_high, n_passed=passed, overall_rate=overall,
        ratio=ratio, ratio_ci_low=ratio_low, ratio_ci_high=ratio_high,
        difference=rate - overall, difference_ci_low=diff_low, difference_ci_high=diff_high,
        p_value=p_value, p_adjusted=p_adjusted, correction=correction,
        flag_four_fifths=np.nan_to_num(p_adjusted, nan=1.0) < alpha, flag_low_n=totals < min_count,
    )


def filter_impact(frame: pd.DataFrame, steps: list[str], attributes: list[str], *, n_boot: int = 1000, seed: int = 0,
                  min_count: int = 30, correction: Correction = "holm", alpha: float = 0.05,
                  progress: Callable[[int], None] | None = None) -> pd.DataFrame:
    """Rows of audit/filter_impact.parquet. `frame` holds pass_<step> booleans and one column per attribute.

    Every group of an attribute appears for every step and mode, with n = 0 where none of its rows got there.
    The resamples of each step × mode × attribute come from their own seeded stream (audit.stats.stream_rng).
    """
    coded = [(a, *_group_codes(frame, a)) for a in attributes]
    rows = []
    for step_i, step, mode_i, mode, population in step_populations(frame, steps):
        passes = frame[f"pass_{step}"].to_numpy(dtype=bool) & population
        for attr_i, (attribute, codes, labels) in enumerate(coded):
            totals = np.bincount(codes[population], minlength=len(labels))
            passed = np.bincount(codes[passes], minlength=len(labels))
            rows.append(impact_rows(
                passed, totals, labels, n_boot=n_boot, rng=stream_rng(seed, step_i, mode_i, attr_i),
                correction=correction, alpha=alpha, min_count=min_count, step=step, mode=mode, attribute=attribute,
            ))
        if progress is not None:
            progress(1)
    return concat_rows(rows)


def top_fraction_count(fraction: float, n: int) -> int:
    """Rows in the top `fraction` of n: rounded to the nearest row, at least one when n > 0."""
    return min(n, max(1 if n else 0, int(np.floor(fraction * n + 0.5))))


def threshold_sweep(frame: pd.DataFrame, attributes: list[str], fractions: Iterable[float] = DEFAULT_SWEEP_FRACTIONS,
                    min_count: int = 30) -> pd.DataFrame:
    """Rows of audit/threshold_sweep.parquet: keeping only the top `fraction` of rows by clip_score, which share of
    each group stays? Among rows with a clip_score; ties broken by uid so the cut is deterministic. Wilson CIs.
    """
    scored = frame.loc[frame["clip_score"].notna()]
    scores = scored["clip_score"].to_numpy(dtype=np.float64)
    uid_rank = pd.factorize(scored["uid"], sort=True)[0]
    order = np.lexsort((uid_rank, -scores))  # best score first, then smaller uid
    n_scored = len(scored)
    rows = []
    for fraction in fractions:
        k = top_fraction_count(fraction, n_scored)
        chosen = order[:k]
        cutoff = float(scores[chosen[-1]]) if k else np.nan
        overall = k / n_scored if n_scored else np.nan
        for attribute in attributes:
            codes, labels = _group_codes(scored, attribute)
            totals = np.bincount(codes, minlength=len(labels))
            selected = np.bincount(codes[chosen], minlength=len(labels))
            with np.errstate(invalid="ignore", divide="ignore"):
                rate = selected / totals
                ratio = rate / overall
            low, high = wilson_interval(selected, totals)
            rows.append(audit_rows(
                "threshold_sweep", step="clip_score", attribute=attribute, group=labels, n=totals,
                metric="inclusion_rate", value=rate, ci_low=low, ci_high=high, fraction=float(fraction),
                clip_threshold=cutoff, n_selected=selected, overall_rate=overall, ratio=ratio,
                flag_low_n=totals < min_count,
            ))
    return concat_rows(rows)
