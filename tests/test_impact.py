"""Filter impact and threshold sweep against pandas/statsmodels recomputations on the same synthetic rows, and the
cases of issue 8 (the four-fifths reference, flags, intervals at the edges)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.proportion import proportion_confint

from audit.impact import distinct_flags, filter_impact, impact_rows, threshold_sweep
from tests.synthetic_audit_run import STEPS, make_frames

ATTRIBUTES = ["gender_terms", "country", "language"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    frames = make_frames()
    return frames["decisions"].merge(frames["groups"], on="uid", how="left")


@pytest.fixture(scope="module")
def impact(frame) -> pd.DataFrame:
    return filter_impact(frame, list(STEPS), ATTRIBUTES, min_count=30)


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
        low, high = proportion_confint(expected["sum"], expected["size"], method="beta")
        assert got["ci_low"].to_numpy() == pytest.approx(np.nan_to_num(low.to_numpy(), nan=0.0), abs=1e-9)
        assert got["ci_high"].to_numpy() == pytest.approx(np.nan_to_num(high.to_numpy(), nan=1.0), abs=1e-9)
        # the reference: the highest rate among groups with >= 30 rows, '(missing)' never
        eligible = rate[(expected["size"] >= 30) & (rate.index != "(missing)")]
        ref = eligible.idxmax()
        assert (got["reference_group"] == ref).all()
        assert got["ratio_to_max"].to_numpy() == pytest.approx((rate / eligible.max()).to_numpy())


def test_sequential_differs_from_marginal_after_the_first_filter(impact):
    def n_of(step, mode):
        rows = impact[(impact["step"] == step) & (impact["mode"] == mode) & (impact["attribute"] == "language")]
        return rows["n"].sum()

    assert n_of("download", "marginal") == n_of("download", "sequential")  # both: every row
    assert n_of("dedup", "marginal") == n_of("dedup", "sequential")  # both: the downloaded rows
    assert n_of("language", "sequential") < n_of("language", "marginal")


def test_four_fifths_flags_the_built_in_disparities(impact):
    flagged = impact[impact["significant_below_four_fifths"]]
    assert {("clip_score", "country", "KE"), ("language", "language", "de"), ("language", "language", "sw")} <= set(
        zip(flagged["step"], flagged["attribute"], flagged["group"]))
    assert not ((flagged["attribute"] == "country") & (flagged["group"] == "DE")).any()
    assert not (flagged["step"] == "dedup").any()  # the dedup step drops rows at random
    assert (flagged["ratio_to_max_ci_high"] < 1).all() and (flagged["below_four_fifths"]).all()
    assert not flagged["flag_low_n"].any()


def test_issue_8_four_fifths_reference_is_the_highest_rate_group():
    """A: 70,000 rows at 0.50, B: 30,000 at 0.38. B/A = 0.76 violates four fifths; to the overall rate (which
    contains B itself) it is 0.819 and was never flagged."""
    rows = impact_rows(np.array([35000, 11400]), np.array([70000, 30000]), np.array(["A", "B"], dtype=object),
                       min_count=30, step="s", mode="marginal", attribute="g").set_index("group")
    b = rows.loc["B"]
    assert b["ratio_to_max"] == pytest.approx(0.76) and b["reference_group"] == "A"
    assert b["ratio"] == pytest.approx(0.38 / 0.464)  # 0.819, kept beside it
    assert b["below_four_fifths"] and b["significant_below_four_fifths"]
    assert b["ratio_to_max_ci_low"] < 0.76 < b["ratio_to_max_ci_high"] < 0.8
    assert rows.loc["A", "is_reference"] and not rows.loc["A", "below_four_fifths"]


def test_issue_8_intervals_do_not_collapse_at_0_of_n_and_n_of_n():
    rows = impact_rows(np.array([0, 1, 300]), np.array([8, 1, 1000]), np.array(["none_kept", "one", "big"], dtype=object),
                       min_count=5, step="s", mode="marginal", attribute="g").set_index("group")
    zero, one = rows.loc["none_kept"], rows.loc["one"]
    assert zero["ci_low"] == 0 and zero["ci_high"] == pytest.approx(proportion_confint(0, 8, method="beta")[1])
    assert zero["ratio_to_max_ci_high"] > 0.3 and zero["ratio_ci_high"] > 0.3  # was [0, 0]
    assert one["ci_high"] == 1 and one["ci_low"] == pytest.approx(0.025)  # was [1, 1]
    assert one["ratio_ci_high"] > one["ratio_ci_low"]


def test_issue_8_below_four_fifths_is_the_point_estimate_and_small_groups_are_not_tested():
    """A group of 5 at ratio 0.36 is below four fifths (a fact about the estimate) but not significantly: too few
    rows to test (n < min_count), so not counted as a violation."""
    rows = impact_rows(np.array([1, 560]), np.array([5, 1000]), np.array(["small", "big"], dtype=object),
                       min_count=30, step="s", mode="marginal", attribute="g").set_index("group")
    small = rows.loc["small"]
    assert small["ratio_to_max"] == pytest.approx(0.2 / 0.56)
    assert small["below_four_fifths"] and not small["significant_below_four_fifths"]
    assert small["flag_low_n"] and np.isnan(small["p_value"]) and rows.loc["big", "is_reference"]


def test_issue_8_summary_counts_each_population_once(impact):
    """The download step and the step after it judge the same rows in both modes: one comparison, not two."""
    same = impact[impact["same_population"]]
    assert set(same["step"]) == {"download", "dedup"} and (same["mode"] == "sequential").all()
    flagged = impact[impact["significant_below_four_fifths"]]
    expected = len(flagged.drop_duplicates(["step", "attribute", "group", "n", "n_passed"]))
    assert distinct_flags(impact, "significant_below_four_fifths") == expected
    assert distinct_flags(impact, "below_four_fifths") == len(
        impact[impact["below_four_fifths"]].drop_duplicates(["step", "attribute", "group", "n", "n_passed"]))


def test_no_flag_from_a_degenerate_group_too_small_to_tell():
    # 8 rows, none kept, overall 30%: no test at min_count 30; at min_count 5 the exact-coverage test is not significant
    frame = pd.DataFrame({"uid": [f"u{i}" for i in range(208)],
                          "pass_clip": [False] * 8 + [True] * 62 + [False] * 138,
                          "g": ["small"] * 8 + ["big"] * 200})
    rows = filter_impact(frame, ["clip"], ["g"], min_count=5)
    small = rows[(rows["group"] == "small") & (rows["mode"] == "marginal")].iloc[0]
    assert small["value"] == 0.0 and small["below_four_fifths"]
    assert 0.05 < small["p_value"] < 0.5 and not small["significant_below_four_fifths"]


def test_benjamini_hochberg_option(frame):
    bh = filter_impact(frame, list(STEPS), ["country"], correction="bh")
    assert (bh["correction"] == "bh").all()
    family = bh[(bh["step"] == "clip_score") & (bh["mode"] == "marginal") & bh["p_value"].notna()]
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
    rows = filter_impact(frame, ["download", "clip"], ["lang"], min_count=5)
    gone = rows[(rows["step"] == "clip") & (rows["group"] == "xx")]
    assert gone["n"].tolist() == [0, 0]
    assert gone["value"].isna().all() and gone["p_value"].isna().all()
    assert not gone["significant_below_four_fifths"].any() and not gone["below_four_fifths"].any()
    dl = rows[(rows["step"] == "download") & (rows["group"] == "xx")].iloc[0]
    assert dl["n"] == 10 and dl["value"] == 0.0 and dl["ratio"] == 0.0


def test_results_are_deterministic(frame, impact):
    pd.testing.assert_frame_equal(impact, filter_impact(frame, list(STEPS), ATTRIBUTES, min_count=30))


def test_threshold_sweep_matches_pandas_top_k(frame):
    clip = make_frames()["clip"]
    scored = frame.merge(clip[["uid", "clip_score"]], on="uid", how="left")
    fractions = [0.05, 0.15, 0.5, 1.0]
    sweep = threshold_sweep(scored, ["country", "gender_terms"], fractions, min_count=30)
    ranked = scored.dropna(subset=["clip_score"]).sort_values(["clip_score", "uid"], ascending=[False, True])
    n = len(ranked)
    for fraction in fractions:
        k = min(n, max(1, int(Fraction(n) * Fraction(repr(fraction)) + Fraction(1, 2))))  # the rule, by hand
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
                ci = proportion_confint(int(chosen[group]), int(totals[group]), method="beta")
                assert (got.loc[group, "ci_low"], got.loc[group, "ci_high"]) == pytest.approx(
                    tuple(np.nan_to_num(ci, nan=1.0)))
    assert (sweep[sweep["fraction"] == 1.0]["value"] == 1.0).all()


def test_threshold_sweep_breaks_ties_by_uid():
    frame = pd.DataFrame({"uid": ["b", "a", "c", "d"], "clip_score": [0.5, 0.5, 0.1, None], "g": ["x", "y", "x", "y"]})
    sweep = threshold_sweep(frame, ["g"], [0.34], min_count=1)  # k = 1 of the 3 scored rows
    assert sweep.set_index("group")["n_selected"].to_dict() == {"x": 0, "y": 1}  # uid "a" wins the tie
    assert sweep["n"].sum() == 3  # the row without a score is not counted
