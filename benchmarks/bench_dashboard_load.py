"""Dashboard under load: N concurrent browser sessions (default 20) on loopback for a bounded time (default 60 s).

Each session is its own Chromium browser context (its own Streamlit session) and walks the pages in turn, as a
reader would, for the whole duration. A page time is from the click in the sidebar until the page's heading shows
and Streamlit's "running" indicator is gone. Errors counted: exceptions shown by the app (stException), error
boxes, failed HTTP requests and browser console errors. The bare baseline is the same walk over a Streamlit app
with the same sidebar and no queries, measured in the same run, so `ratio` shows what fairsift's pages add.

    python benchmarks/bench_dashboard_load.py --run runs/demo [--sessions 20] [--seconds 60]
Not run in CI (it needs minutes of CPU); the latest figures are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGES = ["Overview", "Samples", "Groups", "Filter impact", "Geography", "Model probes", "Compare"]
CHROMIUM = "/usr/bin/chromium"
BARE_APP = """
import streamlit as st
PAGES = {pages!r}
st.set_page_config(page_title="bare", layout="wide")
st.sidebar.title("fairsift")
page = st.sidebar.radio("Page", PAGES, key="page")
st.header(page)
st.text("bare page")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(app: Path, env: dict, port: int) -> subprocess.Popen:
    from dashboards.launch import streamlit_command

    command = streamlit_command(port)
    command[command.index(str(ROOT / "dashboards" / "app.py"))] = str(app)
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1).status == 200:
                return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("streamlit did not start")


async def _session(browser, url: str, index: int, clock: dict, times: list, errors: list) -> None:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.on("console", lambda m: errors.append(f"s{index} console: {m.text[:200]}") if m.type == "error" else None)
    page.on("requestfailed", lambda r: errors.append(f"s{index} request failed: {r.url[:120]}"))
    try:
        start = time.perf_counter()
        await page.goto(url, wait_until="domcontentloaded", timeout=300_000)
        await page.get_by_text("fairsift", exact=True).first.wait_for(timeout=300_000)
        clock["first_loads"].append(time.perf_counter() - start)
        clock["ready"] += 1
        await clock["go"].wait()  # the measured window starts when every session has its first page
        step = index  # sessions start on different pages, so every page is under load at once
        while time.monotonic() < clock["deadline"]:
            name = PAGES[step % len(PAGES)]
            step += 1
            start = time.perf_counter()
            await page.locator("section[data-testid='stSidebar'] label").filter(has_text=name).first.click(timeout=120_000)
            await page.get_by_role("heading", name=name).first.wait_for(timeout=120_000)
            await page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                         timeout=120_000)
            times.append((name, time.perf_counter() - start))
            shown = await page.locator("[data-testid='stException']").count()
            if shown:
                errors.append(f"s{index} exception on {name}: {(await page.locator('[data-testid=stException]').first.inner_text())[:300]}")
    except Exception as exc:  # a timeout or a crash of the page is an error of the run, not of the benchmark
        errors.append(f"s{index}: {type(exc).__name__}: {str(exc)[:300]}")
    finally:
        await context.close()


async def _load(url: str, sessions: int, seconds: float) -> tuple[list, list, list]:
    from playwright.async_api import async_playwright

    times: list = []
    errors: list = []
    clock = {"ready": 0, "go": asyncio.Event(), "deadline": 0.0, "first_loads": []}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                          args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                "--disable-component-update", "--no-first-run", "--disable-sync"])
        tasks = [asyncio.create_task(_session(browser, url, i, clock, times, errors)) for i in range(sessions)]
        waited = 0.0
        while clock["ready"] < sessions and waited < 600 and not all(t.done() for t in tasks):
            await asyncio.sleep(0.2)
            waited += 0.2
        clock["deadline"] = time.monotonic() + seconds
        clock["go"].set()
        await asyncio.gather(*tasks)
        await browser.close()
    return times, errors, clock["first_loads"]


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) >= 2 else (values or [float("nan")])[0]


def _measure(label: str, app: Path, env: dict, sessions: int, seconds: float) -> tuple[list, list]:
    port = _free_port()
    proc = _serve(app, env, port)
    try:
        times, errors, first = asyncio.run(_load(f"http://127.0.0.1:{port}", sessions, seconds))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
    values = [s for _, s in times]
    print(f"{label}: first page of {len(first)} sessions: median {statistics.median(first) if first else float('nan'):.2f} s, "
          f"max {max(first) if first else float('nan'):.2f} s")
    print(f"{label}: {len(values)} page loads by {sessions} sessions in {seconds:.0f} s; errors {len(errors)}; "
          f"median {statistics.median(values) if values else float('nan'):.2f} s, p95 {_p95(values):.2f} s, "
          f"max {max(values) if values else float('nan'):.2f} s")
    return times, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="the run folder to serve (e.g. runs/demo)")
    ap.add_argument("--sessions", type=int, default=20, help="concurrent browser sessions")
    ap.add_argument("--seconds", type=float, default=60, help="how long the sessions keep loading pages")
    ap.add_argument("--no-baseline", action="store_true", help="skip the bare-Streamlit baseline")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"Chromium not found at {CHROMIUM}")

    from dashboards.launch import APP, dashboard_env

    env = dashboard_env([args.run, args.run])  # a second run turns on the Compare page
    bare_times: list = []
    if not args.no_baseline:
        bare = Path(tempfile.mkdtemp()) / "bare_app.py"
        bare.write_text(BARE_APP.format(pages=PAGES))
        bare_times, _ = _measure("bare streamlit", bare, dict(os.environ), args.sessions, args.seconds)
    times, errors = _measure("fairsift dashboard", APP, env, args.sessions, args.seconds)
    print(f"{'page':<14} {'loads':>6} {'median s':>9} {'p95 s':>7}")
    for page in PAGES:
        values = [s for name, s in times if name == page]
        if values:
            print(f"{page:<14} {len(values):>6} {statistics.median(values):>9.2f} {_p95(values):>7.2f}")
    if bare_times:
        ratio = _p95([s for _, s in times]) / _p95([s for _, s in bare_times])
        print(f"p95 ratio to bare Streamlit: {ratio:.1f}")
    for line in errors[:20]:
        print("ERROR", line)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
