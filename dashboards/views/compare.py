"""Compare two runs side by side: funnel, group shares and filter impact, with a difference column (B − A).

A group that one run does not have is a zero there (n = 0, share 0), not a blank: a filter that removed a group
entirely is exactly what a comparison must show. A funnel step that one run does not have stays blank (the run had
no such step), and says so.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards import cache
from dashboards.queries import MissingData, RunData


def _key(data: RunData) -> str:
    return str(data.run_dir)


def compare_funnels(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """step, rows A, rows B, difference; steps in A's order, then B's own."""
    steps = list(dict.fromkeys(list(a["step"]) + list(b["step"])))
    ra, rb = dict(zip(a["step"], a["rows"])), dict(zip(b["step"], b["rows"]))
    out = pd.DataFrame({"step": steps,
                        "rows A": [ra.get(s) for s in steps],
                        "rows B": [rb.get(s) for s in steps]})
    out["rows A"] = out["rows A"].astype("Int64")
    out["rows B"] = out["rows B"].astype("Int64")
    out["difference (B − A)"] = out["rows B"] - out["rows A"]
    out["note"] = ["" if s in ra and s in rb else ("only in A" if s in ra else "only in B") for s in steps]
    return out


def compare_shares(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """attribute, group, n and share of A and B (0 where a run has no row of the group), share difference B − A."""
    keys = ["attribute", "group"]
    both = a[keys + ["n", "value"]].merge(b[keys + ["n", "value"]], on=keys, how="outer", suffixes=(" A", " B"))
    for side in ("A", "B"):
        both[f"n {side}"] = both[f"n {side}"].fillna(0).astype("int64")
        both[f"share {side}"] = both.pop(f"value {side}").fillna(0.0)
    both["share difference (B − A)"] = both["share B"] - both["share A"]
    order = ["attribute", "group", "n A", "share A", "n B", "share B", "share difference (B − A)"]
    return both[order].sort_values(keys, kind="stable").reset_index(drop=True)


def compare_impact(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    keys = ["step", "attribute", "group"]
    cols = keys + [c for c in ("n", "ratio") if c in a and c in b]
    both = a[cols].merge(b[cols], on=keys, how="outer", suffixes=(" A", " B"))
    if "n A" in both:
        both["n A"] = both["n A"].fillna(0).astype("int64")
        both["n B"] = both["n B"].fillna(0).astype("int64")
    if "ratio A" in both:
        both["ratio difference (B − A)"] = both["ratio B"] - both["ratio A"]
    return both


def _composition(data: RunData, population: str) -> pd.DataFrame:
    comp = cache.audit_table(_key(data), "composition")
    if "population" in comp:
        comp = comp[comp["population"] == population]
    return comp


def render(data: RunData, other: RunData | None) -> None:
    if other is None:
        st.info("Give a second run to compare: `fairsift dashboard RUN RUN2`.")
        return
    st.text(f"A = {data.run_dir}\nB = {other.run_dir}")
    st.subheader("Funnel")
    funnel = compare_funnels(cache.query(_key(data), "funnel"), cache.query(_key(other), "funnel"))
    st.dataframe(funnel, hide_index=True, width="stretch")
    st.subheader("Group shares")
    try:
        comp_a = cache.audit_table(_key(data), "composition")
        populations = list(dict.fromkeys(comp_a["population"])) if "population" in comp_a else ["all"]
        population = st.radio("population", populations, horizontal=True, key="c_pop")
        shares = compare_shares(_composition(data, population), _composition(other, population))
        st.caption("A group one run lacks shows n = 0 and share 0. Shares are of every row of the population.")
        st.dataframe(shares, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="percent")
                                    for c in ("share A", "share B", "share difference (B − A)")})
    except MissingData as exc:
        st.info(str(exc))
    st.subheader("Filter impact (inclusion-rate ratio to overall, sequential)")
    try:
        i1, i2 = (cache.audit_table(_key(d), "filter_impact") for d in (data, other))
        i1, i2 = (i[i["mode"] == "sequential"] if "mode" in i else i for i in (i1, i2))
        st.dataframe(compare_impact(i1, i2), hide_index=True, width="stretch")
    except MissingData as exc:
        st.info(str(exc))
