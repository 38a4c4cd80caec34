"""Filter impact and threshold sweep against pandas recomputations on the same synthetic rows."""

from __future__ import annotations

import numpy as np
import scipy.stats
import pandas as pd
import pytest
from scipy.stats import binomtest

from audit.impact import filter_impact, threshold_sweep, top_fraction_count
from tests.synthetic_audit_run import STEPS, make_frames

ATTRIBUTES = ["gender_terms", "country", "language"]
N_BOOT = 300


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frames = make_frames()
    return frames["decisions"].merge(frames["groups"], on="uid", how="left")


@pytest.fixture(scope="module")
def impact(frame) -> pd.DataFrame:
    return filter_impact(frame, list(STEPS), ATTRIBUTES, n_boot=N_BOOT, seed=4, min_count=30)


def _labels(frame: pd.DataFrame, attribute: str) -> pd.Series:
    return frame[attribute].fillna("(missing)").astype(str)


def _population(frame: pd.DataFrame, step: str, mode: str) -> pd.Series:
    """Recomputed from the definitions: marginal = downloaded rows (all rows for the download step);
    sequential = rows that passed every earlier step."""
    if mode == "marginal":
        return pd.Series(True, index=frame.index) if step == "download" else frame["pass_download"]
    earlier = STEPS[: STEPS.index(step)]
    return frame[[f"pass_{s}" for s in earlier]].all(axis=1) if earlier else pd.Series(True, index=frame.index)


def test_rates_counts_ratios_match_pandas(frame, impact):
    assert len(impact) == len(STEPS) * 2 * sum(_labels(frame, a).nunique() for a in ATTRIBUTES)
    for (step, mode, attribute), got in impact.groupby(["step", "mode", "attribute"], sort=False):
        population = frame.loc[_population(frame, step, mode)]
        labels = _labels(population, attribute)
        passes = population[f"pass_{step}"]
        expected = passes.groupby(labels).agg(["sum", "size"])
        overall = passes.mean()
        got = got.set_index("group").loc[expected.index]
        assert got["n"].tolist() == expected["size"].tolist()
        assert got["n_passed"].tolist() == expected["sum"].tolist()
        rate = expected["sum"] / expected["size"]
        assert got["value"].to_numpy() == pytest.approx(rate.to_numpy())
        assert got["overall_rate"].to_numpy() == pytest.approx(overall)
        assert got["ratio"].to_numpy() == pytest.approx((rate / overall).to_numpy())
        assert got["difference"].to_numpy() == pytest.approx((rate - overall).to_numpy())
        assert got["flag_low_n"].tolist() == (expected["size"] < 30).tolist()
        assert (got["metric"] == "inclusion_rate").all() and (got["analysis"] == "filter_impact").all()


def test_sequential_differs_from_marginal_after_the_first_filter(impact):
    def n_of(step, mode):
        rows = impact[(impact["step"] == step) & (impact["mode"] == mode) & (impact["attribute"] == "language")]
        return rows["n"].sum()

    assert n_of("download", "marginal") == n_of("download", "sequential")  # both: every row
    assert n_of("dedup", "marginal") == n_of("dedup", "sequential")  # both: the downloaded rows
    assert n_of("language", "sequential") < n_of("language", "marginal")


def test_bootstrap_intervals_and_p_values_recomputed_with_the_same_seed(frame, impact):
    step_i, step, mode_i, mode, attr_i, attribute = 2, "clip_score", 1, "sequential", 1, "country"
    population = frame.loc[_population(frame, step, mode)]
    labels = _labels(population, attribute)
    counts = population[f"pass_{step}"].groupby(labels).agg(["sum", "size"])  # groups in sorted order
    cells = np.concatenate([counts["sum"], counts["size"] - counts["sum"]])
    rng = np.random.default_rng([4, step_i, mode_i, attr_i])
    draws = rng.multinomial(cells.sum(), cells / cells.sum(), size=N_BOOT)
    g = len(counts)
    boot_rate = draws[:, :g] / (draws[:, :g] + draws[:, g:])
    boot_overall = draws[:, :g].sum(1) / cells.sum()
    boot_ratio = boot_rate / boot_overall[:, None]
    got = impact[(impact["step"] == step) & (impact["mode"] == mode) & (impact["attribute"] == attribute)]
    got = got.set_index("group").loc[counts.index]
    assert got["ci_low"].to_numpy() == pytest.approx(np.quantile(boot_rate, 0.025, axis=0))
    assert got["ci_high"].to_numpy() == pytest.approx(np.quantile(boot_rate, 0.975, axis=0))
    assert got["ratio_ci_low"].to_numpy() == pytest.approx(np.quantile(boot_ratio, 0.025, axis=0))
    assert got["difference_ci_high"].to_numpy() == pytest.approx(
        np.quantile(boot_rate - boot_overall[:, None], 0.975, axis=0))
    # exact one-sided binomial test of each group's passing count against 0.8 x the overall rate
    overall = counts["sum"].sum() / counts["size"].sum()
    p = np.array([scipy.stats.binomtest(int(k), int(n), 0.8 * overall, alternative="less").pvalue
                  for k, n in zip(counts["sum"], counts["size"])])
    assert got["p_value"].to_numpy() == pytest.approx(p)
    # Holm across the groups of this step × mode × attribute
    order = np.argsort(p, kind="mergesort")
    holm = np.minimum(np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]), 1)
    expected_adjusted = np.empty_like(p)
    expected_adjusted[order] = holm
    assert got["p_adjusted"].to_numpy() == pytest.approx(expected_adjusted)
    assert got["flag_four_fifths"].tolist() == (expected_adjusted < 0.05).tolist()


def test_four_fifths_flags_the_built_in_disparities(impact):
    flagged = impact[impact["flag_four_fifths"]]
    assert {("clip_score", "country", "KE"), ("language", "language", "de"), ("language", "language", "sw")} <= set(
        zip(flagged["step"], flagged["attribute"], flagged["group"]))
    assert not ((flagged["attribute"] == "country") & (flagged["group"] == "DE")).any()
    assert not (flagged["step"] == "dedup").any()  # the dedup step drops rows at random
    assert (flagged["ratio_ci_high"] < 0.8).all()


def test_no_flag_from_a_degenerate_group_too_small_to_tell():
    # 8 rows, none kept, overall 30%: the bootstrap cannot vary 0/8, but the exact test says p ~ 0.11
    frame = pd.DataFrame({"uid": [f"u{i}" for i in range(208)],
                          "pass_clip": [False] * 8 + [True] * 62 + [False] * 138,
                          "g": ["small"] * 8 + ["big"] * 200})
    rows = filter_impact(frame, ["clip"], ["g"], n_boot=200, seed=0, min_count=5)
    small = rows[(rows["group"] == "small") & (rows["mode"] == "marginal")].iloc[0]
    assert small["value"] == 0.0
    assert small["p_value"] == pytest.approx((1 - 0.8 * 62 / 208) ** 8)
    assert not small["flag_four_fifths"]


def test_benjamini_hochberg_option(frame):
    bh = filter_impact(frame, list(STEPS), ["country"], n_boot=N_BOOT, seed=4, correction="bh")
    assert (bh["correction"] == "bh").all()
    family = bh[(bh["step"] == "clip_score") & (bh["mode"] == "marginal")]
    p = family["p_value"].to_numpy()
    m = len(p)
    expected = [min(1.0, min(m * p[j] / (np.sum(p <= p[j])) for j in range(m) if p[j] >= p[i])) for i in range(m)]
    assert family["p_adjusted"].to_numpy() == pytest.approx(expected)


def test_group_that_reaches_no_later_step_has_n_zero_and_no_test():
    frame = pd.DataFrame({
        "uid": [f"u{i}" for i in range(60)],
        "pass_download": [True] * 50 + [False] * 10,
        "pass_clip": [True, False] * 30,
        "lang": ["en"] * 50 + ["xx"] * 10,
    })
    rows = filter_impact(frame, ["download", "clip"], ["lang"], n_boot=50, seed=0, min_count=5)
    gone = rows[(rows["step"] == "clip") & (rows["group"] == "xx")]
    assert gone["n"].tolist() == [0, 0]
    assert gone["value"].isna().all() and gone["p_value"].isna().all() and not gone["flag_four_fifths"].any()
    dl = rows[(rows["step"] == "download") & (rows["group"] == "xx")].iloc[0]
    assert dl["n"] == 10 and dl["value"] == 0.0 and dl["ratio"] == 0.0


def test_results_are_deterministic(frame, impact):
    again = filter_impact(frame, list(STEPS), ATTRIBUTES, n_boot=N_BOOT, seed=4, min_count=30)
    pd.testing.assert_frame_equal(impact, again)
    other_seed = filter_impact(frame, list(STEPS), ATTRIBUTES, n_boot=N_BOOT, seed=5, min_count=30)
    assert not np.allclose(impact["ci_low"], other_seed["ci_low"], equal_nan=True)


def test_threshold_sweep_matches_pandas_top_k(frame):
    clip = make_frames()["clip"]
    scored = frame.merge(clip[["uid", "clip_score"]], on="uid", how="left")
    fractions = [0.05, 0.15, 0.5, 1.0]
    sweep = threshold_sweep(scored, ["country", "gender_terms"], fractions, min_count=30)
    ranked = scored.dropna(subset=["clip_score"]).sort_values(["clip_score", "uid"], ascending=[False, True])
    n = len(ranked)
    for fraction in fractions:
        k = int(np.floor(fraction * n + 0.5))
        top = ranked.head(k)
        for attribute in ("country", "gender_terms"):
            totals = _labels(ranked, attribute).value_counts()
            chosen = _labels(top, attribute).value_counts().reindex(totals.index, fill_value=0)
            got = sweep[(sweep["fraction"] == fraction) & (sweep["attribute"] == attribute)].set_index("group")
            got = got.loc[totals.index]
            assert got["n"].tolist() == totals.tolist()
            assert got["n_selected"].tolist() == chosen.tolist()
            assert got["value"].to_numpy() == pytest.approx((chosen / totals).to_numpy())
            assert got["overall_rate"].to_numpy() == pytest.approx(k / n)
            assert got["ratio"].to_numpy() == pytest.approx((chosen / totals / (k / n)).to_numpy())
            assert got["clip_threshold"].iloc[0] == pytest.approx(float(top["clip_score"].iloc[-1]))
            for group in totals.index[:2]:
                ci = binomtest(int(chosen[group]), int(totals[group])).proportion_ci(method="wilson")
                assert (got.loc[group, "ci_low"], got.loc[group, "ci_high"]) == pytest.approx((ci.low, ci.high))
    assert (sweep[sweep["fraction"] == 1.0]["value"] == 1.0).all()


def test_threshold_sweep_breaks_ties_by_uid():
    frame = pd.DataFrame({"uid": ["b", "a", "c", "d"], "clip_score": [0.5, 0.5, 0.1, None], "g": ["x", "y", "x", "y"]})
    sweep = threshold_sweep(frame, ["g"], [0.34], min_count=1)  # k = 1 of the 3 scored rows
    assert sweep.set_index("group")["n_selected"].to_dict() == {"x": 0, "y": 1}  # uid "a" wins the tie
    assert sweep["n"].sum() == 3  # the row without a score is not counted


def test_top_fraction_count_rounds_to_nearest_row():
    assert top_fraction_count(0.15, 100) == 15  # 0.15 * 100 is 15.000000000000002 in floating point
    assert top_fraction_count(0.05, 10) == 1 and top_fraction_count(0.05, 3) == 1
    assert top_fraction_count(1.0, 7) == 7 and top_fraction_count(0.5, 0) == 0
