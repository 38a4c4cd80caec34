"""Overview: manifest, funnel, download status, timings."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from dashboards import cache
from dashboards.queries import MissingData, RunData


def _key(data: RunData) -> str:
    return str(data.run_dir)


def test_model_banner(data: RunData) -> None:
    manifest = cache.query(_key(data), "manifest")
    model = manifest.get("model") or {}
    if model.get("is_test_model"):
        st.error("TEST MODEL: the CLIP scores of this run come from the tiny test model (random weights), not real "
                 "CLIP weights. Score-based findings show the pipeline's mechanics only.")
        if manifest.get("model_fallback"):
            st.text(manifest["model_fallback"])


def funnel_chart(funnel: pd.DataFrame) -> alt.Chart:
    """Rows left after each step, bars in step order (pairs first, corpus last) with whole step names."""
    order = list(funnel["step"])
    return alt.Chart(funnel).mark_bar().encode(
        y=alt.Y("step:N", sort=order, title=None, axis=alt.Axis(labelLimit=0)),
        x=alt.X("rows:Q", title="rows left after the step"),
        tooltip=["step", "rows", alt.Tooltip("share_of_start:Q", format=".1%", title="share of start")],
    )


def render(data: RunData) -> None:
    key = _key(data)
    manifest = cache.query(key, "manifest")
    model = manifest.get("model") or {}
    c1, c2, c3 = st.columns(3)
    c1.metric("model", str(model.get("id", "n/a"))[:40])
    funnel = cache.query(key, "funnel")
    if not funnel.empty:
        c2.metric("pairs", f"{int(funnel['rows'].iloc[0]):,}")
        c3.metric("kept", f"{int(funnel['rows'].iloc[-1]):,}")
    render_findings(data)
    st.subheader("Funnel")
    if funnel.empty:
        st.info("no pairs yet — create them with `fairsift crawl` or `fairsift ingest`")
    else:
        st.dataframe(funnel, hide_index=True, width="stretch")
        st.altair_chart(funnel_chart(funnel), width="stretch")
    st.subheader("Download status")
    try:
        st.dataframe(cache.query(key, "status_counts"), hide_index=True)
    except MissingData as exc:
        st.info(str(exc))
    stages = manifest.get("stages", {})
    if stages:
        st.subheader("Stages and timings")
        st.dataframe(pd.DataFrame([{"stage": k, "status": v.get("status"), "seconds": v.get("seconds"),
                                    "finished_at": v.get("finished_at"), "warnings": "; ".join(v.get("warnings", []))}
                                   for k, v in stages.items()]), hide_index=True)
    with st.expander("Model, config and versions"):
        st.json({"model": model, "config": manifest.get("config"), "versions": manifest.get("versions")})


FINDING_TITLES = {"significant_four_fifths": "Significantly below four fifths of the highest-rate group",
                  "disparity": "Other disparities whose 95% interval excludes parity",
                  "not_judged": "Not judged (under the minimum count, or no rows)",
                  "no_disparity": "No disparity detectable"}


def render_findings(data: RunData) -> None:
    """The audit's findings, ranked by evidence (audit/findings.parquet): the same list as the report's."""
    st.subheader("Findings, ranked by evidence")
    try:
        findings = cache.audit_table(_key(data), "findings")
    except MissingData as exc:
        st.info(str(exc))
        return
    if findings.empty:
        st.info("the audit wrote no findings")
        return
    findings = findings.sort_values("rank")
    if "min_count" in findings and findings["min_count"].notna().any():
        st.caption(f"Reference: the highest-rate group with at least {int(findings['min_count'].dropna().iloc[0])} "
                   "rows; smaller groups are shown but not judged.")
    for tier, rows in findings.groupby("tier", sort=False):
        st.markdown(f"**{FINDING_TITLES.get(tier, tier)}**")
        st.markdown("\n".join(f"{int(r['rank'])}. {r['sentence']}" for _, r in rows.head(10).iterrows()))
