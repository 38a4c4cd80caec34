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
    ranked = _read_parquet(audit_dir / "findings.parquet")
    min_count = run_min_count(manifest, comp, impact)
    step_options = _filter_step_options(manifest)

    funnel = funnel_rows(run_dir)
    figs.add("Funnel", "funnel", figures.funnel(funnel, test_model), "Rows left after each step.")
    statuses = download_statuses(run_dir)
    for attribute in _attributes(comp):
        if attribute == "country":
            continue
        figs.add("Composition", f"composition_{attribute}", figures.composition(comp, attribute, min_count),
                 f"Share of each {attribute} group with 95% Clopper-Pearson CIs; colour = population (each share is "
                 f"of all rows of its population, the total stated in the legend); hatched bars marked 'low n' have "
                 f"fewer than {min_count} rows (the run's min_count); groups a filter removed show n=0.")
    if comp is not None and not comp.empty:
        c = comp[(comp["attribute"] == "country") & comp["group"].notna()]
        population = "downloaded" if "downloaded" in set(c.get("population", [])) else None
        if population is not None:
            c = c[c["population"] == population]
        total = int(c["total"].iloc[0]) if "total" in c and not c.empty else int(c["n"].sum()) if not c.empty else 0
        shares = {str(g): float(v) for g, v in zip(c["group"], c["value"]) if len(str(g)) == 2}
        denominator = f"all {total:,} {population or ''} rows, rows without a country signal included".replace("  ", " ")
        figs.add("Geography", "world_map",
                 world_map(shares, f"Share of rows placed in each country — of {denominator}"),
                 f"Country share (signal: caption place names, else the URL's ccTLD); denominator: {denominator}, "
                 "the same as the composition chart's.")
    for attribute in _attributes(impact):
        for mode in ("sequential", "marginal"):
            figs.add("Filter impact", f"impact_{attribute}_{mode}",
                     figures.forest(impact, attribute, mode, test_model),
                     f"Inclusion rate of each {attribute} group divided by the highest-rate group's (reference: "
                     f"groups with >= {min_count} rows), per step ({mode}), with 95% intervals; dashed line = four "
                     "fifths; red = significantly below it after correction; hollow = under min_count, not judged.")
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

    headline = findings.ranked_findings(ranked, impact, min_count, step_options)
    if test_model:
        headline.insert(0, {"kind": "warning", "sentence": "All CLIP scores in this run come from the tiny TEST model "
                            "(random weights): score-based findings describe the pipeline's mechanics, not real data."})
    summary = {
        "run": str(run_dir), "model": model, "test_model": test_model,
        "model_fallback": manifest.get("model_fallback"),
        "funnel": [{"step": s, "rows": n} for s, n, _ in funnel],
        "download_status": statuses,
        "min_count": min_count,
        "findings": headline,
        "composition": findings.composition_sentences(comp),
        "figures": [f"figures/{f}" for _, f, _ in figs.items],
        "caption_cctld_agreement": agreement.to_dict(orient="records") if agreement is not None else None,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (out / "index.html").write_text(_html(run_dir, manifest, summary, figs.items, impact), encoding="utf-8")
    return {"figures": len(figs.items), "findings": len(headline), "path": str(out / "index.html")}


def download_statuses(run_dir: Path) -> list[dict]:
    """Rows per download status (success, each failure and each refusal: blocked_private_network, refused_robots,
    opted_out, host_unreachable, blocked_domain, ...) with an example message, from shards/ via DuckDB."""
    import duckdb

    files = sorted((run_dir / "shards").glob("part-*.parquet"))
    if not files:
        return []
    listed = "[" + ", ".join("'" + str(f).replace("'", "''") + "'" for f in files) + "]"
    with duckdb.connect() as con:
        rows = con.execute(f"SELECT status, count(*) AS n, any_value(error_message) AS example FROM read_parquet("
                           f"{listed}, union_by_name = true) GROUP BY status ORDER BY n DESC, status").fetchall()
    return [{"status": s, "rows": int(n), "example": e} for s, n, e in rows]


def run_min_count(manifest: dict, *tables: pd.DataFrame | None) -> int:
    """The min_count the audit ran with: recorded in its tables, else in the manifest's audit options."""
    for table in tables:
        if table is not None and "min_count" in table and table["min_count"].notna().any():
            return int(table["min_count"].dropna().iloc[0])
    counts = (manifest.get("stages", {}).get("audit", {}) or {}).get("counts", {}) or {}
    config = (manifest.get("config") or {}).get("audit") or {}
    return int(counts.get("min_count") or config.get("min_count") or 30)


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
    parts.append("<h2>Findings, ranked by evidence</h2>")
    parts.append(f"<p>Each group is compared with the highest-rate group that has at least {summary['min_count']} "
                 "rows (the four-fifths rule's reference). Groups with fewer rows are shown but not judged.</p>")
    titles = {"warning": "Warning", "significant_four_fifths": "Significantly below four fifths of the reference group",
              "disparity": "Other disparities whose 95% interval excludes parity",
              "not_judged": f"Not judged (fewer than {summary['min_count']} rows, or none)",
              "no_disparity": "No disparity detectable"}
    if not summary["findings"]:
        parts.append("<p>no audit tables yet: run <code>fairsift audit</code></p>")
    tier = None
    for f in summary["findings"]:
        kind = f.get("tier") or f.get("kind")
        if kind != tier:
            parts.append(("</ul>" if tier is not None else "") + f"<h3>{esc(titles.get(kind, kind))}</h3><ul>")
            tier = kind
        parts.append(f"<li>{esc(f['sentence'])}</li>")
    if tier is not None:
        parts.append("</ul>")
    if summary.get("download_status"):
        parts.append("<h2>Download status</h2><p>Every pair's download ended in one status; refusals (private "
                     "networks, robots.txt, X-Robots-Tag opt-outs, unreachable hosts, blocked domains) are statuses "
                     "too, and the first step of the funnel.</p>")
        parts.append(_table_html(pd.DataFrame(summary["download_status"]), ["status", "rows", "example"]))
    if summary.get("composition"):
        parts.append("<h3>Composition</h3><ul>")
        parts += [f"<li>{esc(f['sentence'])}</li>" for f in summary["composition"]]
        parts.append("</ul>")
    section = None
    for sec, file, caption in items:
        if sec != section:
            parts.append(f"<h2>{esc(sec)}</h2>")
            section = sec
        parts.append(f"<figure><img src='figures/{esc(file)}' alt='{esc(caption)}'>"
                     f"<figcaption>{esc(caption)}</figcaption></figure>")
    if impact is not None and "significant_below_four_fifths" in impact:
        once = impact[~impact["same_population"].fillna(False).astype(bool)] if "same_population" in impact else impact
        flagged = once[once["significant_below_four_fifths"].fillna(False).astype(bool)]
        below = once[once["below_four_fifths"].fillna(False).astype(bool)]
        parts.append(f"<h2>Four-fifths: {len(flagged)} significant, {len(below)} below by point estimate</h2>")
        if not below.empty:
            parts.append(_table_html(below, ["step", "mode", "attribute", "group", "n", "value", "reference_group",
                                             "reference_rate", "ratio_to_max", "ratio_to_max_ci_low",
                                             "ratio_to_max_ci_high", "p_adjusted", "significant_below_four_fifths",
                                             "flag_low_n"]))
    stages = manifest.get("stages", {})
    if stages:
        parts.append("<h2>Stages</h2>")
        parts.append(_table_html(pd.DataFrame([{"stage": k, "status": v.get("status"), "seconds": v.get("seconds")}
                                               for k, v in stages.items()]), ["stage", "status", "seconds"]))
    parts.append("</body></html>")
    return "\n".join(parts)
