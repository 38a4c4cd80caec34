"""Matplotlib figures of the report. Each function takes plain DataFrames and returns a Figure, or None if no data."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TEST_MODEL_NOTE = "scores from the tiny TEST model — not real CLIP weights"


def _note(fig, test_model: bool) -> None:
    if test_model:
        fig.text(0.99, 0.005, TEST_MODEL_NOTE, ha="right", va="bottom", fontsize=8, color="#b35900")


def funnel(rows: list[tuple[str, int, str]], test_model: bool = False):
    if not rows:
        return None
    steps = [r[0] for r in rows][::-1]
    counts = [r[1] for r in rows][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    ax.barh(steps, counts, color="#4c72b0")
    top = max(counts) or 1
    for y, c in enumerate(counts):
        ax.text(c + top * 0.01, y, f"{c:,} ({100 * c / top:.0f}%)", va="center", fontsize=9)
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("rows left after the step")
    ax.set_title("Curation funnel")
    _note(fig, test_model)
    fig.tight_layout()
    return fig


def composition(df: pd.DataFrame, attribute: str, min_count: int):
    """Share of each group with its 95% CI per population. Two separate encodings: colour = population (its total, the
    one denominator of its shares, in the legend); hatching + 'low n' label = fewer than min_count rows. Groups with
    n = 0 in a population are drawn as an empty bar labelled n=0."""
    from matplotlib.patches import Patch

    d = df[df["attribute"] == attribute]
    if d.empty:
        return None
    populations = list(dict.fromkeys(d["population"])) if "population" in d else ["all"]
    groups = list(d.sort_values("value", ascending=False)["group"].drop_duplicates())[:25]
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(groups) * max(1, len(populations)) + 1.8))
    height = 0.8 / max(1, len(populations))
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    handles = []
    for k, pop in enumerate(populations):
        p = d[d["population"] == pop] if "population" in d else d
        total = int(p["total"].iloc[0]) if "total" in p and len(p) else int(p["n"].sum())
        p = p.set_index("group").reindex(groups)
        y = np.arange(len(groups)) + k * height
        n = p["n"].fillna(0).to_numpy()
        low_n = n < min_count
        color = colors[k % 3]
        err = np.vstack([(p["value"] - p["ci_low"]).clip(lower=0), (p["ci_high"] - p["value"]).clip(lower=0)]).astype(float)
        bars = ax.barh(y, p["value"].fillna(0), height=height, color=color, xerr=np.nan_to_num(err), capsize=2,
                       edgecolor=color, linewidth=0.8)
        for bar, ln in zip(bars, low_n):
            if ln:
                bar.set_hatch("////")
                bar.set_facecolor("white")
        for yi, (v, hi, count, ln) in enumerate(zip(p["value"], p["ci_high"], n, low_n)):
            x = (0 if math.isnan(v) else v) if math.isnan(hi) else max(v, hi)
            ax.text(x + 0.005, y[yi], f"n={int(count):,}" + (" (low n)" if ln else ""), va="center", fontsize=7)
        handles.append(Patch(facecolor=color, label=f"{pop}: shares of {total:,} rows"))
    handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="////", label=f"low n (< {min_count} rows)"))
    ax.set_yticks(np.arange(len(groups)) + height * (len(populations) - 1) / 2)
    ax.set_yticklabels(groups)
    ax.invert_yaxis()
    ax.set_xlabel("share of the population's rows (95% Clopper-Pearson CI)")
    ax.set_title(f"Composition: {attribute}")
    ax.legend(handles=handles, loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def forest(df: pd.DataFrame, attribute: str, mode: str = "sequential", test_model: bool = False):
    """Inclusion rate / the highest-rate group's (ratio_to_max) per step and group with 95% intervals; 0.8 = four
    fifths. Red: significantly below it; hollow: under min_count (not judged); the reference group sits at 1."""
    column = "ratio_to_max" if "ratio_to_max" in df else "ratio"
    d = df[(df["attribute"] == attribute) & (df.get("mode", mode) == mode)].copy()
    if d.empty or column not in d:
        return None
    d = d.dropna(subset=[column])
    if d.empty:
        return None
    steps = list(dict.fromkeys(d["step"]))
    groups = list(dict.fromkeys(d["group"]))
    rows = [(s, g) for s in steps for g in groups if ((d["step"] == s) & (d["group"] == g)).any()]
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(rows) + 1.6))
    upper = 1.5
    for y, (s, g) in enumerate(rows):
        r = d[(d["step"] == s) & (d["group"] == g)].iloc[0]
        flagged = bool(r.get("significant_below_four_fifths", False))
        low_n = bool(r.get("flag_low_n", False))
        lo, hi = r.get(f"{column}_ci_low", np.nan), r.get(f"{column}_ci_high", np.nan)
        color = "#c44e52" if flagged else "#4c72b0"
        if not (math.isnan(lo) or math.isnan(hi)):
            ax.plot([lo, min(hi, upper)], [y, y], color=color, lw=1.5, ls=":" if low_n else "-")
        ax.plot(r[column], y, "o", ms=4, color=color, mfc="white" if low_n else color)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(0.8, color="#c44e52", lw=0.8, ls="--")
    ax.set_xlim(0, upper)
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{s} · {g}" + (" (ref)" if bool(d[(d['step'] == s) & (d['group'] == g)]['is_reference'].iloc[0])
                                         else "") if "is_reference" in d else f"{s} · {g}" for s, g in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("inclusion rate / highest-rate group's (95% CI); red = significantly below 0.8; hollow = low n")
    ax.set_title(f"Filter impact by {attribute} ({mode})")
    _note(fig, test_model)
    fig.tight_layout()
    return fig


def sweep(df: pd.DataFrame, attribute: str, test_model: bool = False):
    d = df[df["attribute"] == attribute]
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for group, g in d.groupby("group", sort=True):
        g = g.sort_values("fraction")
        ax.plot(g["fraction"], g["value"], marker=".", label=str(group))
        if {"ci_low", "ci_high"} <= set(g.columns):
            ax.fill_between(g["fraction"], g["ci_low"], g["ci_high"], alpha=0.12)
    ax.plot([0, 1], [0, 1], color="black", lw=0.6, ls=":", label="overall")
    ax.set_xlabel("CLIP-score top fraction kept")
    ax.set_ylabel("group inclusion rate")
    ax.set_title(f"Threshold sweep by {attribute}")
    ax.legend(fontsize=7, ncol=2)
    _note(fig, test_model)
    fig.tight_layout()
    return fig


def cooccurrence(df: pd.DataFrame, top: int = 15):
    """Words most associated with female vs male terms (difference of nPMI)."""
    if df is None or df.empty or "word" not in df:
        return None
    d = df[df["metric"] == "npmi"] if "metric" in df else df
    wide = d.pivot_table(index="word", columns="group", values="value", aggfunc="first")
    if not {"female", "male"} <= set(wide.columns):
        return None
    diff = (wide["female"] - wide["male"]).dropna().sort_values()
    if diff.empty:
        return None
    pick = pd.concat([diff.head(top), diff.tail(top)]).drop_duplicates()
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(pick) + 1.5))
    ax.barh(pick.index, pick.values, color=["#4c72b0" if v < 0 else "#dd8452" for v in pick.values])
    ax.axvline(0, color="black", lw=0.7)
    ax.set_xlabel("nPMI with female terms − nPMI with male terms")
    ax.set_title("Caption words co-occurring with gender terms")
    fig.tight_layout()
    return fig


def probe_bars(df: pd.DataFrame, metric: str, title: str):
    d = df[df["metric"] == metric].dropna(subset=["value"])
    if d.empty:
        return None
    # FairFace labels are annotators' perceptions: say so on every axis label
    d = d.assign(label="perceived " + d["attribute"].astype(str) + ": " + d["group"].astype(str))
    for col, name in (("task", "task"), ("with_child_labels", "child labels"), ("variant", "")):
        if col in d:
            d = d.assign(label=d["label"] + d[col].map(
                lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                else f" [{name + ' ' if name else ''}{'yes' if v is True else 'no' if v is False else v}]"))
    d = d.head(48)
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(d) + 1.5))
    err = np.vstack([(d["value"] - d["ci_low"]).clip(lower=0), (d["ci_high"] - d["value"]).clip(lower=0)]).astype(float)
    ax.barh(d["label"], d["value"], xerr=np.nan_to_num(err), color="#55a868", capsize=2)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (95% CI)")
    ax.set_title(title)
    fig.tight_layout()
    return fig
