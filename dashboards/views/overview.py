"""Overview (manifest, funnel, download status, timings) and Compare (two runs side by side)."""

from __future__ import annotations

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
        st.bar_chart(funnel.set_index("step")["rows"], horizontal=True)
    st.subheader("Download status")
    try:
        st.dataframe(cache.query(key, "status_counts"), hide_index=True)
    except MissingData as exc:
        st.info(str(exc))
    stages = manifest.get("stages", {})
    if stages:
        st.subheader("Stages and timings")
        st.dataframe(pd.DataFrame([{"stage": k, "status": v.get("status"), "seconds": v.get("seconds"),
                                    "finished_at": v.get("finished_at")} for k, v in stages.items()]), hide_index=True)
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


def _shares(data: RunData) -> pd.DataFrame:
    comp = cache.audit_table(_key(data), "composition")
    if "population" in comp:
        comp = comp[comp["population"] == comp["population"].iloc[0]] if not comp.empty else comp
    return comp[["attribute", "group", "n", "value"]]


def render_compare(data: RunData, other: RunData | None) -> None:
    if other is None:
        st.info("Give a second run to compare: `fairsift dashboard RUN RUN2`.")
        return
    names = (f"A ({data.run_dir.name})", f"B ({other.run_dir.name})")
    st.subheader("Funnel")
    f1, f2 = cache.query(_key(data), "funnel"), cache.query(_key(other), "funnel")
    both = f1[["step", "rows"]].merge(f2[["step", "rows"]], on="step", how="outer", suffixes=(f" {names[0]}", f" {names[1]}"))
    st.dataframe(both, hide_index=True)
    st.subheader("Group shares")
    try:
        s = _shares(data).merge(_shares(other), on=["attribute", "group"], how="outer", suffixes=(f" {names[0]}", f" {names[1]}"))
        st.dataframe(s, hide_index=True)
    except MissingData as exc:
        st.info(str(exc))
    st.subheader("Filter impact (inclusion-rate ratio, sequential)")
    try:
        cols = ["step", "attribute", "group", "ratio"]
        i1 = cache.audit_table(_key(data), "filter_impact")
        i2 = cache.audit_table(_key(other), "filter_impact")
        i1, i2 = (i[i["mode"] == "sequential"][cols] if "mode" in i else i[cols] for i in (i1, i2))
        st.dataframe(i1.merge(i2, on=["step", "attribute", "group"], how="outer",
                              suffixes=(f" {names[0]}", f" {names[1]}")), hide_index=True)
    except MissingData as exc:
        st.info(str(exc))
