"""Groups: composition with CIs and minimum-count flags, and co-occurrence."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import cache
from dashboards.queries import MissingData, RunData


def _ci_chart(d: pd.DataFrame, x: str, title: str) -> alt.Chart:
    base = alt.Chart(d).encode(y=alt.Y("group:N", sort="-x", title=None, axis=alt.Axis(labelLimit=0)))
    bars = base.mark_bar().encode(x=alt.X(f"{x}:Q", title=title),
                                  color=alt.condition("datum.flag_low_n", alt.value("#bbbbbb"), alt.value("#4c72b0")),
                                  tooltip=["group", "n", x, "ci_low", "ci_high"])
    rule = base.mark_rule().encode(x="ci_low:Q", x2="ci_high:Q")
    return bars + rule


def render_groups(data: RunData) -> None:
    key = str(data.run_dir)
    comp = cache.audit_table(key, "composition")
    attrs = list(dict.fromkeys(comp["attribute"]))
    attribute = st.selectbox("attribute", attrs, key="g_attr")
    d = comp[comp["attribute"] == attribute].copy()
    if "population" in d:
        pop = st.radio("population", list(dict.fromkeys(d["population"])), horizontal=True, key="g_pop")
        d = d[d["population"] == pop]
    if "flag_low_n" not in d:
        d["flag_low_n"] = False
    st.caption("Signals, not identities: *_terms come from caption words, country from place names or the URL's ccTLD, "
               "perceived_* from a zero-shot CLIP probe. Grey bars: fewer rows than the minimum count (flagged, not hidden).")
    st.altair_chart(_ci_chart(d, "value", "share (95% Wilson CI)"), width="stretch")
    st.dataframe(d.drop(columns=[c for c in ("analysis", "step") if c in d]), hide_index=True)
    st.subheader("Co-occurrence (nPMI)")
    try:
        cooc = cache.audit_table(key, "cooccurrence")
    except MissingData as exc:
        st.info(str(exc))
        return
    if cooc.empty:
        st.text("no co-occurrence rows")
        return
    if "word" in cooc:
        wide = cooc[cooc["metric"] == "npmi"].pivot_table(index="word", columns="group", values="value", aggfunc="first")
        if {"female", "male"} <= set(wide.columns):
            wide["female_minus_male"] = wide["female"] - wide["male"]
            wide = wide.sort_values("female_minus_male")
            st.altair_chart(alt.Chart(wide.reset_index()).mark_bar().encode(
                x=alt.X("female_minus_male:Q", title="nPMI(female) − nPMI(male)"),
                y=alt.Y("word:N", sort="x", axis=alt.Axis(labelLimit=0))),
                width="stretch")
    st.dataframe(cooc, hide_index=True)
