"""Filter impact: inclusion rates and ratios per step and group (marginal, sequential), sweep curves, what-if slider."""

from __future__ import annotations

import altair as alt
import streamlit as st

from dashboards import cache
from dashboards.queries import MissingData, RunData


def render(data: RunData) -> None:
    key = str(data.run_dir)
    impact = cache.audit_table(key, "filter_impact")
    c1, c2, c3 = st.columns(3)
    attribute = c1.selectbox("attribute", list(dict.fromkeys(impact["attribute"])), key="i_attr")
    modes = list(dict.fromkeys(impact["mode"])) if "mode" in impact else ["sequential"]
    mode = c2.radio("mode", modes, horizontal=True, key="i_mode",
                    help="marginal: the step alone on all rows; sequential: given the steps before it")
    steps = list(dict.fromkeys(impact["step"]))
    step = c3.selectbox("step", ["(all)"] + steps, key="i_step")
    d = impact[(impact["attribute"] == attribute) & ((impact["mode"] == mode) if "mode" in impact else True)]
    if step != "(all)":
        d = d[d["step"] == step]
    d = d.assign(label=d["step"].astype(str) + " · " + d["group"].astype(str))
    if "ratio" in d and not d.empty:
        base = alt.Chart(d).encode(y=alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=0)))
        points = base.mark_point(filled=True).encode(
            x=alt.X("ratio:Q", title="inclusion-rate ratio to overall (95% CI)"),
            color=alt.condition("datum.flag_four_fifths", alt.value("#c44e52"), alt.value("#4c72b0")),
            tooltip=["step", "group", "n", "value", "overall_rate", "ratio", "ratio_ci_low", "ratio_ci_high"])
        bars = base.mark_rule().encode(x="ratio_ci_low:Q", x2="ratio_ci_high:Q")
        four_fifths = alt.Chart().mark_rule(strokeDash=[4, 4], color="#c44e52").encode(x=alt.datum(0.8))
        st.altair_chart(alt.layer(bars, points, four_fifths, data=d), width="stretch")
    show = [c for c in ("step", "group", "n", "value", "ci_low", "ci_high", "overall_rate", "ratio", "ratio_ci_low",
                        "ratio_ci_high", "p_adjusted", "flag_four_fifths", "flag_low_n") if c in d]
    st.dataframe(d[show].rename(columns={"value": "inclusion_rate"}), hide_index=True, width="stretch")

    st.subheader("Threshold sweep")
    try:
        sweep = cache.audit_table(key, "threshold_sweep")
        s = sweep[sweep["attribute"] == attribute]
        if not s.empty:
            st.altair_chart(alt.Chart(s).mark_line(point=True).encode(
                x=alt.X("fraction:Q", title="CLIP-score top fraction"), y=alt.Y("value:Q", title="inclusion rate"),
                color="group:N"), width="stretch")
    except MissingData as exc:
        st.info(str(exc))

    st.subheader("What if: keep the CLIP top fraction")
    fraction = st.slider("CLIP-score top fraction", 0.05, 1.0, 0.30, 0.05, key="i_whatif")
    try:
        table = cache.query(key, "whatif", float(fraction), attribute)
    except MissingData as exc:
        st.info(str(exc))
        return
    st.dataframe(table, hide_index=True)  # last element of the page: the tests read it there
