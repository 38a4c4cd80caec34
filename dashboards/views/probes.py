"""Model probes: per-group accuracy and harmful-label rates with CIs, when probe outputs exist."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboards import cache
from dashboards.queries import PROBE_CREATED_BY, RunData


def render(data: RunData) -> None:
    tables = cache.query(str(data.run_dir), "probe_tables")
    if not tables:
        st.info(f"no probe results in {data.run_dir}/probes or /audit — create them with `{PROBE_CREATED_BY}`")
        return
    name = st.selectbox("probe", list(tables), key="p_table")
    d = tables[name]
    metrics = list(dict.fromkeys(d["metric"]))
    metric = st.selectbox("metric", metrics, key="p_metric")
    m = d[d["metric"] == metric].copy()
    m["label"] = m["attribute"].astype(str) + ": " + m["group"].astype(str)
    if "variant" in m:
        m["label"] += m["variant"].map(lambda v: "" if v is None or v != v else f" [{v}]")
    st.caption("Perceived attributes: FairFace labels are annotators' perceptions, not self-identification.")
    if {"ci_low", "ci_high"} <= set(m.columns):
        base = alt.Chart(m).encode(y=alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=0)))
        st.altair_chart(base.mark_bar().encode(x=alt.X("value:Q", title=metric), tooltip=["label", "n", "value"])
                        + base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q"), width="stretch")
    st.dataframe(m.drop(columns=["label"]), hide_index=True, width="stretch")
