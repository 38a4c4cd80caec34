"""audit.stats against independent computations: scipy's Wilson interval, textbook Holm and BH loops, nPMI from
math.log, a row-level bootstrap, and fairlearn's MetricFrame bootstrap."""

from __future__ import annotations

import math

import numpy as np
import scipy.stats
import pandas as pd
import pytest
from scipy.stats import binomtest

from audit.stats import (
    adjust_p_values, benjamini_hochberg, binomial_p_below, bootstrap_group_rates, holm, npmi, percentile_interval,
    stream_rng, wilson_interval,
)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (17, 250), (499, 1000), (1, 100000)])
def test_wilson_matches_scipy(k, n):
    low, high = wilson_interval(k, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(ci.low, abs=1e-12)
    assert high == pytest.approx(ci.high, abs=1e-12)


def test_wilson_is_vectorised_and_nan_for_empty_cells():
    low, high = wilson_interval(np.array([0, 5, 7]), np.array([0, 10, 7]), confidence=0.9)
    assert np.isnan(low[0]) and np.isnan(high[0])
    ci = binomtest(5, 10).proportion_ci(confidence_level=0.9, method="wilson")
    assert (low[1], high[1]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert high[2] == pytest.approx(1.0)


def _holm_loop(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def _bh_loop(p):
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    running = 1.0
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
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_corrections_leave_nan_out_of_the_family():
    p = np.array([0.01, np.nan, 0.02])
    adjusted = adjust_p_values(p, "holm")
    assert np.isnan(adjusted[1])
    assert adjusted[[0, 2]] == pytest.approx([0.02, 0.02])  # a family of two, not three
    assert np.isnan(adjust_p_values([np.nan], "bh")).all()
    with pytest.raises(ValueError, match="holm"):
        adjust_p_values(p, "bonferroni")


def test_npmi_matches_formula_and_edges():
    n_docs, n_g, n_w, n_gw = 1000, 200, 50, 30
    p_gw, p_g, p_w = n_gw / n_docs, n_g / n_docs, n_w / n_docs
    expected = math.log(p_gw / (p_g * p_w)) / -math.log(p_gw)
    assert npmi(n_gw, n_g, n_w, n_docs) == pytest.approx(expected)
    values = npmi(np.array([0, 10, 5, 0]), np.array([10, 10, 10, 0]), np.array([10, 10, 20, 5]), 10)
    assert values[0] == -1.0  # never together
    assert values[1] == 1.0  # both cover every document
    assert values[2] == pytest.approx(math.log(0.5 / (1.0 * 2.0)) / -math.log(0.5))
    assert np.isnan(values[3])
    # independence gives 0
    assert npmi(25, 50, 50, 100) == pytest.approx(0.0, abs=1e-12)


def test_multinomial_bootstrap_matches_row_bootstrap_distribution():
    """Drawing cell counts must behave like resampling rows: compare mean and spread with a row-level bootstrap."""
    rng = np.random.default_rng(11)
    groups = rng.choice(3, size=1500, p=[0.6, 0.3, 0.1])
    passed_row = rng.random(1500) < np.array([0.8, 0.6, 0.4])[groups]
    passed = np.bincount(groups[passed_row], minlength=3)
    totals = np.bincount(groups, minlength=3)
    boot = bootstrap_group_rates(passed, totals, 4000, np.random.default_rng(1))

    idx = np.random.default_rng(2).integers(0, 1500, size=(4000, 1500))
    g, p = groups[idx], passed_row[idx]
    row_rates = np.stack([(p & (g == k)).sum(1) / (g == k).sum(1) for k in range(3)], axis=1)
    assert boot.group_rates.mean(0) == pytest.approx(row_rates.mean(0), abs=0.003)
    assert boot.group_rates.std(0) == pytest.approx(row_rates.std(0), rel=0.06)
    assert boot.overall_rates.std() == pytest.approx(p.mean(1).std(), rel=0.06)
    assert boot.group_rates.shape == (4000, 3) and boot.overall_rates.shape == (4000,)


def test_bootstrap_matches_fairlearn_metricframe():
    from fairlearn.metrics import MetricFrame, selection_rate

    rng = np.random.default_rng(5)
    sizes = {"a": 300, "b": 400, "c": 500, "d": 800}
    rates = {"a": 0.3, "b": 0.5, "c": 0.7, "d": 0.85}
    group = np.concatenate([[g] * n for g, n in sizes.items()])
    y = np.concatenate([rng.random(n) < rates[g] for g, n in sizes.items()]).astype(int)
    frame = MetricFrame(metrics=selection_rate, y_true=y, y_pred=y, sensitive_features=pd.Series(group, name="g"),
                        n_boot=200, ci_quantiles=[0.025, 0.975], random_state=0)

    labels = sorted(sizes)
    passed = np.array([y[group == g].sum() for g in labels])
    totals = np.array([sizes[g] for g in labels])
    boot = bootstrap_group_rates(passed, totals, 2000, stream_rng(0, 1))
    low, high = percentile_interval(boot.group_rates)
    overall_low, overall_high = percentile_interval(boot.overall_rates[:, None])

    assert (passed / totals).tolist() == frame.by_group.loc[labels].tolist()  # point estimates: exactly
    assert np.abs(low - frame.by_group_ci[0].loc[labels].to_numpy()).max() < 0.02
    assert np.abs(high - frame.by_group_ci[1].loc[labels].to_numpy()).max() < 0.02
    assert abs(overall_low[0] - frame.overall_ci[0]) < 0.02 and abs(overall_high[0] - frame.overall_ci[1]) < 0.02


def test_bootstrap_is_seeded_and_streams_differ():
    a = bootstrap_group_rates([5, 9], [10, 12], 50, stream_rng(3, 0, 1)).group_rates
    b = bootstrap_group_rates([5, 9], [10, 12], 50, stream_rng(3, 0, 1)).group_rates
    c = bootstrap_group_rates([5, 9], [10, 12], 50, stream_rng(3, 1, 0)).group_rates
    assert np.array_equal(a, b, equal_nan=True)
    assert not np.array_equal(a, c, equal_nan=True)


def test_bootstrap_rejects_bad_counts_and_handles_empty():
    with pytest.raises(ValueError, match="passed"):
        bootstrap_group_rates([5], [3], 10, stream_rng(0))
    empty = bootstrap_group_rates([0, 0], [0, 0], 10, stream_rng(0))
    assert np.isnan(empty.group_rates).all() and empty.group_rates.shape == (10, 2)


def test_absent_group_is_nan_in_that_resample():
    # one row in group 0 among 50: it is absent from about a third of the resamples
    boot = bootstrap_group_rates([1, 30], [1, 49], 300, stream_rng(0))
    absent = np.isnan(boot.group_rates[:, 0])
    assert 0.2 < absent.mean() < 0.5
    assert not np.isnan(boot.group_rates[:, 1]).any()


def test_binomial_p_value_is_the_exact_lower_tail():
    p = binomial_p_below([0, 5, 3], [8, 10, 0], 0.3, 0.8)
    assert p[0] == pytest.approx(scipy.stats.binomtest(0, 8, 0.24, alternative="less").pvalue)
    assert p[1] == pytest.approx(scipy.stats.binomtest(5, 10, 0.24, alternative="less").pvalue)
    assert np.isnan(p[2])


def test_percentile_interval_matches_numpy_quantile():
    reps = np.random.default_rng(0).normal(size=(999, 3))
    low, high = percentile_interval(reps, confidence=0.9)
    assert low == pytest.approx(np.quantile(reps, 0.05, axis=0))
    assert high == pytest.approx(np.quantile(reps, 0.95, axis=0))
