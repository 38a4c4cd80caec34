"""`fairsift report RUN`: report/index.html (offline, no CDN), report/figures/*.png and report/summary.json."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from curate.filter.funnel import funnel_rows  # noqa: E402
from reports import figures, findings  # noqa: E402
from reports.worldmap import world_map  # noqa: E402

MAX_ATTRIBUTES = 8


def _read_parquet(path: Path) -> pd.DataFrame | None:
    return pd.read_parquet(path) if path.is_file() else None


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _probe_tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    found: dict[str, pd.DataFrame] = {}
    for folder in (run_dir / "audit", run_dir / "probes"):
        for path in sorted(folder.glob("probe_*.parquet")) if folder.is_dir() else []:
            found[path.stem] = pd.read_parquet(path)
    return found


class _Figures:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.items: list[tuple[str, str, str]] = []  # (section, file, caption)

    def add(self, section: str, name: str, fig, caption: str) -> None:
        if fig is None:
            return
        file = f"{name}.png"
        tmp = self.folder / f".tmp-{file}"
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, self.folder / file)
        plt.close(fig)
        self.items.append((section, file, caption))


def _filter_step_options(manifest: dict) -> dict[str, dict]:
    """Each filter step's options (e.g. the CLIP fraction), from the run's config or the default filter."""
    from curate.filter.stage import default_filter_config

    config = (manifest.get("config") or {}).get("filter") or default_filter_config().model_dump(mode="json")
    return {s.get("name"): s for s in config.get("steps", []) if isinstance(s, dict)}


def _attributes(df: pd.DataFrame | None) -> list[str]:
    if df is None or df.empty:
        return []
    preferred = ["gender_terms", "age_terms", "religion_terms", "region", "income_group", "country", "language"]
    present = list(dict.fromkeys(df["attribute"]))
    return [a for a in preferred if a in present] + [a for a in present if a not in preferred][:MAX_ATTRIBUTES]


def build_report(run_dir: str | Path) -> dict:
    run_dir = Path(run_dir)
    out = run_dir / "report"
    figs = _Figures(out / "figures")
    manifest = _manifest(run_dir)
    model = manifest.get("model") or {}
    test_model = bool(model.get("is_test_model"))
    audit_dir = run_dir / "audit"
    comp = _read_parquet(audit_dir / "composition.parquet")
    impact = _read_parquet(audit_dir / "filter_impact.parquet")
    sweep = _read_parquet(audit_dir / "threshold_sweep.parquet")
    cooc = _read_parquet(audit_dir / "cooccurrence.parquet")
    agreement = _read_parquet(audit_dir / "geo_agreement.parquet")
    min_count = int((manifest.get("stages", {}).get("audit", {}).get("counts", {}) or {}).get("min_count", 30))
    step_options = _filter_step_options(manifest)

    funnel = funnel_rows(run_dir)
    figs.add("Funnel", "funnel", figures.funnel(funnel, test_model), "Rows left after each step.")
    for attribute in _attributes(comp):
        if attribute == "country":
            continue
        figs.add("Composition", f"composition_{attribute}", figures.composition(comp, attribute, min_count),
                 f"Share of each {attribute} group with 95% Wilson CIs; grey bars have fewer than {min_count} rows.")
    if comp is not None and not comp.empty:
        c = comp[(comp["attribute"] == "country") & comp["group"].notna()]
        if "population" in c:
            c = c[c["population"] == c["population"].iloc[0]] if not c.empty else c
        shares = {str(g): float(v) for g, v in zip(c["group"], c["value"]) if len(str(g)) == 2}
        figs.add("Geography", "world_map", world_map(shares, "Share of rows placed in each country (caption or ccTLD)"),
                 "Country share of rows (signal: caption place names, else the URL's ccTLD).")
    for attribute in _attributes(impact):
        for mode in ("sequential", "marginal"):
            figs.add("Filter impact", f"impact_{attribute}_{mode}",
                     figures.forest(impact, attribute, mode, test_model),
                     f"Inclusion-rate ratio per step and {attribute} group ({mode}); dashed line = four-fifths rule.")
    for attribute in _attributes(sweep):
        figs.add("Threshold sweep", f"sweep_{attribute}", figures.sweep(sweep, attribute, test_model),
                 f"Inclusion rate per {attribute} group at each CLIP-score top fraction.")
    figs.add("Co-occurrence", "cooccurrence", figures.cooccurrence(cooc),
             "Caption words whose nPMI with female terms most exceeds (orange) or trails (blue) male terms.")
    probes = _probe_tables(run_dir)
    for name, table in probes.items():
        for metric in ("accuracy", "non_human_rate", "crime_rate", "weat_effect_size"):
            figs.add("Model probes", f"{name}_{metric}", figures.probe_bars(table, metric, f"{name}: {metric}"),
                     f"{metric} per group with 95% CIs ({name}).")

    headline = findings.impact_sentences(impact, step_options) + findings.composition_sentences(comp)
    if test_model:
        headline.insert(0, {"kind": "warning", "sentence": "All CLIP scores in this run come from the tiny TEST model "
                            "(random weights): score-based findings describe the pipeline's mechanics, not real data."})
    summary = {
        "run": str(run_dir), "model": model, "test_model": test_model,
        "model_fallback": manifest.get("model_fallback"),
        "funnel": [{"step": s, "rows": n} for s, n, _ in funnel],
        "findings": headline,
        "figures": [f"figures/{f}" for _, f, _ in figs.items],
        "caption_cctld_agreement": agreement.to_dict(orient="records") if agreement is not None else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "index.html").write_text(_html(run_dir, manifest, summary, figs.items, impact), encoding="utf-8")
    return {"figures": len(figs.items), "findings": len(headline), "path": str(out / "index.html")}


def _table_html(df: pd.DataFrame, columns: list[str], limit: int = 30) -> str:
    cols = [c for c in columns if c in df.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = []
    for _, row in df[cols].head(limit).iterrows():
        cells = []
        for c in cols:
            v = row[c]
            text = f"{v:.3f}" if isinstance(v, float) else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html(run_dir: Path, manifest: dict, summary: dict, items: list[tuple[str, str, str]],
          impact: pd.DataFrame | None) -> str:
    esc = html.escape
    model = summary["model"] or {}
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>fairsift report</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}"
        "img{max-width:100%}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}"
        ".warn{background:#fff3cd;border:2px solid #e0a800;padding:1em;font-weight:bold}"
        "figcaption{font-size:13px;color:#555}</style></head><body>",
        f"<h1>fairsift report — {esc(run_dir.name)}</h1>",
    ]
    if summary["test_model"]:
        parts.append(f"<div class='warn'>TEST MODEL: scores come from {esc(str(model.get('id', 'tiny-test')))}, "
                     f"not real CLIP weights. {esc(summary.get('model_fallback') or '')}</div>")
    parts.append(f"<p>Model: {esc(str(model.get('id', 'n/a')))}; weights sha256: "
                 f"{esc(str(model.get('weights_sha256', 'n/a')))}. Attributes are <em>signals</em> inferred from "
                 "caption words (<code>*_terms</code>), URLs (<code>country_source</code>) or pixels "
                 "(<code>perceived_*</code>), never identities. Every rate has n and a 95% CI.</p>")
    parts.append("<h2>Headline findings</h2><ul>")
    parts += [f"<li>{esc(f['sentence'])}</li>" for f in summary["findings"]] or ["<li>no audit tables yet: run "
                                                                                 "<code>fairsift audit</code></li>"]
    parts.append("</ul>")
    section = None
    for sec, file, caption in items:
        if sec != section:
            parts.append(f"<h2>{esc(sec)}</h2>")
            section = sec
        parts.append(f"<figure><img src='figures/{esc(file)}' alt='{esc(caption)}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    if impact is not None and "flag_four_fifths" in impact:
        flagged = impact[impact["flag_four_fifths"].fillna(False).astype(bool)]
        parts.append(f"<h2>Four-fifths flags ({len(flagged)})</h2>")
        if not flagged.empty:
            parts.append(_table_html(flagged, ["step", "mode", "attribute", "group", "n", "value", "overall_rate",
                                               "ratio", "ratio_ci_low", "ratio_ci_high", "p_adjusted"]))
    stages = manifest.get("stages", {})
    if stages:
        parts.append("<h2>Stages</h2>")
        parts.append(_table_html(pd.DataFrame([{"stage": k, "status": v.get("status"), "seconds": v.get("seconds")}
                                               for k, v in stages.items()]), ["stage", "status", "seconds"]))
    parts.append("</body></html>")
    return "\n".join(parts)
