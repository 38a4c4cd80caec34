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
    # per step, the finding is the lowest ratio among groups with enough rows and a real signal
    seq = impact[(impact["mode"] == "sequential") & ~impact["flag_low_n"]
                 & ~impact["group"].isin(["(missing)", "none"])].dropna(subset=["ratio"])
    for step, g in seq.groupby("step"):
        first = next(f for f in findings if f["step"] == step)
        assert first["ratio"] == pytest.approx(g["ratio"].min())


def test_report_opens_offline_in_chromium(audited_run):
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is missing: `apt-get install -y chromium` (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto((audited_run / "report" / "index.html").as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("() => [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length")
        n_images = page.evaluate("() => document.images.length")
        browser.close()
    assert n_images >= 7 and broken == 0
    assert all(u.startswith("file://") for u in requests), [u for u in requests if not u.startswith("file://")]
