"""The dashboard on the demo run: Streamlit's AppTest for every page, then every page in real headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards.launch import dashboard_env, streamlit_command
from dashboards.queries import RunData
from pipelines.demo_site import INJECTION_CAPTION

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboards" / "app.py")
PAGES = ["Overview", "Samples", "Groups", "Filter impact", "Geography", "Model probes", "Compare"]
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"


def _app(run_dir: Path, run2: Path | None = None) -> AppTest:
    os.environ["FAIRSIFT_RUN"] = str(run_dir)
    if run2:
        os.environ["FAIRSIFT_RUN2"] = str(run2)
    else:
        os.environ.pop("FAIRSIFT_RUN2", None)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    return at


def _goto(at: AppTest, page: str) -> AppTest:
    at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _texts(at: AppTest) -> str:
    parts = [t.value for t in at.text] + [m.value for m in at.markdown] + [h.value for h in at.header]
    parts += [str(m.value) for m in at.metric] + [e.value for e in at.info] + [e.value for e in at.error]
    return "\n".join(parts)


@pytest.fixture(scope="module")
def run_dir(demo_run):
    return demo_run[0]


def test_every_page_renders_without_exception(run_dir):
    at = _app(run_dir)
    assert not at.exception
    for page in PAGES:
        _goto(at, page)
        assert at.header[0].value == page


def test_overview_shows_test_model_banner_and_funnel(run_dir):
    at = _goto(_app(run_dir), "Overview")
    assert any("TEST MODEL" in e.value for e in at.error)
    funnel = at.dataframe[0].value
    assert list(funnel["step"])[0] == "pairs"
    data = RunData(run_dir)
    assert int(funnel["rows"].iloc[0]) == int(data.df("select count(*) n from pairs")["n"][0])


def test_samples_filters_and_injection_is_text(run_dir):
    at = _goto(_app(run_dir), "Samples")
    at.text_input(key="s_text").set_value("onerror").run()
    assert not at.exception
    assert INJECTION_CAPTION in _texts(at)
    # the free-text filter narrowed the page to the planted caption's rows
    assert "1 samples match" in at.number_input(key="s_page").label


def test_whatif_slider_changes_inclusion(run_dir):
    at = _goto(_app(run_dir), "Filter impact")
    before = at.dataframe[-1].value.copy()
    at.slider(key="i_whatif").set_value(0.9).run()
    after = at.dataframe[-1].value
    assert not before["inclusion_rate"].equals(after["inclusion_rate"])
    # recomputed independently over the same tables, with the one top-fraction rule done by hand: k = round(0.9 n)
    # half up, best scores first, ties by uid
    data = RunData(run_dir)
    attribute = at.selectbox(key="i_attr").value
    scored = data.df("select uid, clip_score from clip where clip_score is not null and not isnan(clip_score)")
    ranked = scored.sort_values(["clip_score", "uid"], ascending=[False, True])
    k = min(len(ranked), max(1, int(len(ranked) * 9 / 10 + 0.5)))
    groups = data.df(f'select uid, cast("{attribute}" as varchar) grp from groups')
    labelled = ranked.assign(kept=[True] * k + [False] * (len(ranked) - k)).merge(groups, on="uid", how="left")
    expected = labelled.assign(grp=labelled["grp"].fillna("(missing)")).groupby("grp")["kept"].mean()
    got = dict(zip(after["group"], after["inclusion_rate"]))
    for grp, rate in expected.items():
        assert abs(got[grp] - rate) < 1e-9


def test_probe_page_shows_the_probe_table(run_dir):
    import pandas as pd

    at = _goto(_app(run_dir), "Model probes")
    name = at.selectbox(key="p_table").value
    metric = at.selectbox(key="p_metric").value
    shown = at.dataframe[-1].value
    stored = pd.read_parquet(run_dir / "probes" / f"{name}.parquet")
    stored = stored[stored["metric"] == metric]
    assert len(shown) == len(stored)
    assert sorted(shown["value"].round(9)) == sorted(stored["value"].round(9))


def test_missing_tables_show_which_command_creates_them(tmp_path):
    run = tmp_path / "empty_run"
    run.mkdir()
    at = _app(run)
    for page in PAGES[:-1]:
        _goto(at, page)
    notes = _texts(at)
    assert "fairsift" in notes


def test_compare_two_runs(run_dir):
    at = _goto(_app(run_dir, run_dir), "Compare")
    assert len(at.dataframe) >= 2
    shares = at.dataframe[1].value
    assert "share difference (B − A)" in shares and (shares["share difference (B − A)"].abs() < 1e-12).all()
    assert shares["n A"].notna().all() and shares["n B"].notna().all()


def test_compare_shows_zero_for_a_group_one_run_lacks_and_the_difference():
    import pandas as pd

    from dashboards.views.compare import compare_funnels, compare_shares

    a = pd.DataFrame({"attribute": ["gender_terms"] * 3, "group": ["female", "male", "none"], "n": [3, 5, 2],
                      "value": [0.3, 0.5, 0.2]})
    b = pd.DataFrame({"attribute": ["gender_terms"] * 2, "group": ["male", "none"], "n": [4, 4],
                      "value": [0.5, 0.5]})
    got = compare_shares(a, b).set_index("group")
    assert got.loc["female", "n B"] == 0 and got.loc["female", "share B"] == 0.0  # removed entirely: a zero, not None
    assert abs(got.loc["female", "share difference (B − A)"] - (-0.3)) < 1e-12
    assert abs(got.loc["none", "share difference (B − A)"] - 0.3) < 1e-12
    funnel = compare_funnels(pd.DataFrame({"step": ["pairs", "dedup", "corpus"], "rows": [10, 8, 5]}),
                             pd.DataFrame({"step": ["pairs", "basic", "corpus"], "rows": [10, 6, 6]}))
    assert list(funnel["step"]) == ["pairs", "dedup", "corpus", "basic"]  # A's step order, then B's own
    assert list(funnel["difference (B − A)"].astype("float").fillna(-1)) == [0, -1, 1, -1]
    assert list(funnel["note"]) == ["", "only in A", "", "only in B"]


def _chart_specs(at: AppTest) -> list[dict]:
    import json

    return [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]


def test_funnel_chart_keeps_step_order_and_whole_labels(run_dir):
    at = _goto(_app(run_dir), "Overview")
    funnel = at.dataframe[0].value
    spec = next(s for s in _chart_specs(at) if s.get("encoding", {}).get("y", {}).get("field") == "step")
    assert spec["encoding"]["y"]["sort"] == list(funnel["step"])
    assert list(funnel["step"])[0] == "pairs" and list(funnel["step"])[-1] == "corpus"
    assert spec["encoding"]["y"]["axis"]["labelLimit"] == 0  # long step names are not cut


def test_geography_shares_use_the_composition_denominator(run_dir):
    import pandas as pd

    at = _goto(_app(run_dir), "Geography")
    comp = pd.read_parquet(run_dir / "audit" / "composition.parquet")
    for population in ("downloaded", "kept"):
        at.radio(key="geo_pop").set_value(population).run()
        shown = at.dataframe[0].value.set_index("country")
        expected = comp[(comp["attribute"] == "country") & (comp["population"] == population)
                        & (comp["group"] != "(missing)")].set_index("group")
        assert set(shown.index) == set(expected.index)
        for country, row in expected.iterrows():
            assert int(shown.loc[country, "n"]) == int(row["n"])
            assert abs(shown.loc[country, "share"] - row["value"]) < 1e-12
        total = int(expected["total"].iloc[0])
        assert any(f"{total:,} {population} rows" in c.value and "same denominator" in c.value for c in at.caption)


# ---- real browser ----

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def dashboard_server(run_dir):
    port = _free_port()
    proc = subprocess.Popen(streamlit_command(port), env=dashboard_env([run_dir]), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("dashboard did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_every_page_in_headless_chromium(dashboard_server, run_dir):
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("Debian's chromium is missing: `apt-get install -y chromium` (scripts/test installs it)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                          "--disable-component-update", "--no-first-run", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        external: list[str] = []
        page.on("request", lambda r: external.append(r.url) if not r.url.startswith(
            (dashboard_server, "data:", "blob:", "about:")) else None)
        page.goto(dashboard_server, wait_until="domcontentloaded")
        page.get_by_text("fairsift", exact=True).first.wait_for(timeout=60_000)
        page.get_by_role("heading", name="Funnel").first.wait_for(timeout=60_000)
        page.locator("[data-testid='stVegaLiteChart'] svg").first.wait_for(timeout=60_000)
        axes = page.evaluate("""() => Array.from(document.querySelectorAll(
            "[data-testid='stVegaLiteChart'] .role-axis-label")).map(g => Array.from(g.querySelectorAll('text'))
            .map(t => t.textContent))""")
        funnel_labels = next(a for a in axes if "pairs" in a)
        data = RunData(run_dir)
        assert funnel_labels == list(data.funnel()["step"])  # step order, as drawn, and whole (no "…")
        for name in PAGES:
            page.locator("section[data-testid='stSidebar'] label").filter(has_text=name).first.click()
            page.get_by_role("heading", name=name).first.wait_for(timeout=60_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / f"{name.lower().replace(' ', '_')}.png"), full_page=True)
        page.locator("section[data-testid='stSidebar'] label").filter(has_text="Samples").first.click()
        page.get_by_role("heading", name="Samples").first.wait_for(timeout=60_000)
        box = page.get_by_label("caption or URL contains")
        box.fill("onerror")
        box.press("Enter")
        page.get_by_text(INJECTION_CAPTION).first.wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "samples_injection.png"), full_page=True)
        page.wait_for_timeout(500)
        assert page.locator("[data-testid='stAppDeployButton']").count() == 0
        assert page.get_by_role("button", name="Deploy").count() == 0
        browser.close()
    assert dialogs == [], dialogs
    assert external == [], external[:5]
