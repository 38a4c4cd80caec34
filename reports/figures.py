"""Matplotlib figures of the report. Each function takes plain DataFrames and returns a Figure, or None if no data."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

TEST_MODEL_NOTE = "scores from the tiny TEST model — not real CLIP weights"
_LOW_N_COLOR = "#bbbbbb"


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
    """Share of each group with its 95% Wilson CI, downloaded vs kept; cells under min_count drawn grey and marked."""
    d = df[df["attribute"] == attribute]
    if d.empty:
        return None
    populations = list(dict.fromkeys(d["population"])) if "population" in d else ["all"]
    groups = list(d.sort_values("value", ascending=False)["group"].drop_duplicates())[:25]
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(groups) * max(1, len(populations)) + 1.5))
    height = 0.8 / max(1, len(populations))
    colors = ["#4c72b0", "#dd8452", "#55a868"]
    for k, pop in enumerate(populations):
        p = d[d["population"] == pop] if "population" in d else d
        p = p.set_index("group").reindex(groups)
        y = np.arange(len(groups)) + k * height
        low_n = p["n"].fillna(0).to_numpy() < min_count
        bar_colors = [_LOW_N_COLOR if ln else colors[k % 3] for ln in low_n]
        err = np.vstack([(p["value"] - p["ci_low"]).clip(lower=0), (p["ci_high"] - p["value"]).clip(lower=0)]).astype(float)
        ax.barh(y, p["value"].fillna(0), height=height, color=bar_colors, xerr=np.nan_to_num(err), capsize=2,
                label=str(pop))
        for yi, (v, hi, n, ln) in enumerate(zip(p["value"], p["ci_high"], p["n"], low_n)):
            if not math.isnan(v):
                ax.text(max(v, 0 if math.isnan(hi) else hi) + 0.005, y[yi], f"n={int(n):,}" + (" (low n)" if ln else ""), va="center", fontsize=7)
    ax.set_yticks(np.arange(len(groups)) + height * (len(populations) - 1) / 2)
    ax.set_yticklabels(groups)
    ax.invert_yaxis()
    ax.set_xlabel("share of rows (95% Wilson CI)")
    ax.set_title(f"Composition: {attribute}")
    if len(populations) > 1:
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def forest(df: pd.DataFrame, attribute: str, mode: str = "sequential", test_model: bool = False):
    """Inclusion-rate ratio (group rate / overall rate) per step and group with CIs; 0.8 = the four-fifths line."""
    d = df[(df["attribute"] == attribute) & (df.get("mode", mode) == mode)].copy()
    if d.empty or "ratio" not in d:
        return None
    d = d.dropna(subset=["ratio"])
    if d.empty:
        return None
    steps = list(dict.fromkeys(d["step"]))
    groups = list(dict.fromkeys(d["group"]))
    rows = [(s, g) for s in steps for g in groups if ((d["step"] == s) & (d["group"] == g)).any()]
    fig, ax = plt.subplots(figsize=(7.5, 0.28 * len(rows) + 1.6))
    for y, (s, g) in enumerate(rows):
        r = d[(d["step"] == s) & (d["group"] == g)].iloc[0]
        flagged = bool(r.get("flag_four_fifths", False))
        lo, hi = r.get("ratio_ci_low", np.nan), r.get("ratio_ci_high", np.nan)
        color = "#c44e52" if flagged else ("#999999" if bool(r.get("flag_low_n", False)) else "#4c72b0")
        if not (math.isnan(lo) or math.isnan(hi)):
            ax.plot([lo, hi], [y, y], color=color, lw=1.5)
        ax.plot(r["ratio"], y, "o", color=color, ms=4)
    ax.axvline(1.0, color="black", lw=0.8)
    ax.axvline(0.8, color="#c44e52", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([f"{s} · {g}" for s, g in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("inclusion-rate ratio to overall (95% bootstrap CI); red = significantly below 0.8")
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
