"""The ONE top-fraction rule (curate.selection): the filter step, the threshold sweep and the dashboard's what-if keep
the same set for every (n, f, tie pattern), against a brute-force oracle (exact fractions, Python's sorted)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from curate import tables
from curate.filter.steps import ClipTopFractionStep
from curate.filter.top_fraction import decide_part, top_fraction_step
from curate.selection import (
    K_SQL, boundaries_from_sql, boundary_from_scores, boundary_from_sql, kept_by_boundary, kept_sql, plain_rule,
    select_top_k, top_fraction_count,
)

ROOT = Path(__file__).resolve().parents[1]
RULE = json.loads((ROOT / "dashboards" / "top_fraction_rule.json").read_text())


def oracle_k(n: int, f: float) -> int:
    """Round half up of f*n with f read as its decimal text, at least one row when n > 0 and f > 0."""
    k = int(Fraction(n) * Fraction(repr(f)) + Fraction(1, 2))
    return min(n, max(1 if n and f > 0 else 0, k))


def oracle_kept(scores, uids, f) -> set[str]:
    scored = [(s, u) for s, u in zip(scores, uids) if s is not None and not np.isnan(s)]
    ranked = sorted(scored, key=lambda su: (-su[0], su[1]))
    return {u for _, u in ranked[: oracle_k(len(ranked), f)]}


def test_issue_examples_give_one_k():
    # filter (Python round) gave 2 / 4 / 0, the sweep 3 / 5 / 1, the dashboard (quantile_disc, ties kept) 3 / 5 / 1
    assert [top_fraction_count(5, 0.5), top_fraction_count(15, 0.3), top_fraction_count(3, 0.1)] == [3, 5, 1]
    assert top_fraction_count(0, 0.3) == 0 and top_fraction_count(7, 1.0) == 7 and top_fraction_count(100, 0.15) == 15
    with pytest.raises(ValueError, match="fraction"):
        top_fraction_count(10, 1.5)


def test_k_in_sql_equals_k_in_python():
    con = duckdb.connect()
    rng = np.random.default_rng(0)
    cases = [(n, f) for n in (0, 1, 2, 3, 5, 7, 15, 99, 1000, 10**10) for f in (0.05, 0.1, 0.15, 0.3, 0.5, 0.7, 1.0)]
    cases += [(int(rng.integers(0, 10**6)), float(rng.uniform(0, 1))) for _ in range(300)]
    cases += [(int(rng.integers(1, 200)), round(float(rng.uniform(0, 1)), 2)) for _ in range(300)]
    for n, f in cases:
        got = con.execute(f"select {K_SQL} as k from (select $n::BIGINT as n)", {"n": n, "fraction": f}).fetchall()
        assert got[0][0] == top_fraction_count(n, f), (n, f)
        if f == round(f, 2):
            assert top_fraction_count(n, f) == oracle_k(n, f), (n, f)


def _tie_pattern(rng, n: int) -> np.ndarray:
    kind = rng.integers(0, 4)
    if kind == 0:
        return rng.normal(0.3, 0.05, n)  # no ties
    if kind == 1:
        return np.round(rng.normal(0.3, 0.05, n), 2)  # some ties
    if kind == 2:
        return rng.choice([0.1, 0.2, 0.3], size=n)  # many ties
    return np.full(n, 0.25)  # everything tied


def _step_on(tmp_path, scores: np.ndarray, uids: np.ndarray, f: float, parts: int = 3):
    """The filter step itself: its global step over clip parts in a run folder (out of core), then each part
    decided on its own. Returns (passed over all rows in input order, reasons, the prepared global facts)."""
    import shutil

    shutil.rmtree(tmp_path / "clip_run", ignore_errors=True)
    run = tmp_path / "clip_run"
    chunks = np.array_split(np.arange(len(scores)), parts)
    for i, idx in enumerate(chunks):
        tables.write_part(run, "clip", i, pa.table({"uid": pa.array(uids[idx], pa.string()),
                                                    "clip_score": pa.array(scores[idx], pa.float32())}))
    step = ClipTopFractionStep(fraction=f)
    prepared = step.prepare(run)
    passed, reasons = np.zeros(len(scores), dtype=bool), [None] * len(scores)
    for idx in chunks:
        ctx = SimpleNamespace(clip_scores=scores[idx], uids=uids[idx].astype(object), prepared={step.name: prepared})
        result = top_fraction_step(step, ctx)
        passed[idx] = result.passed
        for j, i in enumerate(idx):
            reasons[i] = result.reasons[j]
    return passed, reasons, prepared


def _filter_kept(tmp_path, scores: np.ndarray, uids: np.ndarray, f: float) -> set[str]:
    return set(uids[_step_on(tmp_path, scores, uids, f)[0]])


def test_filter_sweep_and_dashboard_keep_the_same_set(tmp_path):
    from audit.impact import threshold_sweep

    rng = np.random.default_rng(8)
    con = duckdb.connect()
    for case in range(120):
        n = int(rng.integers(0, 40))
        f = float(rng.choice([0.05, 0.1, 0.25, 0.3, 0.5, 0.51, 0.75, 1.0, round(float(rng.uniform(0.01, 1)), 3)]))
        scores = _tie_pattern(rng, n).astype(np.float32).astype(np.float64)
        if n and case % 5 == 0:
            scores[rng.integers(0, n)] = np.nan  # an unscored row is never kept and not counted in n
        uids = np.array([f"{rng.integers(0, 16**6):06x}{i}" for i in range(n)], dtype=str)
        expected = oracle_kept(scores, uids, f)
        frame = pd.DataFrame({"uid": uids, "clip_score": scores, "g": uids})  # one group per row: sets show
        con.register("clip", frame[["uid", "clip_score"]])
        con.register("groups", frame[["uid", "g"]])

        assert set(uids[select_top_k(scores, uids, oracle_k(int((~np.isnan(scores)).sum()), f))]) == expected
        assert _filter_kept(tmp_path, scores, uids, f) == expected, case
        passed, _ = decide_part(scores, uids, boundary_from_sql(con, f), f)  # per part with the SQL boundary
        assert set(uids[passed]) == expected, case
        assert set(uids[kept_by_boundary(scores, uids, boundary_from_scores(scores, uids, f))]) == expected
        kept_rows = con.execute(kept_sql(), {"fraction": f}).fetchall()
        assert {u for u, _, k in kept_rows if k} == expected, case
        (sweep_boundary,) = boundaries_from_sql(con, [f])
        assert sweep_boundary == boundary_from_sql(con, f) == boundary_from_scores(scores, uids, f)
        whatif = con.execute(RULE["whatif_sql"].replace("{column}", '"g"'), {"fraction": f}).df()
        assert set(whatif.loc[whatif["n_kept"] > 0, "group"]) == expected, case
        if n:
            sweep = threshold_sweep(frame, ["g"], [f], min_count=1)
            assert set(sweep.loc[sweep["n_selected"] > 0, "group"]) == expected, case


def test_threshold_is_the_lowest_kept_score_and_ties_cut_by_uid_are_said(tmp_path):
    scores = np.array([0.9, 0.5, 0.5, 0.5, 0.1])
    uids = np.array(["e", "d", "b", "c", "a"])
    boundary = boundary_from_scores(scores, uids, 0.5)  # k = 3 of 5: 0.9, then "b" and "c" of the three 0.5s
    assert (boundary.k, boundary.threshold, boundary.uid) == (3, 0.5, "c")
    assert (boundary.tied, boundary.tied_kept, boundary.ties_cut_by_uid) == (3, 2, True)
    _, reasons, prepared = _step_on(tmp_path, scores, uids, 0.5, parts=2)
    assert prepared["boundary"]["threshold"] == 0.5
    assert prepared["report"]["top_fraction_cut"]["ties_cut_by_uid"] is True
    tied_out = reasons[1]  # "d": tied at the cut, after "b" and "c"
    assert "left out by uid order" in tied_out and "2 of 3 rows at the cut kept" in tied_out
    assert reasons[4].startswith("clip_score 0.1 < top 50% cut 0.5")


def test_dashboard_copy_of_the_rule_is_current():
    assert RULE == json.loads(json.dumps(plain_rule())), "regenerate: python -m curate.selection > " \
                                                          "dashboards/top_fraction_rule.json"


def test_rule_sql_runs_over_a_view_of_every_clip_part(tmp_path):
    """The global cut the filter can take: boundary_from_sql over a DuckDB view of all parts equals in-memory."""
    rng = np.random.default_rng(3)
    uids = np.array([f"{i:032x}" for i in rng.permutation(300)])
    scores = np.round(rng.normal(0.3, 0.05, 300), 3).astype(np.float32)
    for part in range(3):
        sl = slice(part * 100, (part + 1) * 100)
        tables.write_part(tmp_path, "clip", part, pa.table({"uid": uids[sl], "clip_score": scores[sl],
                                                            "model": ["t"] * 100}))
    con = duckdb.connect()
    con.execute(f"create view clip as select * from read_parquet('{tmp_path}/signals/clip/part-*.parquet')")
    for f in (0.1, 0.3, 0.77):
        assert boundary_from_sql(con, f) == boundary_from_scores(scores.astype(np.float64), uids, f)
