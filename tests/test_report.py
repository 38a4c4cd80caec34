"""The static report: every figure written, headline sentences carry the audit's own numbers, opens offline."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from audit.run import AuditOptions, run_audit
from reports.build import build_report
from tests.synthetic_audit_run import make_frames, write_run


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory) -> Path:
    run = write_run(tmp_path_factory.mktemp("report") / "run", make_frames(n=3000, seed=7))
    (run / "manifest.json").write_text(json.dumps({"model": {"id": "tiny-test — TEST MODEL", "is_test_model": True}}))
    run_audit(run, AuditOptions(n_boot=200, seed=0, min_count=30))
    build_report(run)
    return run


def test_report_writes_figures_and_summary(audited_run):
    report = audited_run / "report"
    html = (report / "index.html").read_text()
    summary = json.loads((report / "summary.json").read_text())
    for required in ("funnel", "composition_gender_terms", "world_map", "cooccurrence", "sweep_gender_terms",
                     "impact_gender_terms_sequential", "impact_gender_terms_marginal"):
        assert (report / "figures" / f"{required}.png").stat().st_size > 1000, required
        assert f"figures/{required}.png" in html
    for src in re.findall(r"src='([^']+)'", html):
        assert (report / src).is_file(), src
    assert not re.search(r"(src|href)=['\"]https?://", html), "the report must not load anything remote"
    assert "TEST MODEL" in html and summary["test_model"] is True


def test_headline_sentences_match_the_audit_table(audited_run):
    summary = json.loads((audited_run / "report" / "summary.json").read_text())
    impact = pd.read_parquet(audited_run / "audit" / "filter_impact.parquet")
    findings = [f for f in summary["findings"] if f["kind"] == "filter_impact"]
    assert findings
    for f in findings:
        row = impact[(impact["step"] == f["step"]) & (impact["attribute"] == f["attribute"])
                     & (impact["group"] == f["group"]) & (impact["mode"] == f["mode"])].iloc[0]
        assert f["ratio"] == pytest.approx(row["value"] / row["overall_rate"], rel=1e-9)
        assert f"ratio {row['ratio']:.2f}" in f["sentence"]
        assert f"{100 * row['value']:.0f}%" in f["sentence"] and f"n={int(row['n']):,}" in f["sentence"]
    # each finding is the lowest ratio of its step and attribute among groups with enough rows and a real signal;
    # flagged findings come first, then ascending ratio
    seq = impact[(impact["mode"] == "sequential") & ~impact["group"].isin(["(missing)", "none"])].dropna(subset=["ratio"])
    for f in findings:
        g = seq[(seq["step"] == f["step"]) & (seq["attribute"] == f["attribute"])]
        same_n = g[g["flag_low_n"] == f["flag_low_n"]]
        assert f["ratio"] == pytest.approx(same_n["ratio"].min()) or f["flag_four_fifths"]
        if f["flag_low_n"] and not g[~g["flag_low_n"]].empty:
            assert f["ratio"] < g[~g["flag_low_n"]]["ratio"].min()
    keys = [(not f["flag_four_fifths"], f["flag_low_n"], f["ratio"]) for f in findings]
    assert keys == sorted(keys)
