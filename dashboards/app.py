"""fairsift dashboard (Streamlit). Run folders come from FAIRSIFT_RUN and FAIRSIFT_RUN2 (set by `fairsift dashboard`).

Captions, URLs and file names are untrusted: they are shown with st.text / st.dataframe only, never as markdown or
HTML. Images come from the Parquet bytes, never from their URLs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboards import cache  # noqa: E402
from dashboards.queries import MissingData  # noqa: E402
from dashboards.views import compare, geography, groups, impact, overview, probes, samples  # noqa: E402

PAGES = {
    "Overview": overview.render,
    "Samples": samples.render,
    "Groups": groups.render_groups,
    "Filter impact": impact.render,
    "Geography": geography.render,
    "Model probes": probes.render,
    "Compare": compare.render,
}


def main() -> None:
    st.set_page_config(page_title="fairsift", layout="wide")
    run = os.environ.get("FAIRSIFT_RUN")
    run2 = os.environ.get("FAIRSIFT_RUN2") or None
    if not run:
        st.error("No run folder given: start the dashboard with `fairsift dashboard RUN [RUN2]`.")
        return
    st.sidebar.title("fairsift")
    st.sidebar.text(Path(run).name + (f"  vs  {Path(run2).name}" if run2 else ""))
    page = st.sidebar.radio("Page", list(PAGES), key="page")
    try:
        data = cache.run_data(run)
    except MissingData as exc:
        st.error(str(exc))
        return
    overview.test_model_banner(data)
    st.header(page)
    try:
        if page == "Compare":
            PAGES[page](data, cache.run_data(run2) if run2 else None)
        else:
            PAGES[page](data)
    except MissingData as exc:
        st.info(str(exc))


main()
