"""Statistics of the audit tables: Wilson intervals, a vectorised group-rate bootstrap, multiple-testing corrections
and normalised PMI. Everything is numpy over arrays of groups, so a table of hundreds of cells costs milliseconds.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as scipy_stats
from scipy.special import ndtri
from scipy.stats import false_discovery_control

Correction = Literal["holm", "bh"]


def wilson_interval(successes, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion, elementwise; NaN where n == 0.

    Wilson rather than the normal (Wald) interval because audit cells are often small or have rates near 0 or 1,
    where Wald's interval collapses to a point or leaves [0, 1].
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = ndtri(0.5 + confidence / 2.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def stream_rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for one table cell family: the run's seed plus the cell's position (step, mode, attribute...).

    Each family gets its own independent stream, so adding an attribute does not change another's CIs.
    """
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


@dataclass
class GroupRateBootstrap:
    """Bootstrap replicates of per-group pass rates and of the overall rate. Shapes: (n_boot, G) and (n_boot,)."""

    group_rates: np.ndarray
    overall_rates: np.ndarray


def bootstrap_group_rates(passed, totals, n_boot: int, rng: np.random.Generator) -> GroupRateBootstrap:
    """Resample the rows of a population with replacement, n_boot times, and return the pass rate of every group.

    The rates depend on the rows only through the counts of the 2·G (group × passed) cells, and resampling N rows
    with replacement draws exactly a multinomial(N, cell shares) over those cells. So all resamples come from one
    multinomial call: O(n_boot · G) instead of O(n_boot · N). The resampling is not stratified (group sizes vary
    between resamples), like fairlearn's MetricFrame, which resamples rows of the whole dataset.
    A group absent from a resample has rate NaN there.
    """
    passed = np.asarray(passed, dtype=np.int64)
    totals = np.asarray(totals, dtype=np.int64)
    if passed.shape != totals.shape or np.any(passed > totals) or np.any(passed < 0):
        raise ValueError("passed must be counts with 0 <= passed <= totals, one per group")
    n_rows = int(totals.sum())
    if n_rows == 0 or n_boot <= 0:
        g = len(totals)
        return GroupRateBootstrap(np.full((max(n_boot, 0), g), np.nan), np.full(max(n_boot, 0), np.nan))
    cells = np.concatenate([passed, totals - passed]).astype(np.float64)
    draws = rng.multinomial(n_rows, cells / n_rows, size=n_boot)
    g = len(totals)
    boot_passed = draws[:, :g]
    boot_totals = boot_passed + draws[:, g:]
    with np.errstate(divide="ignore", invalid="ignore"):
        group_rates = boot_passed / boot_totals
    overall = boot_passed.sum(axis=1) / n_rows
    return GroupRateBootstrap(group_rates, overall)


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CI over axis 0, ignoring NaN replicates (numpy's linear interpolation, as MetricFrame uses)."""
    if replicates.shape[0] == 0:
        shape = replicates.shape[1:]
        return np.full(shape, np.nan), np.full(shape, np.nan)
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: groups absent from every resample
        low, high = np.nanquantile(replicates, [alpha, 1.0 - alpha], axis=0)
    return low, high


def binomial_p_below(passed: np.ndarray, totals: np.ndarray, overall_rate: float,
                     threshold: float) -> np.ndarray:
    """One-sided exact binomial p-value of H0: group rate >= threshold × overall rate, per group.

    p = P(X <= passed) for X ~ Binomial(n, threshold × overall). Exact at every count, including groups where none
    or all rows pass, whose bootstrap distribution collapses to a point (a bootstrap p-value would then claim
    significance at any n). The overall rate is taken as known: with many groups its sampling error is small next
    to a single group's. NaN for empty groups.
    """
    passed = np.asarray(passed, dtype=np.int64)
    totals = np.asarray(totals, dtype=np.int64)
    p0 = min(max(threshold * float(overall_rate), 0.0), 1.0) if np.isfinite(overall_rate) else np.nan
    with np.errstate(invalid="ignore"):
        p = scipy_stats.binom.cdf(passed, totals, p0)
    return np.where(totals > 0, p, np.nan)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error). NaN entries are left out of the family and stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    valid = p[ok]
    order = np.argsort(valid, kind="mergesort")
    stepped = (m - np.arange(m)) * valid[order]
    adjusted = np.minimum(np.maximum.accumulate(stepped), 1.0)
    result = np.empty(m)
    result[order] = adjusted
    out[ok] = result
    return out


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), via scipy; NaN entries stay NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out


def adjust_p_values(p_values, method: Correction = "holm") -> np.ndarray:
    if method == "holm":
        return holm(p_values)
    if method == "bh":
        return benjamini_hochberg(p_values)
    raise ValueError(f"unknown p-value correction {method!r}; use 'holm' or 'bh'")


def npmi(n_gw, n_g, n_w, n_docs) -> np.ndarray:
    """Normalised PMI of two document events, elementwise: log(p(g,w) / (p(g) p(w))) / -log p(g,w), in [-1, 1].

    Conventions at the edges: -1 when the pair never co-occurs (n_gw == 0), +1 when both events cover every document
    (p(g,w) == 1, where the formula is 0/0), NaN when either event never occurs.
    """
    n_gw = np.asarray(n_gw, dtype=np.float64)
    n_g = np.asarray(n_g, dtype=np.float64)
    n_w = np.asarray(n_w, dtype=np.float64)
    n_docs = float(n_docs)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_gw = n_gw / n_docs
        pmi = np.log(p_gw) - np.log(n_g / n_docs) - np.log(n_w / n_docs)
        value = pmi / -np.log(p_gw)
    value = np.where(n_gw == 0, -1.0, value)
    value = np.where(p_gw >= 1.0, 1.0, value)
    return np.where((n_g == 0) | (n_w == 0), np.nan, value)
