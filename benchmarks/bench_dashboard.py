"""Dashboard on a synthetic 1,000,000-row run: seconds to render each page (AppTest, cold cache) and peak memory.

Goal: <= 1.5 s per page and <= 1.5 GB. The bare baseline is the same AppTest rendering an empty page (the
Streamlit script run itself), so `ratio` = page seconds / bare seconds shows what fairsift's queries add.
    python benchmarks/bench_dashboard.py --n 1000000 [--run /tmp/syn1m]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGES = ["Overview", "Samples", "Groups", "Filter impact", "Geography", "Model probes", "Compare"]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--run", type=Path, default=None, help="reuse or create the synthetic run here")
    args = ap.parse_args()
    from benchmarks.synthetic_run import make_run

    run = args.run or Path(tempfile.mkdtemp()) / f"syn{args.n}"
    if not (run / "decisions.parquet").exists():
        t = time.perf_counter()
        make_run(run, args.n)
        print(f"synthetic run of {args.n:,} rows written in {time.perf_counter() - t:.1f}s: {run}")
    os.environ["FAIRSIFT_RUN"] = str(run)
    os.environ["FAIRSIFT_RUN2"] = str(run)
    from streamlit.testing.v1 import AppTest

    bare = Path(tempfile.mkdtemp()) / "bare.py"
    bare.write_text("import streamlit as st\nst.header('bare')\nst.radio('Page', ['a', 'b'], key='page')\n")
    at0 = AppTest.from_file(str(bare), default_timeout=120)
    t = time.perf_counter()
    at0.run()
    bare_s = time.perf_counter() - t
    base_rss = _rss_mb()
    at = AppTest.from_file(str(ROOT / "dashboards" / "app.py"), default_timeout=300)
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    print(f"{'page':<14} {'cold s':>8} {'warm s':>8} {'ratio vs bare':>14}")
    print(f"{'(first load)':<14} {first:>8.2f} {'':>8} {first / bare_s:>14.1f}   Overview, with DuckDB views opened")
    for page in PAGES:
        t = time.perf_counter()
        at.sidebar.radio(key="page").set_value(page).run()
        cold = time.perf_counter() - t
        assert not at.exception, [e.value for e in at.exception]
        at.sidebar.radio(key="page").set_value("Model probes" if page != "Model probes" else "Compare").run()
        t = time.perf_counter()
        at.sidebar.radio(key="page").set_value(page).run()
        warm = time.perf_counter() - t
        print(f"{page:<14} {cold:>8.2f} {warm:>8.2f} {cold / bare_s:>14.1f}")
    at.sidebar.radio(key="page").set_value("Filter impact").run()
    t = time.perf_counter()
    at.slider(key="i_whatif").set_value(0.55).run()
    print(f"{'what-if slider':<14} {time.perf_counter() - t:>8.2f}")
    print(f"bare page {bare_s:.3f}s; peak RSS {_rss_mb():.0f} MB (after Streamlit import: {base_rss:.0f} MB)")


if __name__ == "__main__":
    main()
