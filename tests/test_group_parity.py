"""Fairness-aware CLIP top fraction: a planted score bias against one group, corrected by per-group quotas."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate import tables
from curate.filter.stage import FilterConfig, filter_run
from curate.filter.parity import parity_top_k, plain_top_k
from tests.run_builder import Row, write_run

ATTRIBUTE = "gender_terms"


def biased_corpus(n: int = 600, shift: float = 0.04, seed: int = 7):
    """Scores from one distribution, with captions that mention women shifted down: CLIP's planted bias."""
    rng = np.random.default_rng(seed)
    groups = rng.choice(["male", "female", "none", "both"], size=n, p=[0.4, 0.35, 0.2, 0.05])
    scores = rng.normal(0.30, 0.03, size=n) - np.where(groups == "female", shift, 0.0)
    uids = np.array([f"{i:032x}" for i in rng.permutation(n)])
    return scores.astype(np.float32).astype(np.float64), uids, groups.astype(object)


def ratios(kept: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    overall = kept.mean()
    return {g: kept[groups == g].mean() / overall for g in sorted(set(groups))}


def test_plain_top_fraction_under_selects_the_shifted_group():
    scores, uids, groups = biased_corpus()
    kept = plain_top_k(scores, uids, round(0.3 * len(scores)))
    assert ratios(kept, groups)["female"] < 0.8


def test_parity_raises_every_group_to_min_ratio_with_the_same_kept_count():
    scores, uids, groups = biased_corpus()
    k = round(0.3 * len(scores))
    plain = plain_top_k(scores, uids, k)
    selection = parity_top_k(scores, uids, groups, k, min_ratio=0.9)
    assert selection.kept.sum() == plain.sum() == k
    assert all(r >= 0.9 for r in ratios(selection.kept, groups).values())
    report = selection.report
    assert report["parity_met"] and report["moved"] > 0
    # the cost: swapped-in rows score lower than the ones they replace
    assert report["mean_clip_kept_parity"] < report["mean_clip_kept_plain"]
    assert report["mean_clip_cost"] == pytest.approx(report["mean_clip_kept_plain"] - report["mean_clip_kept_parity"])
    female = report["groups"]["female"]
    assert female["ratio_plain"] < 0.8 <= 0.9 <= female["ratio_parity"]
    assert female["threshold_parity"] < female["threshold_plain"]
    # groups that give rows up lose only their lowest kept rows: everything kept by parity in them was kept before
    for g in ("male", "none"):
        in_g = groups == g
        assert not np.any(selection.kept & in_g & ~plain)


def test_parity_is_deterministic_and_leaves_fair_selections_alone():
    scores, uids, groups = biased_corpus(shift=0.0, seed=3)
    k = round(0.3 * len(scores))
    first = parity_top_k(scores, uids, groups, k, min_ratio=0.5)
    again = parity_top_k(scores, uids, groups, k, min_ratio=0.5)
    assert np.array_equal(first.kept, again.kept)
    assert np.array_equal(first.kept, plain_top_k(scores, uids, k))
    assert first.report["moved"] == 0 and first.report["mean_clip_cost"] == 0


def test_unreachable_parity_keeps_the_count_and_says_so():
    scores, uids, groups = biased_corpus(n=200, shift=0.1)
    k = round(0.3 * len(scores))
    selection = parity_top_k(scores, uids, groups, k, min_ratio=1.0)
    assert selection.kept.sum() == k
    assert isinstance(selection.report["parity_met"], bool)
    assert all(v["ratio_parity"] >= v["ratio_plain"] or v["ratio_plain"] >= 1.0
               for v in selection.report["groups"].values())


@pytest.fixture
def biased_run(tmp_path):
    scores, uids, groups = biased_corpus()
    rows = [Row(caption=f"caption {i} about {g}", url=f"http://127.0.0.1/{i}.jpg", clip_score=float(s))
            for i, (s, g) in enumerate(zip(scores, groups))]
    run_dir = write_run(tmp_path / "run", rows, dedup=False)
    return run_dir, rows, groups


def _write_groups(run_dir, rows, groups):
    tables.write_table(run_dir, "groups", pa.table({"uid": [r.uid for r in rows], ATTRIBUTE: list(groups),
                                                    "country": [None] * len(rows)}))


def test_filter_step_with_group_parity_writes_decisions_and_reports_the_cost(biased_run):
    run_dir, rows, groups = biased_run
    _write_groups(run_dir, rows, groups)
    config = {"steps": [{"clip_top_fraction": {"fraction": 0.3, "group_parity": {"attribute": ATTRIBUTE,
                                                                                "min_ratio": 0.9}}}]}
    counts = filter_run(run_dir, FilterConfig.model_validate(config))
    d = tables.read_table(run_dir, "decisions").to_pandas()
    kept = d["pass_clip_top_fraction"].to_numpy()
    assert kept.sum() == counts["kept"] == round(0.3 * len(rows))
    assert all(r >= 0.9 for r in ratios(kept, np.array(groups)).values())

    parity = counts["group_parity"]
    assert parity["attribute"] == ATTRIBUTE and parity["min_ratio"] == 0.9
    assert parity["mean_clip_kept_parity"] < parity["mean_clip_kept_plain"]
    assert parity["groups"]["female"]["ratio_plain"] < 0.8
    assert counts["thresholds"]["clip_top_fraction"] > counts["thresholds"]["clip_top_fraction_groups"]["female"]

    dropped_female = d[(d[f"group_{ATTRIBUTE}"] == "female") & ~d["kept"]]
    threshold = parity["groups"]["female"]["threshold_parity"]
    assert dropped_female["reason"].str.contains(f"group threshold {threshold:.4g} \\({ATTRIBUTE}=female\\)").all()


def test_required_tables_name_groups_only_with_group_parity():
    assert "groups" not in FilterConfig().required_tables()
    config = FilterConfig.model_validate({"steps": ["dedup", {"clip_top_fraction": {"group_parity": {}}}]})
    assert config.required_tables() == ["shards", "dedup", "clip", "groups"]


def test_group_parity_needs_the_groups_table_from_audit(biased_run):
    run_dir, rows, groups = biased_run
    config = FilterConfig.model_validate({"steps": [{"clip_top_fraction": {"group_parity": {"min_ratio": 0.9}}}]})
    with pytest.raises(tables.MissingTableError, match="fairsift audit"):
        filter_run(run_dir, config)
    _write_groups(run_dir, rows, groups)
    config = FilterConfig.model_validate(
        {"steps": [{"clip_top_fraction": {"group_parity": {"attribute": "skin_tone", "min_ratio": 0.9}}}]})
    with pytest.raises(ValueError, match="skin_tone"):
        filter_run(run_dir, config)
