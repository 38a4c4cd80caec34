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


def describe_step(step: str, thresholds: dict | None = None) -> str:
    detail = (thresholds or {}).get(step)
    if step.startswith("clip_top_fraction") and isinstance(detail, dict) and "fraction" in detail:
        return f"the CLIP top-{round(100 * detail['fraction'])}% step"
    return f"the {step} step"


def _pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def impact_sentences(impact: pd.DataFrame, thresholds: dict | None = None, mode: str = "sequential",
                     limit: int = 12) -> list[dict]:
    """One finding per step and attribute: the group with the lowest inclusion ratio, plus every flagged group."""
    if impact is None or impact.empty or "ratio" not in impact:
        return []
    d = impact[(impact.get("mode", mode) == mode)].dropna(subset=["ratio"])
    if "flag_low_n" in d:
        d = d[~d["flag_low_n"].fillna(False).astype(bool)]
    out: list[dict] = []
    for (step, attribute), g in d.groupby(["step", "attribute"], sort=False):
        worst = g.sort_values("ratio").iloc[0]
        picks = [worst] + [r for _, r in g[g.get("flag_four_fifths", False) == True].iterrows()  # noqa: E712
                           if r["group"] != worst["group"]]
        for r in picks:
            flagged = bool(r.get("flag_four_fifths", False))
            text = (f"{describe_step(step, thresholds)} kept {_pct(r['value'])} of "
                    f"{describe_group(attribute, str(r['group']))} vs {_pct(r['overall_rate'])} overall "
                    f"(ratio {r['ratio']:.2f}, CI {r.get('ratio_ci_low', float('nan')):.2f}–"
                    f"{r.get('ratio_ci_high', float('nan')):.2f}, n={int(r['n']):,}, {mode})")
            if flagged:
                text += "; significantly below the four-fifths line after multiple-testing correction"
            out.append({"kind": "filter_impact", "step": step, "attribute": attribute, "group": str(r["group"]),
                        "ratio": float(r["ratio"]), "flag_four_fifths": flagged, "sentence": text})
    out.sort(key=lambda f: (not f["flag_four_fifths"], f["ratio"]))
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
        a = d[(d["attribute"] == attribute) & (d["group"].astype(str) != "none") & d["group"].notna()]
        a = a[a["group"].astype(str) != "unknown"]
        if not a.empty:
            top = a.sort_values("value", ascending=False).head(3)
            parts = ", ".join(f"{r['group']} {_pct(r['value'])} (CI {_pct(r['ci_low'])}–{_pct(r['ci_high'])})"
                              for _, r in top.iterrows())
            out.append({"kind": "composition", "attribute": attribute,
                        "sentence": f"largest {attribute.replace('_', ' ')} shares among {population} rows: {parts}"})
    return out
