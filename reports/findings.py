"""Headline findings as plain sentences, each carrying its numbers (n, rate, ratio, CI) and its source signal."""

from __future__ import annotations

import math

import pandas as pd


def describe_group(attribute: str, group: str) -> str:
    if attribute.endswith("_terms"):
        kind = attribute.removesuffix("_terms").replace("_", " ")
        if group == "none":
            return f"captions with no {kind} terms"
        if group == "both":
            return f"captions with both kinds of {kind} terms"
        return f"captions with {group} terms"
    if attribute.startswith("perceived_"):
        return f"images of perceived {attribute.removeprefix('perceived_').replace('_', ' ')} '{group}' (zero-shot CLIP)"
    if attribute == "country":
        return f"rows placed in {group}"
    return f"rows with {attribute.replace('_', ' ')} '{group}'"


NON_GROUPS = {"(missing)", "none", "unknown", "nan", "None"}


def describe_step(step: str, step_options: dict | None = None) -> str:
    opts = (step_options or {}).get(step) or {}
    if step == "clip_top_fraction" and "fraction" in opts:
        parity = " with group parity" if opts.get("group_parity") else ""
        return f"the CLIP top-{round(100 * opts['fraction'])}% step{parity}"
    if step == "clip_threshold" and "min_score" in opts:
        return f"the CLIP score >= {opts['min_score']} step"
    return f"the {step} step"


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _sentence(r, step_options: dict | None, mode: str) -> str:
    text = (f"{describe_step(r['step'], step_options)} kept {_pct(r['value'])} of "
            f"{describe_group(r['attribute'], str(r['group']))} vs {_pct(r['overall_rate'])} overall "
            f"(ratio {r['ratio']:.2f}, CI {r.get('ratio_ci_low', float('nan')):.2f}–"
            f"{r.get('ratio_ci_high', float('nan')):.2f}, n={int(r['n']):,}, {mode})")
    if bool(r.get("flag_four_fifths", False)):
        text += "; significantly below the four-fifths line after multiple-testing correction"
    if bool(r.get("flag_low_n", False)):
        text += "; under the minimum count, indicative only"
    return text


ATTRIBUTE_ORDER = ("gender_terms", "age_terms", "religion_terms", "region", "income_group", "country", "language")


def impact_sentences(impact: pd.DataFrame, step_options: dict | None = None, mode: str = "sequential",
                     limit: int = 12) -> list[dict]:
    """For every step and attribute, the real group (not missing/none, not under the minimum count) with the lowest
    inclusion ratio; flagged four-fifths violations first, then the lowest ratios, at most `limit`."""
    if impact is None or impact.empty or "ratio" not in impact:
        return []
    d = impact[(impact["mode"] == mode) if "mode" in impact else True].dropna(subset=["ratio"])
    d = d[~d["group"].astype(str).isin(NON_GROUPS)]
    low_n = d["flag_low_n"].fillna(False).astype(bool) if "flag_low_n" in d else pd.Series(False, index=d.index)
    # per step and attribute: the lowest ratio among groups with enough rows, and a lower one among the small groups
    # too, marked indicative (a group of 8 that lost every row is worth a look, not a headline)
    picked = []
    for _, g in d.groupby(["step", "attribute"], sort=False):
        g = g.sort_values(["ratio", "group"])
        enough, small = g[~low_n.loc[g.index]], g[low_n.loc[g.index]]
        if not enough.empty:
            picked.append(enough.iloc[0])
        if not small.empty and (enough.empty or small["ratio"].iloc[0] < enough["ratio"].iloc[0]):
            picked.append(small.iloc[0])
    if "flag_four_fifths" in d:
        seen = {(r["step"], r["attribute"], r["group"]) for r in picked}
        picked += [r for _, r in d[d["flag_four_fifths"].fillna(False).astype(bool)].iterrows()
                   if (r["step"], r["attribute"], r["group"]) not in seen]
    rank = {a: i for i, a in enumerate(ATTRIBUTE_ORDER)}
    picked.sort(key=lambda r: (not bool(r.get("flag_four_fifths", False)), bool(r.get("flag_low_n", False)),
                               float(r["ratio"]), rank.get(r["attribute"], len(rank))))
    out = [{"kind": "filter_impact", "step": r["step"], "attribute": r["attribute"], "group": str(r["group"]),
            "mode": mode, "value": float(r["value"]), "overall_rate": float(r["overall_rate"]),
            "ratio": float(r["ratio"]), "ratio_ci_low": float(r.get("ratio_ci_low", float("nan"))),
            "ratio_ci_high": float(r.get("ratio_ci_high", float("nan"))), "n": int(r["n"]),
            "flag_four_fifths": bool(r.get("flag_four_fifths", False)), "flag_low_n": bool(r.get("flag_low_n", False)),
            "sentence": _sentence(r, step_options, mode)}
           for r in picked]
    return out[:limit]


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
                    f"{_pct(m['value'])} of {population} captions have male terms (n={int(m['n']):,}) and "
                    f"{_pct(f['value'])} female terms (n={int(f['n']):,}): {ratio:.1f} male per female "
                    "(caption words, not identities)"})
    for attribute in ("region", "income_group", "country"):
        a = d[(d["attribute"] == attribute) & ~d["group"].astype(str).isin(NON_GROUPS) & d["group"].notna()]
        if not a.empty:
            top = a.sort_values("value", ascending=False).head(3)
            parts = ", ".join(f"{r['group']} {_pct(r['value'])} (CI {_pct(r['ci_low'])}–{_pct(r['ci_high'])})"
                              for _, r in top.iterrows())
            known = float(a["value"].sum())
            out.append({"kind": "composition", "attribute": attribute,
                        "sentence": f"largest {attribute.replace('_', ' ')} shares among {population} rows: {parts} "
                                    f"({_pct(1 - known)} of rows have no {attribute.replace('_', ' ')} signal)"})
    return out
