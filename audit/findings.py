"""Findings ranked by evidence, from the filter-impact table: the one list the report, report/summary.json and the
dashboard's Overview show (written as audit/findings.parquet).

Tiers, in this order:
1. `significant_four_fifths`: groups significantly below four fifths of the reference (highest-rate) group's rate
   after the multiple-testing correction, most severe first (by the upper end of the ratio's interval);
2. `disparity`: other groups whose ratio to the reference group has a 95% interval that excludes 1 (parity), the
   largest disparities first (by |log ratio|);
3. `not_judged`: per step, mode and attribute, the groups under the minimum count (shown, never judged) and the
   groups with no row in that population (n = 0);
4. `no_disparity`: when tiers 1 and 2 are empty, "no disparity detectable at n = ...".
A ratio whose interval contains 1 is never in tiers 1-2. Rows without a signal ('(missing)') are no group and are
not headlines. Each population is used once (sequential rows that repeat the marginal population are skipped).
Every sentence carries n, the rate, the reference group with its rate and n, and the interval.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from audit.frame import MISSING_GROUP, audit_rows, concat_rows, empty_frame

TIERS = ("significant_four_fifths", "disparity", "not_judged", "no_disparity")
FINDINGS_EXTRA = {"tier": "object", "rank": "int64", "mode": "object", "rate": "float64",
                  "reference_group": "object", "reference_rate": "float64", "reference_n": "int64",
                  "p_adjusted": "float64", "min_count": "int64", "sentence": "object"}
MAX_PER_TIER = 15


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


def describe_step(step: str, step_options: Optional[dict] = None) -> str:
    opts = (step_options or {}).get(step) or {}
    if step == "clip_top_fraction" and "fraction" in opts:
        parity = " with group parity" if opts.get("group_parity") else ""
        return f"the CLIP top-{round(100 * opts['fraction'])}% step{parity}"
    if step == "clip_threshold" and "min_score" in opts:
        return f"the CLIP score >= {opts['min_score']} step"
    return f"the {step} step"


def pct(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.0f}%"


def _ci(lo, hi) -> str:
    return f"{lo:.2f}–{'∞' if math.isinf(hi) else f'{hi:.2f}'}"


def _sentence(r, step_options: Optional[dict]) -> str:
    text = (f"{describe_step(r['step'], step_options)} kept {pct(r['value'])} of "
            f"{describe_group(r['attribute'], str(r['group']))} (n={int(r['n']):,}) vs {pct(r['reference_rate'])} of "
            f"{describe_group(r['attribute'], str(r['reference_group']))} (n={int(r['reference_n']):,}), the "
            f"highest-rate group: ratio {r['ratio_to_max']:.2f}, 95% CI "
            f"{_ci(r['ratio_to_max_ci_low'], r['ratio_to_max_ci_high'])} ({r['mode']})")
    if bool(r["significant_below_four_fifths"]):
        p = float(r["p_adjusted"])
        shown = "p < 1e-10" if p < 1e-10 else f"p = {p:.2g}"
        text += f"; significantly below the four-fifths line ({r['correction']}-adjusted one-sided {shown})"
    elif bool(r["below_four_fifths"]):
        text += "; below the four-fifths line, not significantly"
    return text


def _finding(r, tier: str, step_options: Optional[dict]) -> dict:
    return {"step": r["step"], "attribute": r["attribute"], "group": str(r["group"]), "n": int(r["n"]),
            "metric": "ratio_to_max", "value": float(r["ratio_to_max"]), "ci_low": float(r["ratio_to_max_ci_low"]),
            "ci_high": float(r["ratio_to_max_ci_high"]), "tier": tier, "mode": r["mode"], "rate": float(r["value"]),
            "reference_group": str(r["reference_group"]), "reference_rate": float(r["reference_rate"]),
            "reference_n": int(r["reference_n"]), "p_adjusted": float(r["p_adjusted"]),
            "sentence": _sentence(r, step_options)}


def build_findings(impact: pd.DataFrame, min_count: int, step_options: Optional[dict] = None) -> pd.DataFrame:
    """Rows of audit/findings.parquet (analysis "findings"), ranked: `rank` 1 is the strongest evidence."""
    if impact is None or impact.empty:
        return empty_frame(FINDINGS_EXTRA)
    d = impact
    if "same_population" in d:
        d = d[~d["same_population"].fillna(False).astype(bool)]
    judged = d[(d["n"] > 0) & ~d["flag_low_n"].astype(bool) & ~d["is_reference"].astype(bool)
               & (d["group"].astype(str) != MISSING_GROUP) & d["ratio_to_max"].notna()]
    excludes_parity = (judged["ratio_to_max_ci_high"] < 1) | (judged["ratio_to_max_ci_low"] > 1)
    significant = judged[judged["significant_below_four_fifths"].astype(bool) & excludes_parity]
    significant = significant.sort_values(["ratio_to_max_ci_high", "ratio_to_max", "step", "attribute", "group"])
    rest = judged[excludes_parity & ~judged.index.isin(significant.index)]
    rest = rest.assign(_size=np.abs(np.log(rest["ratio_to_max"].clip(lower=1e-12))))
    rest = rest.sort_values(["_size", "step", "attribute", "group"], ascending=[False, True, True, True])
    found = [_finding(r, "significant_four_fifths", step_options) for _, r in significant.head(MAX_PER_TIER).iterrows()]
    found += [_finding(r, "disparity", step_options) for _, r in rest.head(MAX_PER_TIER).iterrows()]
    found += _not_judged(d, min_count)
    if not any(f["tier"] in TIERS[:2] for f in found):
        found.append(_nothing_detectable(d, judged, min_count))
    rows = [audit_rows("findings", **{k: v for k, v in f.items()}, rank=i + 1, min_count=int(min_count))
            for i, f in enumerate(found)]
    return concat_rows(rows)


def _not_judged(d: pd.DataFrame, min_count: int) -> list[dict]:
    out = []
    unjudged = d[(d["n"] < min_count) & (d["group"].astype(str) != MISSING_GROUP)]
    for (step, mode, attribute), g in unjudged.groupby(["step", "mode", "attribute"], sort=False):
        small = g[g["n"] > 0].sort_values(["n", "group"])
        empty = g[g["n"] == 0].sort_values("group")
        parts = []
        if not small.empty:
            listed = ", ".join(f"{r['group']} (n={int(r['n'])})" for _, r in small.head(8).iterrows())
            more = f" and {len(small) - 8} more" if len(small) > 8 else ""
            parts.append(f"{len(small)} group(s) under the minimum count of {min_count}, shown but not judged: "
                         f"{listed}{more}")
        if not empty.empty:
            parts.append(f"no row of {', '.join(map(str, empty['group'].head(8)))} reached it (n=0)")
        out.append({"step": step, "attribute": attribute, "group": ", ".join(map(str, g["group"])), "n": int(g["n"].sum()),
                    "metric": "not_judged", "value": np.nan, "tier": "not_judged", "mode": mode,
                    "sentence": f"{describe_step(step)} ({mode}), {attribute}: " + "; ".join(parts)})
    return out[: 2 * MAX_PER_TIER]


def _nothing_detectable(d: pd.DataFrame, judged: pd.DataFrame, min_count: int) -> dict:
    sizes = d.groupby(["step", "mode"], sort=False)["population_rows"].first() if "population_rows" in d else None
    n_rows = int(sizes.max()) if sizes is not None and len(sizes) else int(d["n"].sum())
    smallest = int(judged["n"].min()) if not judged.empty else 0
    detail = (f"; the smallest judged group has n = {smallest:,}" if smallest
              else f"; no group other than the reference has the minimum count of {min_count}")
    return {"step": None, "attribute": None, "group": None, "n": n_rows, "metric": "none_detectable",
            "value": np.nan, "tier": "no_disparity", "mode": None,
            "sentence": f"no disparity detectable at n = {n_rows:,} rows: no group's ratio to the highest-rate group "
                        f"has a 95% interval that excludes 1{detail}"}
