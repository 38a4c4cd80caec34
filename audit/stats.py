"""Statistics of the audit tables, vectorised over arrays of groups (a table of hundreds of cells costs milliseconds).

Intervals keep their coverage at every n, including 0/n and n/n (tests/test_stats.py simulates it):
- a rate k/n: Clopper-Pearson (the exact binomial interval; never zero width when n > 0). Wilson is kept for
  reference but dips to ~90% coverage at n = 5, p = 0.02, so the audit does not use it;
- a ratio of two independent rates p1/p2: the Miettinen-Nurminen score interval (Koopman's score interval with the
  N/(N-1) variance factor), inverted by bisection; lower bound 0 when x1 = 0, upper bound +inf when x2 = 0;
- a difference p1 - p2: Newcombe's hybrid score interval (his method 10, from two Wilson intervals);
- "ratio p1/p2 < θ0" is tested with the one-sided score test of the same statistic (Farrington-Manning /
  Miettinen-Nurminen), which accounts for the sampling error of both groups.
Expected values in the tests come from statsmodels (confint_proportions_2indep, test_proportions_2indep) and scipy.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Literal

import numpy as np
from scipy.special import betaincinv, ndtri
from scipy.stats import false_discovery_control

Correction = Literal["holm", "bh"]
CONFIDENCE = 0.95


def _z(confidence: float) -> float:
    return float(ndtri(0.5 + confidence / 2.0))


def proportion_interval(successes, n, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson interval of k/n, elementwise: [0, ...] at k = 0, [..., 1] at k = n, NaN where n == 0."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    _check_counts(k, n, "successes")
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, betaincinv(np.maximum(k, 1e-300), n - k + 1, alpha / 2), 0.0)
        high = np.where(k < n, betaincinv(k + 1, np.maximum(n - k, 1e-300), 1 - alpha / 2), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def wilson_interval(successes, n, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of k/n, elementwise; NaN where n == 0 (the components of Newcombe's interval)."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = _z(confidence)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    # at k = 0 and k = n the bounds are exactly 0 and 1; rounding would leave 1 - 1e-16, outside the truth p = 1
    low = np.where(k == 0, 0.0, np.clip(centre - half, 0.0, 1.0))
    high = np.where(k == n, 1.0, np.clip(centre + half, 0.0, 1.0))
    return np.where(n > 0, low, np.nan), np.where(n > 0, high, np.nan)


def _check_counts(k: np.ndarray, n: np.ndarray, name: str) -> None:
    if np.any(k < 0) or np.any(k > n) or np.any(n < 0):
        bad = np.flatnonzero(np.broadcast_to((k < 0) | (k > n) | (n < 0), np.broadcast(k, n).shape).ravel())[0]
        kk, nn = np.broadcast_to(k, np.broadcast(k, n).shape).ravel()[bad], np.broadcast_to(n, np.broadcast(k, n).shape).ravel()[bad]
        raise ValueError(f"{name} must be counts with 0 <= {name} <= n; got {name}={kk:g}, n={nn:g} at index {bad}")


Components = Literal["clopper-pearson", "wilson"]


def _components(x, n, confidence: float, components: Components):
    if components == "clopper-pearson":
        return proportion_interval(x, n, confidence)
    if components == "wilson":
        return wilson_interval(x, n, confidence)
    raise ValueError(f"unknown interval components {components!r}; use 'clopper-pearson' or 'wilson'")


def _counts4(x1, n1, x2, n2):
    x1, n1, x2, n2 = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x1, n1, x2, n2)))
    _check_counts(x1, n1, "x1")
    _check_counts(x2, n2, "x2")
    return x1, n1, x2, n2


def difference_interval(x1, n1, x2, n2, confidence: float = CONFIDENCE,
                        components: Components = "clopper-pearson") -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid (MOVER) interval of p1 - p2 from two single-rate intervals; NaN where a group is empty.

    With Wilson components this is Newcombe's method 10 (equal to statsmodels' "newcomb"); the audit uses
    Clopper-Pearson components, whose exact coverage stays >= 95% at every n and rate (with Wilson components it
    falls to 90% at n = 30, rates 0.02 vs 0.98).
    """
    x1, n1, x2, n2 = _counts4(x1, n1, x2, n2)
    l1, u1 = _components(x1, n1, confidence, components)
    l2, u2 = _components(x2, n2, confidence, components)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = x1 / n1, x2 / n2
        d = p1 - p2
        low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


def ratio_interval(x1, n1, x2, n2, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Interval of p1/p2 for independent binomials: the MOVER interval on the log scale from Clopper-Pearson
    intervals of each rate (Donner & Zou's method of variance estimates recovery, applied to log p1 - log p2).

    Edges, where a log is -inf: x1 = 0 gives [0, u1/l2]; x2 = 0 gives [l1/u2, +inf]; x1 = x2 = 0 gives [0, +inf]
    (the data say nothing about the ratio); NaN where n1 or n2 is 0. Exact coverage >= 95.5% over n in
    {5, 10, 30, 100} and rates in {0, .02, .1, .38, .5, .8, .98, 1} (the score interval falls to 90% there).
    """
    x1, n1, x2, n2 = _counts4(x1, n1, x2, n2)
    l1, u1 = proportion_interval(x1, n1, confidence)
    l2, u2 = proportion_interval(x2, n2, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        log1, log2 = np.log(x1 / n1), np.log(x2 / n2)
        log_ratio = log1 - log2
        low = np.exp(log_ratio - np.sqrt((log1 - np.log(l1)) ** 2 + (np.log(u2) - log2) ** 2))
        high = np.exp(log_ratio + np.sqrt((np.log(u1) - log1) ** 2 + (log2 - np.log(l2)) ** 2))
        low = np.where(x1 == 0, 0.0, np.where(x2 == 0, l1 / u2, low))
        high = np.where(x2 == 0, np.inf, np.where(x1 == 0, u1 / l2, high))
    empty = (n1 <= 0) | (n2 <= 0)
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def ratio_p_below(x1, n1, x2, n2, theta0: float, iterations: int = 40) -> np.ndarray:
    """One-sided p-value of H0: p1/p2 >= theta0 against H1: p1/p2 < theta0, by inverting `ratio_interval`.

    Where the estimate is below theta0, p = (1 - c) / 2 for the largest confidence level c whose interval still
    lies below theta0; elsewhere p = (1 + c) / 2 for the largest c whose interval lies above theta0 (0.5 where no
    interval excludes theta0). So a group is significantly below theta0 at one-sided level a exactly when its
    (1 - 2a) interval lies below theta0, both groups' sampling error counts, and the test keeps its level wherever
    the interval keeps its coverage. NaN where a group is empty or p2's group has no successes.
    """
    x1, n1, x2, n2 = _counts4(x1, n1, x2, n2)
    with np.errstate(invalid="ignore", divide="ignore"):
        below = x1 * n2 < theta0 * x2 * n1  # estimate < theta0, without dividing

    def largest_level(excludes) -> np.ndarray:
        lo, hi = np.zeros(x1.shape), np.ones(x1.shape)
        for _ in range(iterations):
            mid = (lo + hi) / 2
            ok = excludes(ratio_interval(x1, n1, x2, n2, mid))
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
        return lo

    c_below = largest_level(lambda ci: ci[1] < theta0)
    c_above = largest_level(lambda ci: ci[0] > theta0)
    p = np.where(below, (1 - c_below) / 2, (1 + c_above) / 2)
    return np.where((n1 > 0) & (n2 > 0) & (x2 > 0), p, np.nan)


def ratio_to_whole_interval(x, n, x_rest, n_rest, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Interval of rate_g / overall rate, where the overall rate contains the group itself.

    With w = n / (n + n_rest) fixed, rate_g / overall = rho / (w rho + 1 - w) for rho = rate_g / rate_rest, an
    increasing function of rho: the score interval of rho maps to an interval with the same coverage.
    A group that is the whole population has ratio exactly 1.
    """
    x, n, x_rest, n_rest = (np.asarray(a, dtype=np.float64) for a in (x, n, x_rest, n_rest))
    low_rho, high_rho = ratio_interval(x, n, x_rest, n_rest, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = n / (n + n_rest)
        mapped_low = low_rho / (w * low_rho + 1 - w)
        mapped_high = np.where(np.isinf(high_rho), 1 / w, high_rho / (w * high_rho + 1 - w))
    whole = (n > 0) & (n_rest == 0)
    return np.where(whole, 1.0, mapped_low), np.where(whole, 1.0, mapped_high)


def difference_to_whole_interval(x, n, x_rest, n_rest, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Interval of rate_g - overall rate: (1 - w)(rate_g - rate_rest), Newcombe's interval scaled."""
    x, n, x_rest, n_rest = (np.asarray(a, dtype=np.float64) for a in (x, n, x_rest, n_rest))
    low, high = difference_interval(x, n, x_rest, n_rest, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = n_rest / (n + n_rest)
    whole = (n > 0) & (n_rest == 0)
    return np.where(whole, 0.0, scale * low), np.where(whole, 0.0, scale * high)


def stream_rng(seed: int, *keys) -> np.random.Generator:
    """A generator for one family of cells, keyed by the run's seed and NAMES (step, attribute, population...).

    Names, not positions: adding an attribute or a step never changes another one's random draws.
    """
    words = [int(seed)]
    for key in keys:
        digest = hashlib.blake2b(str(key).encode("utf-8"), digest_size=8).digest()
        words.append(int.from_bytes(digest, "little"))
    return np.random.default_rng(words)


def percentile_interval(replicates: np.ndarray, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0, ignoring NaN replicates (numpy's linear interpolation)."""
    if replicates.size == 0:
        shape = replicates.shape[1:]
        return np.full(shape, np.nan), np.full(shape, np.nan)
    alpha = (1.0 - confidence) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        low, high = np.nanquantile(replicates, [alpha, 1.0 - alpha], axis=0)
    return low, high


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
