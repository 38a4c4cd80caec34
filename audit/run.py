"""`fairsift audit RUN`: group signals, then the audit tables RUN/audit/<analysis>.parquet, all in the long format
of audit.frame: composition, cooccurrence, filter_impact, threshold_sweep and geo_agreement.
"""

from __future__ import annotations

import os
import sys
from typing import Literal, Optional

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm import tqdm

from audit.composition import composition, geo_agreement
from audit.cooccurrence import cooccurrence
from audit.cooccurrence import EXTRA as COOCCURRENCE_EXTRA
from audit.frame import empty_frame, write_audit_table
from audit.impact import DEFAULT_SWEEP_FRACTIONS, filter_impact, threshold_sweep
from audit.inputs import audit_frame, downloaded_mask, load_decisions, load_groups
from curate.parts import MapParts, serial_map
from curate.tables import read_table

ANALYSES = ("composition", "geo_agreement", "cooccurrence", "filter_impact", "threshold_sweep")


class AuditOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    perceived: bool = Field(False, description="also CLIP zero-shot perceived attributes (signals/perceived)")
    min_count: int = Field(30, ge=1, description="cells with fewer rows are flagged (flag_low_n), not hidden")
    n_boot: int = Field(1000, ge=0, description="bootstrap resamples for the filter-impact CIs and p-values")
    seed: int = 0
    attributes: Optional[list[str]] = Field(
        None, description="group columns to audit; default: every categorical column of signals/groups "
                          "except uid and helper columns (*_source, url_cctld_country, caption_country)")
    sweep_fractions: list[float] = Field(default_factory=lambda: list(DEFAULT_SWEEP_FRACTIONS),
                                         description="CLIP-score top fractions of the threshold sweep")
    correction: Literal["holm", "bh"] = Field(
        "holm", description="p-value correction across the groups of a step × mode × attribute: Holm (family-wise "
                            "error) or Benjamini-Hochberg (false discovery rate)")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of flag_four_fifths")
    top_words: int = Field(50, ge=0, description="most frequent caption words paired with gender terms")
    device: str = Field("auto", description="device of the perceived-attribute probe")

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


def _choose_attributes(available: list[str], groups: pd.DataFrame, requested: Optional[list[str]]) -> list[str]:
    if requested is None:
        if not available:
            raise ValueError("signals/groups has no categorical attribute columns to audit")
        return available
    missing = [a for a in requested if a not in groups.columns]
    if missing:
        raise ValueError(f"attributes {missing} are not columns of signals/groups; available: {available}")
    return list(requested)


def _with_column(frame: pd.DataFrame, run_dir, table: str, column: str) -> pd.DataFrame:
    values = read_table(run_dir, table, ["uid", column]).to_pandas().drop_duplicates("uid")
    # the signal's own table is the source of truth, not a copy the filter carried into decisions
    return frame.drop(columns=[column], errors="ignore").merge(values, on="uid", how="left", validate="one_to_one")


def write_audit_tables(run_dir: str | os.PathLike, options: AuditOptions) -> dict:
    """The audit tables from the signals already in the run folder; returns the counts the CLI records."""
    groups, available = load_groups(run_dir, perceived=options.perceived)
    attributes = _choose_attributes(available, groups, options.attributes)
    decisions, steps = load_decisions(run_dir)
    frame = audit_frame(decisions, groups, attributes)
    populations = {"downloaded": downloaded_mask(frame, steps), "kept": frame["kept"]}

    tables: dict[str, pd.DataFrame] = {}
    with tqdm(total=4 + 2 * len(steps), desc="audit", unit="table", file=sys.stderr) as bar:
        tables["composition"] = composition(frame, attributes, populations, options.min_count)
        tables["geo_agreement"] = geo_agreement(frame, populations["downloaded"], min_count=options.min_count)
        bar.update(1)
        if "gender_terms" in frame.columns:
            with_captions = _with_column(frame, run_dir, "pairs", "caption")
            tables["cooccurrence"] = cooccurrence(
                with_captions["caption"], with_captions["gender_terms"], populations,
                top_words=options.top_words, min_count=options.min_count)
        else:
            tables["cooccurrence"] = empty_frame(COOCCURRENCE_EXTRA)
        bar.update(1)
        tables["filter_impact"] = filter_impact(
            frame, steps, attributes, n_boot=options.n_boot, seed=options.seed, min_count=options.min_count,
            correction=options.correction, alpha=options.alpha, progress=bar.update)
        with_scores = _with_column(frame, run_dir, "clip", "clip_score")
        tables["threshold_sweep"] = threshold_sweep(with_scores, attributes, options.sweep_fractions,
                                                    options.min_count)
        bar.update(1)
        for analysis in ANALYSES:
            write_audit_table(run_dir, analysis, tables[analysis])
        bar.update(1)

    impact = tables["filter_impact"]
    return {
        "attributes": ", ".join(attributes),
        "steps": ", ".join(steps),
        "rows": {analysis: len(tables[analysis]) for analysis in ANALYSES},
        "low_n_cells": int(sum(int(t["flag_low_n"].sum()) for t in tables.values() if "flag_low_n" in t)),
        "four_fifths_violations": int(impact["flag_four_fifths"].sum()) if len(impact) else 0,
        "four_fifths_violations_sequential": int(impact.loc[impact["mode"] == "sequential",
                                                            "flag_four_fifths"].sum()) if len(impact) else 0,
        "correction": options.correction,
        "n_boot": options.n_boot,
    }


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
        return ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    return value
