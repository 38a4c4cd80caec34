"""audit.stats and audit.npmi against independent computations: scipy/statsmodels intervals and tests, textbook Holm
and BH loops, exact binomial enumeration of coverage and test size, simulated coverage, nPMI from math.log and a
document-level bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom, binomtest
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint
from statsmodels.stats.proportion import test_proportions_2indep as score_test_2indep  # not collected by pytest

from audit.npmi import npmi, npmi_difference_interval, npmi_interval
from audit.stats import (
    adjust_p_values, benjamini_hochberg, difference_interval, difference_to_whole_interval, holm, proportion_interval,
    ratio_interval, ratio_p_below, ratio_to_whole_interval, stream_rng, wilson_interval,
)

NS = (5, 10, 30, 100, 1000)
PS = (0.0, 0.02, 0.5, 0.98, 1.0)
DRAWS = 2000
RATIO_PAIRS = ((0.02, 0.5), (0.38, 0.5), (0.4, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 0.5), (0.98, 0.98), (0.0, 0.5),
               (1.0, 1.0), (0.02, 0.02), (0.8, 0.98))


# ---- single rates ----

@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (17, 250), (499, 1000), (1, 100000)])
def test_clopper_pearson_matches_statsmodels(k, n):
    low, high = proportion_interval(k, n)
    expected = proportion_confint(k, n, alpha=0.05, method="beta")
    assert (low, high) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (17, 250), (1, 100000)])
def test_wilson_matches_scipy(k, n):
    low, high = wilson_interval(k, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(ci.low, abs=1e-12) and high == pytest.approx(ci.high, abs=1e-12)


def test_wilson_reaches_exactly_1_at_n_of_n():
    # rounding left 1 - 1e-16 at k = n, so the interval missed a true rate of 1 every time
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 7)[0] == 0.0


def test_rate_intervals_are_nan_for_empty_cells_and_reject_bad_counts():
    low, high = proportion_interval(np.array([0, 5]), np.array([0, 10]))
    assert np.isnan(low[0]) and np.isnan(high[0]) and not np.isnan(low[1])
    with pytest.raises(ValueError, match="successes"):
        proportion_interval(5, 3)


def test_rate_coverage_by_simulation():
    """n in {5, 10, 30, 100, 1000} x p in {0, .02, .5, .98, 1}, 2,000 draws each: coverage >= 0.93, and no
    interval of zero width (n > 0). 0/n and n/n included (bootstrap percentiles gave [0, 0] and [1, 1] there)."""
    rng = np.random.default_rng(2024)
    for n in NS:
        for p in PS:
            k = rng.binomial(n, p, DRAWS)
            low, high = proportion_interval(k, n)
            assert np.mean((low <= p) & (p <= high)) >= 0.93, (n, p)
            assert np.all(high - low > 0), (n, p)
    low, high = proportion_interval(0, 8)
    assert low == 0 and high > 0.3  # the old bootstrap said [0, 0] for 0 of 8
    low, high = proportion_interval(0, 100)
    assert high == pytest.approx(0.0362, abs=1e-4)  # 0 crime labels in 100 images: not [0, 0]


# ---- two rates ----

@pytest.mark.parametrize("x1,n1,x2,n2", [(3, 10, 7, 12), (0, 8, 30, 100), (5, 5, 3, 9), (38000, 100000, 50000, 100000),
                                         (4, 20, 0, 7), (10, 10, 10, 10), (1, 1, 1, 1)])
def test_difference_with_wilson_components_is_newcombes_interval(x1, n1, x2, n2):
    got = difference_interval(x1, n1, x2, n2, components="wilson")
    expected = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff")
    assert got == pytest.approx(expected, abs=1e-9)


def test_ratio_interval_edges():
    assert ratio_interval(0, 8, 0, 9) == (0.0, np.inf)  # nothing to say about the ratio
    low, high = ratio_interval(0, 8, 30, 100)
    assert low == 0 and 0 < high < np.inf
    low, high = ratio_interval(4, 20, 0, 7)
    assert 0 < low and high == np.inf
    assert np.isnan(ratio_interval(0, 0, 3, 10)[0])
    low, high = ratio_interval(10, 10, 10, 10)
    assert low < 1 < high


def test_ratio_interval_large_n_agrees_with_the_score_interval():
    """Where asymptotics hold, the MOVER interval is close to statsmodels' Miettinen-Nurminen score interval."""
    for x1, n1, x2, n2 in [(38000, 100000, 50000, 100000), (3800, 10000, 5000, 10000), (300, 1000, 450, 1200)]:
        got = ratio_interval(x1, n1, x2, n2)
        expected = confint_proportions_2indep(x1, n1, x2, n2, method="score", compare="ratio")
        assert got == pytest.approx(expected, rel=5e-3)


def _exact_coverage(interval, n1, n2, p1, p2, truth) -> float:
    x1 = np.arange(n1 + 1)[:, None] * np.ones((1, n2 + 1))
    x2 = np.ones((n1 + 1, 1)) * np.arange(n2 + 1)[None, :]
    weight = binom.pmf(np.arange(n1 + 1), n1, p1)[:, None] * binom.pmf(np.arange(n2 + 1), n2, p2)[None, :]
    low, high = interval(x1, n1, x2, n2)
    return float((weight * ((low <= truth + 1e-12) & (truth - 1e-12 <= high))).sum())


def test_ratio_and_difference_exact_coverage_on_a_grid():
    """Exact (enumerated) coverage over small n and edge rates, where score and Wilson-based intervals fall to ~90%."""
    for n1 in (5, 10, 30):
        for n2 in (5, 10, 30, 100):
            for p1 in (0.0, 0.02, 0.1, 0.5, 0.98, 1.0):
                for p2 in (0.02, 0.5, 0.98, 1.0):
                    assert _exact_coverage(ratio_interval, n1, n2, p1, p2, p1 / p2) >= 0.95, (n1, n2, p1, p2)
                    assert _exact_coverage(difference_interval, n1, n2, p1, p2, p1 - p2) >= 0.95, (n1, n2, p1, p2)


def test_ratio_and_difference_coverage_by_simulation():
    rng = np.random.default_rng(7)
    for n in NS:
        for p1, p2 in RATIO_PAIRS:
            for n2 in (n, 3 * n):
                x1, x2 = rng.binomial(n, p1, DRAWS), rng.binomial(n2, p2, DRAWS)
                low, high = ratio_interval(x1, n, x2, n2)
                assert np.mean((low <= p1 / p2) & (p1 / p2 <= high)) >= 0.93, (n, n2, p1, p2)
                assert np.all(high - low > 0)
                dl, dh = difference_interval(x1, n, x2, n2)
                assert np.mean((dl <= p1 - p2 + 1e-12) & (p1 - p2 - 1e-12 <= dh)) >= 0.93, (n, n2, p1, p2)
                assert np.all(dh - dl > 0)


def test_ratio_to_overall_maps_group_vs_rest_exactly():
    """rate_g / overall with the group inside the overall rate: coverage by simulation, and the issue's example."""
    rng = np.random.default_rng(11)
    for n, n_rest, p, p_rest in [(5, 50, 0.02, 0.5), (30, 70, 0.5, 0.5), (100, 20, 0.98, 0.5), (10, 1000, 0.0, 0.3)]:
        x, xr = rng.binomial(n, p, DRAWS), rng.binomial(n_rest, p_rest, DRAWS)
        truth = p / ((n * p + n_rest * p_rest) / (n + n_rest))
        low, high = ratio_to_whole_interval(x, n, xr, n_rest)
        assert np.mean((low <= truth + 1e-12) & (truth - 1e-12 <= high)) >= 0.93
        dl, dh = difference_to_whole_interval(x, n, xr, n_rest)
        truth_d = p - (n * p + n_rest * p_rest) / (n + n_rest)
        assert np.mean((dl <= truth_d + 1e-12) & (truth_d - 1e-12 <= dh)) >= 0.93
    # a group that is the whole population has ratio exactly 1
    assert ratio_to_whole_interval(5, 10, 0, 0) == (1.0, 1.0)


# ---- the four-fifths test ----

def test_four_fifths_p_value_inverts_the_interval():
    """Significant at one-sided level a exactly when the (1 - 2a) interval lies below 0.8."""
    cases = [(11400, 30000, 35000, 70000), (30, 100, 50, 100), (0, 8, 62, 200), (3, 10, 7, 12), (45, 50, 50, 60)]
    for x1, n1, x2, n2 in cases:
        p = float(ratio_p_below(x1, n1, x2, n2, 0.8))
        for level in (0.9, 0.95, 0.99):
            upper = float(ratio_interval(x1, n1, x2, n2, level)[1])
            if abs(upper - 0.8) > 1e-6:
                assert (p < (1 - level) / 2) == (upper < 0.8), (x1, n1, x2, n2, level)


def test_four_fifths_p_value_agrees_with_the_score_test_at_large_n():
    for x1, n1, x2, n2 in [(380, 1000, 500, 1000), (3900, 10000, 5000, 10000), (1180, 3000, 3500, 7000)]:
        expected = score_test_2indep(x1, n1, x2, n2, value=0.8, method="score", compare="ratio",
                                           alternative="smaller").pvalue
        assert float(ratio_p_below(x1, n1, x2, n2, 0.8)) == pytest.approx(expected, rel=0.1, abs=2e-3)


def test_four_fifths_test_keeps_its_level_at_the_null_boundary():
    """Exact size at ratio = 0.8: never above 5%, and not the near-zero size of the old test for big groups."""
    for n1, n2, p2 in [(30, 30, 0.5), (30, 100, 0.9), (60, 30, 0.2), (40, 120, 1.0)]:
        x1 = np.arange(n1 + 1)[:, None] * np.ones((1, n2 + 1))
        x2 = np.ones((n1 + 1, 1)) * np.arange(n2 + 1)[None, :]
        weight = binom.pmf(np.arange(n1 + 1), n1, 0.8 * p2)[:, None] * binom.pmf(np.arange(n2 + 1), n2, p2)[None, :]
        p = np.nan_to_num(ratio_p_below(x1, n1, x2, n2, 0.8), nan=1.0)
        assert (weight * (p < 0.05)).sum() <= 0.05, (n1, n2, p2)
    # a 70% group against a 30% group, large n, at the boundary (the old test rejected 0.24% of the time)
    rng = np.random.default_rng(5)
    x_big, x_small = rng.binomial(70000, 0.5, 2000), rng.binomial(30000, 0.4, 2000)
    rejected = np.mean(ratio_p_below(x_small, 30000, x_big, 70000, 0.8) < 0.05)
    assert 0.03 < rejected < 0.07


# ---- corrections, streams ----

def _holm_loop(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _bh_loop(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted, running = [0.0] * m, 1.0
    for rank in range(m - 1, -1, -1):
        i = order[rank]
        running = min(running, m * p[i] / (rank + 1))
        adjusted[i] = min(1.0, running)
    return adjusted


def test_holm_and_bh_match_textbook_loops():
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = rng.uniform(0, 0.2, size=rng.integers(1, 12)).tolist()
        assert holm(p) == pytest.approx(_holm_loop(p), abs=1e-12)
        assert benjamini_hochberg(p) == pytest.approx(_bh_loop(p), abs=1e-12)
    adjusted = adjust_p_values(np.array([0.01, np.nan, 0.02]), "holm")
    assert np.isnan(adjusted[1]) and adjusted[[0, 2]] == pytest.approx([0.02, 0.02])  # NaN is out of the family
    with pytest.raises(ValueError, match="holm"):
        adjust_p_values([0.1], "bonferroni")


def test_streams_are_keyed_by_names_not_positions():
    a = stream_rng(3, "clip_score", "country").random(5)
    assert np.array_equal(a, stream_rng(3, "clip_score", "country").random(5))
    assert not np.array_equal(a, stream_rng(3, "country", "clip_score").random(5))
    assert not np.array_equal(a, stream_rng(4, "clip_score", "country").random(5))


# ---- nPMI ----

def test_npmi_matches_formula_and_documented_edges():
    n_docs, n_g, n_w, n_gw = 1000, 200, 50, 30
    expected = math.log((n_gw / n_docs) / ((n_g / n_docs) * (n_w / n_docs))) / -math.log(n_gw / n_docs)
    assert npmi(n_gw, n_g, n_w, n_docs) == pytest.approx(expected)
    assert npmi(25, 50, 50, 100) == pytest.approx(0.0, abs=1e-12)  # independence
    assert npmi(10, 10, 10, 100) == pytest.approx(1.0)  # always together
    assert npmi(0, 10, 10, 100) == -1.0  # never together
    assert np.isnan(npmi(0, 0, 5, 10))  # an event that never occurs
    assert np.isnan(npmi(10, 10, 10, 10))  # both in every document: 0/0, no contrast (was +1 by convention)
    assert npmi(5, 10, 5, 10) == pytest.approx(0.0)  # g in every document carries no information about w


@pytest.mark.parametrize("counts,match", [((5, 3, 5, 10), "n_gw > n_g"), ((5, 8, 3, 10), "n_gw > n_w"),
                                          ((2, 8, 7, 10), "cover more documents"), ((1, 11, 3, 10), "n_g > n_docs"),
                                          ((-1, 3, 3, 10), "non-negative"), ((1.5, 3, 3, 10), "whole count")])
def test_npmi_rejects_counts_no_documents_can_produce(counts, match):
    with pytest.raises(ValueError, match=match):
        npmi(*counts)  # npmi(5, 3, 5, 10) returned 1.74, outside [-1, 1]


def test_npmi_interval_agrees_with_a_document_bootstrap_and_never_collapses():
    n_docs, n_g, n_w, n_gw = 2000, 400, 300, 90
    low, high = npmi_interval(n_gw, n_g, n_w, n_docs, 4000, stream_rng(0, "t"))
    # oracle: resample documents (rows of the 2x2 table) with replacement
    docs = np.array([0] * n_gw + [1] * (n_g - n_gw) + [2] * (n_w - n_gw) + [3] * (n_docs - n_g - n_w + n_gw))
    rng = np.random.default_rng(1)
    values = []
    for _ in range(1500):
        c = np.bincount(docs[rng.integers(0, n_docs, n_docs)], minlength=4)
        values.append(float(npmi(c[0], c[0] + c[1], c[0] + c[2], n_docs)))
    assert (low, high) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])), abs=0.01)
    low0, high0 = npmi_interval(0, 40, 30, 2000, 2000, stream_rng(0, "t"))
    assert low0 == -1.0 and high0 > -1.0  # a pair never seen together still has an interval of non-zero width


def test_npmi_difference_interval_contains_the_difference():
    # classes female, male, both, other; documents with the word per class
    class_total = np.array([300, 300, 50, 350])
    class_word = np.array([[60, 20, 5, 15], [0, 0, 0, 10], [30, 30, 5, 35]])
    value, low, high = npmi_difference_interval(class_word, class_total, (0, 2), (1, 2), 2000, stream_rng(0, "d"))
    n_w = class_word.sum(1)
    f = npmi(class_word[:, [0, 2]].sum(1), 350, n_w, 1000)
    m = npmi(class_word[:, [1, 2]].sum(1), 350, n_w, 1000)
    assert value == pytest.approx(f - m, nan_ok=True)
    assert np.all((low[[0, 2]] <= value[[0, 2]]) & (value[[0, 2]] <= high[[0, 2]]))
    assert low[0] > 0  # a word that clearly leans female
    assert low[2] < 0 < high[2]
