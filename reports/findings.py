"""The report's findings: the audit's ranked findings (audit.findings, written as audit/findings.parquet) and a few
descriptive composition sentences, each carrying its numbers (n, share, CI) and its source signal."""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd

from audit.findings import TIERS, build_findings, describe_group, describe_step, pct  # noqa: F401 (re-exported)

NON_GROUPS = {"(missing)", "none", "unknown", "nan", "None"}


def _clean(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if hasattr(value, "item"):
        value = value.item()
    return value


def ranked_findings(findings: Optional[pd.DataFrame], impact: Optional[pd.DataFrame], min_count: int,
                    step_options: Optional[dict] = None) -> list[dict]:
    """The ranked findings as JSON-ready dicts: from audit/findings.parquet, or built from the impact table when an
    older audit wrote none."""
    if findings is None or findings.empty:
        if impact is None or impact.empty or "ratio_to_max" not in impact:
            return []
        findings = build_findings(impact, min_count, step_options)
    keep = ["rank", "tier", "step", "mode", "attribute", "group", "n", "rate", "reference_group", "reference_rate",
            "reference_n", "metric", "value", "ci_low", "ci_high", "p_adjusted", "sentence"]
    out = []
    for _, r in findings.sort_values("rank").iterrows():
        item = {k: _clean(r.get(k)) for k in keep if k in r}
        item["kind"] = "filter_impact"
        out.append(item)
    return out


def composition_sentences(comp: pd.DataFrame, population: str = "downloaded") -> list[dict]:
    if comp is None or comp.empty:
        return []
    d = comp[comp["population"] == population] if "population" in comp else comp
    out: list[dict] = []
    g = d[d["attribute"] == "gender_terms"].set_index("group")
    if {"male", "female"} <= set(g.index):
        m, f = g.loc["male"], g.loc["female"]
        ratio = m["value"] / f["value"] if f["value"] else float("inf")
        out.append({"kind": "composition", "attribute": "gender_terms", "sentence":
                    f"{pct(m['value'])} of {population} captions have male terms (n={int(m['n']):,}) and "
                    f"{pct(f['value'])} female terms (n={int(f['n']):,}): {ratio:.1f} male per female "
                    "(caption words, not identities)"})
    for attribute in ("region", "income_group", "country"):
        a = d[(d["attribute"] == attribute) & ~d["group"].astype(str).isin(NON_GROUPS) & d["group"].notna()]
        if not a.empty:
            top = a.sort_values("value", ascending=False).head(3)
            parts = ", ".join(f"{r['group']} {pct(r['value'])} (CI {pct(r['ci_low'])}–{pct(r['ci_high'])})"
                              for _, r in top.iterrows())
            known = float(a["value"].sum())
            out.append({"kind": "composition", "attribute": attribute,
                        "sentence": f"largest {attribute.replace('_', ' ')} shares among {population} rows: {parts} "
                                    f"({pct(1 - known)} of rows have no {attribute.replace('_', ' ')} signal)"})
    return out
