"""`fairsift audit RUN`: group signals, then the audit tables RUN/audit/<analysis>.parquet, all in the long format
of audit.frame: composition, cooccurrence, filter_impact, threshold_sweep, geo_agreement and findings.

Every table comes from counts that DuckDB computes over the run's parts (audit.counts): cell counts per attribute,
pair counts for the ccTLD agreement, filtered counts per top fraction for the sweep; captions stream through in
batches for the co-occurrence. Nothing holds a frame of the whole run; DuckDB's memory is capped by
`duckdb_memory_limit` and it spills to disk beyond it.
"""

from __future__ import annotations

import os
import sys
from typing import Literal, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm import tqdm

from audit import counts as cell_counts
from audit.composition import composition_from_cubes, geo_agreement_from_pairs
from audit.cooccurrence import BATCH_ROWS, Batch, cooccurrence_from_batches
from audit.cooccurrence import EXTRA as COOCCURRENCE_EXTRA
from audit.findings import build_findings
from audit.frame import empty_frame, write_audit_table
from audit.impact import DEFAULT_SWEEP_FRACTIONS, distinct_flags, impact_from_cubes, sweep_rows
from audit.inputs import categorical_columns, require_views, step_names
from curate import tables
from curate.parts import MapParts, serial_map
from curate.selection import boundaries_from_sql

ANALYSES = ("composition", "geo_agreement", "cooccurrence", "filter_impact", "threshold_sweep", "findings")


class AuditOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    perceived: bool = Field(False, description="also CLIP zero-shot perceived attributes (signals/perceived)")
    min_count: int = Field(30, ge=1, description="groups with fewer rows are shown and flagged (flag_low_n) but not "
                                                 "judged: no four-fifths test, never the reference group")
    n_boot: int = Field(1000, ge=0, description="bootstrap draws of the nPMI intervals of the co-occurrence table "
                                                "(rates, ratios and four-fifths tests use exact intervals and need "
                                                "none); 0 leaves the nPMI intervals empty")
    seed: int = 0
    attributes: Optional[list[str]] = Field(
        None, description="group columns to audit; default: every categorical column of signals/groups "
                          "except uid and helper columns (*_source, url_cctld_country, caption_country)")
    sweep_fractions: list[float] = Field(default_factory=lambda: list(DEFAULT_SWEEP_FRACTIONS),
                                         description="CLIP-score top fractions of the threshold sweep")
    correction: Literal["holm", "bh"] = Field(
        "holm", description="p-value correction across the groups of a step × mode × attribute: Holm (family-wise "
                            "error) or Benjamini-Hochberg (false discovery rate)")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of significant_below_four_fifths "
                                                       "(one-sided, after the correction)")
    top_words: int = Field(50, ge=0, description="most frequent caption words paired with gender terms")
    device: str = Field("auto", description="device of the perceived-attribute probe")
    duckdb_memory_limit: str = Field(cell_counts.DEFAULT_MEMORY_LIMIT,
                                     description="memory DuckDB may use for the counts before it spills to disk")

    @field_validator("sweep_fractions")
    @classmethod
    def _fractions_in_range(cls, value: list[float]) -> list[float]:
        bad = [f for f in value if not 0 < f <= 1]
        if bad:
            raise ValueError(f"sweep fractions must lie in (0, 1], got {bad}")
        return sorted(set(value))


def build_signals(run_dir: str | os.PathLike, options: AuditOptions, map_parts: MapParts = serial_map) -> dict:
    """signals/groups always; signals/perceived when asked (imported here: it loads a CLIP model)."""
    from audit.signals import build_group_signals

    counts = {"groups": build_group_signals(run_dir, map_parts=map_parts)}
    if options.perceived:
        from audit.perceived import build_perceived_signals

        counts["perceived"] = build_perceived_signals(run_dir, device=options.device)
    return counts


def _choose_attributes(available: list[str], columns: list[str], requested: Optional[list[str]]) -> list[str]:
    if requested is None:
        if not available:
            raise ValueError("signals/groups has no categorical attribute columns to audit")
        return available
    missing = [a for a in requested if a not in columns]
    if missing:
        raise ValueError(f"attributes {missing} are not columns of signals/groups; available: {available}")
    return list(requested)


def _group_view(con, run_dir, perceived: bool) -> list[str]:
    """The view audit_groups (signals/groups, joined with signals/perceived when asked); its attribute columns."""
    require_views(con, run_dir, "groups")
    schema = cell_counts.table_schema(run_dir, "groups")
    attributes = categorical_columns(schema)
    if perceived:
        from audit.perceived import SIGNAL_COLUMNS  # its status, error and model columns are no groups

        require_views(con, run_dir, "perceived")
        extra = [c for c in SIGNAL_COLUMNS if c in cell_counts.columns_of(con, "perceived")]
        cols = ", ".join(f"p.{cell_counts.quote(c)}" for c in extra)
        con.execute(f"create view audit_groups as select g.*{', ' + cols if cols else ''} from groups g "
                    "left join (select * from perceived) p using (uid)")
        attributes += extra
    else:
        con.execute("create view audit_groups as select * from groups")
    return attributes


def _caption_batches(con, run_dir, has_download: bool, gender_sql: str):
    """Re-iterable batches of (caption, gender_terms, downloaded, kept) streamed from DuckDB: part by part when the
    decisions, pairs and groups parts line up (the filter wrote decisions part by part), so that each join holds one
    part; otherwise one query over the whole run, whose joins DuckDB bounds with its memory limit."""
    downloaded = "coalesce(d.pass_download, false)" if has_download else "true"
    select = (f"select p.caption, {gender_sql} as gender, {downloaded} as downloaded, "
              "coalesce(d.kept, false) as kept ")
    aligned = _aligned_caption_parts(run_dir) if gender_sql == 'g."gender_terms"' else None
    if aligned is None:
        queries = [select + "from decisions d join (select distinct uid, caption from pairs) p using (uid) "
                   "left join audit_groups g using (uid)"]
    else:
        queries = [select + f"from read_parquet({tables.sql_file_list([d])}) d "
                   f"join read_parquet({tables.sql_file_list([p])}) p using (uid) "
                   f"left join read_parquet({tables.sql_file_list([g])}) g using (uid)" for d, p, g in aligned]

    def batches():
        for sql in queries:
            # a relation streams its batches; an executed result would be copied whole first
            for record in con.sql(sql).to_arrow_reader(BATCH_ROWS):
                cols = record.to_pydict()
                yield Batch(cols["caption"], pd.array(cols["gender"], dtype="object").to_numpy(),
                            {"downloaded": pd.array(cols["downloaded"], dtype=bool).to_numpy(),
                             "kept": pd.array(cols["kept"], dtype=bool).to_numpy()})

    return batches


def _aligned_caption_parts(run_dir) -> list[tuple] | None:
    """(decisions part, pairs part, groups part) per part name when the three tables have the same parts with the same
    row counts (each decides, describes and holds the same rows); None otherwise."""
    import pyarrow.parquet as pq

    decisions = tables.decision_parts(run_dir)
    if not decisions:
        return None
    by_name = {name: {p.name: p for p in tables.list_parts(run_dir, name)} for name in ("pairs", "groups")}
    names = [p.name for p in decisions]
    if any(sorted(by_name[t]) != sorted(names) for t in by_name):
        return None
    aligned = [(d, by_name["pairs"][d.name], by_name["groups"][d.name]) for d in decisions]
    for triple in aligned:
        if len({pq.ParquetFile(path).metadata.num_rows for path in triple}) != 1:
            return None
    return aligned


def write_audit_tables(run_dir: str | os.PathLike, options: AuditOptions) -> dict:
    """The audit tables from the signals already in the run folder; returns the counts the CLI records."""
    con = cell_counts.connect(run_dir, options.duckdb_memory_limit)
    require_views(con, run_dir, "decisions")
    attributes = _choose_attributes(_group_view(con, run_dir, options.perceived),
                                    cell_counts.columns_of(con, "audit_groups"), options.attributes)
    decision_columns = cell_counts.columns_of(con, "decisions")
    steps = step_names(decision_columns)
    if "kept" not in decision_columns:
        raise ValueError("decisions has no `kept` column; rerun `fairsift filter`")
    cell_counts.check_unique_uids(con, "decisions", "decisions")
    cell_counts.check_unique_uids(con, "audit_groups", "signals/groups")
    group_columns = cell_counts.columns_of(con, "audit_groups")

    tables: dict[str, pd.DataFrame] = {}
    with tqdm(total=len(attributes) + 4, desc="audit", unit="table", file=sys.stderr, disable=None) as bar:
        cubes = []
        for attribute in attributes:
            # a step that was not evaluated for a row (null) does not pass it: the conservative reading
            cubes.append(cell_counts.cube_from_sql(con, steps, attribute, groups="audit_groups"))
            bar.update(1)
        tables["composition"] = composition_from_cubes(cubes, options.min_count)
        tables["filter_impact"] = impact_from_cubes(cubes, min_count=options.min_count,
                                                    correction=options.correction, alpha=options.alpha)
        tables["geo_agreement"] = _geo_agreement(con, group_columns, "download" in steps, options.min_count)
        bar.update(1)
        if "gender_terms" in group_columns and "pairs" in cell_counts.views(con):
            tables["cooccurrence"] = cooccurrence_from_batches(
                _caption_batches(con, run_dir, "download" in steps, 'g."gender_terms"'), ["downloaded", "kept"],
                top_words=options.top_words, min_count=options.min_count, n_boot=options.n_boot, seed=options.seed)
        else:
            tables["cooccurrence"] = empty_frame(COOCCURRENCE_EXTRA)
        bar.update(1)
        tables["threshold_sweep"] = _sweep(con, attributes, options)
        tables["findings"] = build_findings(tables["filter_impact"], options.min_count, filter_step_options(run_dir))
        bar.update(1)
        for analysis in ANALYSES:
            write_audit_table(run_dir, analysis, tables[analysis])
        bar.update(1)

    impact = tables["filter_impact"]
    return {
        "attributes": ", ".join(attributes),
        "steps": ", ".join(steps),
        "rows": {analysis: len(tables[analysis]) for analysis in ANALYSES},
        "min_count": options.min_count,
        "low_n_cells": int(sum(int(t["flag_low_n"].sum()) for t in tables.values() if "flag_low_n" in t)),
        # each population once: the sequential rows of the download step and the step after it repeat the marginal
        "below_four_fifths": distinct_flags(impact, "below_four_fifths"),
        "significant_below_four_fifths": distinct_flags(impact, "significant_below_four_fifths"),
        "correction": options.correction,
        "n_boot": options.n_boot,
    }


def filter_step_options(run_dir) -> dict[str, dict]:
    """Each filter step's options as the run's manifest records them (e.g. the CLIP fraction), for the sentences."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "manifest.json"
    try:
        config = (json.loads(path.read_text()).get("config") or {}).get("filter") or {}
    except (OSError, ValueError):
        return {}
    return {s.get("name"): s for s in config.get("steps", []) if isinstance(s, dict)}


def _geo_agreement(con, group_columns: list[str], has_download: bool, min_count: int) -> pd.DataFrame:
    cctld = [c for c in ("page_cctld_country", "url_cctld_country") if c in group_columns]
    if "caption_country" not in group_columns or not cctld:
        return geo_agreement_from_pairs(pd.DataFrame(columns=["a", "b", "n"]), min_count=min_count)
    domain = "coalesce(" + ", ".join(f"g.{c}" for c in cctld) + ")" if len(cctld) > 1 else f"g.{cctld[0]}"
    where = "coalesce(d.pass_download, false)" if has_download else "true"
    pairs = cell_counts.pair_counts_sql(con, domain, "g.caption_country", where, groups="audit_groups")
    return geo_agreement_from_pairs(pairs, "downloaded", min_count)


def _sweep(con, attributes: list[str], options: AuditOptions) -> pd.DataFrame:
    from audit.frame import concat_rows

    if "clip" not in cell_counts.views(con):
        return empty_frame()
    fractions = list(options.sweep_fractions)
    boundaries = boundaries_from_sql(con, fractions, "clip")
    return concat_rows([sweep_rows(cell_counts.sweep_counts_sql(con, a, boundaries, groups="audit_groups"),
                                   boundaries, fractions, a, options.min_count) for a in attributes])


def run_audit(run_dir: str | os.PathLike, options: AuditOptions | None = None, *,
              map_parts: MapParts = serial_map) -> dict:
    """`fairsift audit RUN`: build the group signals (and perceived ones when asked), then every audit table."""
    options = options or AuditOptions()
    signal_counts = build_signals(run_dir, options, map_parts)
    counts = write_audit_tables(run_dir, options)
    counts["signals"] = {name: _summary(value) for name, value in signal_counts.items()}
    perceived = signal_counts.get("perceived")
    if isinstance(perceived, dict):
        # the zero-shot prompts and model behind every perceived_* column belong in the manifest itself
        for key in ("perceived_prompts", "perceived_model"):
            if key in perceived:
                counts[key] = perceived[key]
    return counts


def _summary(value) -> object:
    """A stage's count dict flattened to one line for the manifest's nested signals entry."""
    if isinstance(value, dict):
        # what one invocation did (parts computed now) is not a fact of the table: left out, so a resumed audit
        # records the same line as an uninterrupted one
        return ", ".join(f"{k}={v}" for k, v in value.items()
                         if not isinstance(v, (dict, list)) and not k.startswith("parts_"))
    return value
