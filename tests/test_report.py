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


def test_findings_are_ranked_by_evidence_and_carry_the_audit_numbers(audited_run):
    summary = json.loads((audited_run / "report" / "summary.json").read_text())
    impact = pd.read_parquet(audited_run / "audit" / "filter_impact.parquet")
    findings = [f for f in summary["findings"] if f["kind"] == "filter_impact"]
    tiers = [f["tier"] for f in findings]
    order = ["significant_four_fifths", "disparity", "not_judged", "no_disparity"]
    assert tiers == sorted(tiers, key=order.index) and tiers[0] == "significant_four_fifths"
    for f in findings:
        if f["tier"] not in order[:2]:
            continue
        row = impact[(impact["step"] == f["step"]) & (impact["attribute"] == f["attribute"])
                     & (impact["group"] == f["group"]) & (impact["mode"] == f["mode"])].iloc[0]
        assert f["value"] == pytest.approx(row["value"] / row["reference_rate"], rel=1e-9)
        assert not (f["ci_low"] <= 1 <= f["ci_high"])  # no headline with an interval that contains parity
        assert f"{100 * row['value']:.0f}%" in f["sentence"] and f"n={int(row['n']):,}" in f["sentence"]
        assert f"ratio {row['ratio_to_max']:.2f}" in f["sentence"] and f["reference_group"] == row["reference_group"]
    html = (audited_run / "report" / "index.html").read_text()
    assert "Findings, ranked by evidence" in html and "at least 30 rows" in html


def test_report_uses_the_runs_min_count_and_says_when_nothing_is_detectable(tmp_path):
    """A small run audited with min_count 10: the report says 10 (it said 30), and with no real disparity the
    findings say so instead of headlining noise."""
    frames = make_frames(n=400, seed=3)
    decisions = frames["decisions"]
    for column in [c for c in decisions if c.startswith("pass_")] + ["kept"]:
        decisions[column] = True  # no step drops anything: nothing to detect
    decisions["dropped_by"] = None
    run = write_run(tmp_path / "run", frames)
    run_audit(run, AuditOptions(n_boot=50, seed=0, min_count=10))
    build_report(run)
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert summary["min_count"] == 10
    assert [f["tier"] for f in summary["findings"] if f.get("tier") in ("significant_four_fifths", "disparity")] == []
    assert any(f["sentence"].startswith("no disparity detectable at n = ") for f in summary["findings"])
    html = (run / "report" / "index.html").read_text()
    assert "fewer than 10 rows" in html and "fewer than 30 rows" not in html


def test_report_shows_every_download_status(demo_run):
    """Every download status with its count, refusals and failures included (the oracle: shards' status column)."""
    from curate import tables

    run_dir, _ = demo_run
    summary = json.loads((run_dir / "report" / "summary.json").read_text())
    statuses = tables.read_table(run_dir, "shards", ["status"]).column("status").to_pylist()
    assert {s["status"]: s["rows"] for s in summary["download_status"]} == {s: statuses.count(s) for s in set(statuses)}
    assert len(summary["download_status"]) >= 2  # the demo plants failed downloads beside the successes
    assert "Download status" in (run_dir / "report" / "index.html").read_text()

