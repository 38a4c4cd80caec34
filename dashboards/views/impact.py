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
    ratio = "ratio_to_max" if "ratio_to_max" in d else "ratio"
    if ratio in d and not d.empty:
        min_count = int(d["min_count"].iloc[0]) if "min_count" in d else None
        st.caption("Each group's inclusion rate divided by the highest-rate group's (the four-fifths rule's reference: "
                   f"groups with at least {min_count} rows), with 95% intervals. Red: significantly below four fifths "
                   "after correction; hollow: fewer than min_count rows, shown but not judged.")
        shown = d.assign(**{f"{ratio}_ci_high": d[f"{ratio}_ci_high"].clip(upper=3.0)})
        base = alt.Chart(shown).encode(y=alt.Y("label:N", sort=None, title=None, axis=alt.Axis(labelLimit=0)))
        points = base.mark_point(size=40).encode(
            x=alt.X(f"{ratio}:Q", title="inclusion rate / highest-rate group's (95% CI)"),
            color=alt.condition("datum.significant_below_four_fifths", alt.value("#c44e52"), alt.value("#4c72b0")),
            fill=alt.condition("datum.flag_low_n", alt.value("white"), alt.value("#4c72b0")),
            tooltip=["step", "group", "n", "value", "reference_group", "reference_rate", ratio, f"{ratio}_ci_low",
                     f"{ratio}_ci_high", "ratio", "p_adjusted"])
        bars = base.mark_rule().encode(x=f"{ratio}_ci_low:Q", x2=f"{ratio}_ci_high:Q")
        four_fifths = alt.Chart().mark_rule(strokeDash=[4, 4], color="#c44e52").encode(x=alt.datum(0.8))
        st.altair_chart(alt.layer(bars, points, four_fifths, data=shown), width="stretch")
    show = [c for c in ("step", "group", "n", "value", "ci_low", "ci_high", "reference_group", "ratio_to_max",
                        "ratio_to_max_ci_low", "ratio_to_max_ci_high", "ratio", "ratio_ci_low", "ratio_ci_high",
                        "below_four_fifths", "p_adjusted", "significant_below_four_fifths", "flag_low_n") if c in d]
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
    st.caption("The filter's own rule: k = round(f·n) of the scored rows (at least one), by score, ties by uid — the "
               "same rows the clip_top_fraction step and the threshold sweep keep.")
    fraction = st.slider("CLIP-score top fraction", 0.05, 1.0, 0.30, 0.05, key="i_whatif")
    try:
        table = cache.query(key, "whatif", float(fraction), attribute)
    except MissingData as exc:
        st.info(str(exc))
        return
    st.dataframe(table, hide_index=True)  # last element of the page: the tests read it there
