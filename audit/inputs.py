"""What the audit analyses read: the run's decisions joined with the group signals, one row per uid.

The analyses themselves take plain DataFrames, so they can be tested and benchmarked without a run folder.
"""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.types as pat

from curate.tables import read_table

# columns of signals/groups that explain or cross-check another column rather than being a group attribute
GEO_HELPERS = ("caption_country", "page_cctld_country", "url_cctld_country")  # kept for the agreement table
HELPER_COLUMNS = frozenset({"uid", *GEO_HELPERS})
HELPER_SUFFIXES = ("_source",)  # provenance of another column, e.g. country_source


def categorical_columns(table) -> list[str]:
    """Columns of an Arrow table that hold categories (text, dictionary or boolean), helper columns excepted."""
    names = []
    for field in table.schema:
        if field.name in HELPER_COLUMNS or field.name.endswith(HELPER_SUFFIXES):
            continue
        t = field.type
        if pat.is_string(t) or pat.is_large_string(t) or pat.is_dictionary(t) or pat.is_boolean(t):
            names.append(field.name)
    return names


def step_names(decisions: pd.DataFrame) -> list[str]:
    """Filter steps in the order the filter ran them: the pass_<step> columns, left to right."""
    steps = [c[len("pass_"):] for c in decisions.columns if c.startswith("pass_")]
    if not steps:
        raise ValueError("decisions.parquet has no pass_<step> columns; rerun `fairsift filter`")
    return steps


def load_groups(run_dir: str | os.PathLike, perceived: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """signals/groups (joined with signals/perceived when asked) and the names of its categorical attributes."""
    groups = read_table(run_dir, "groups")
    attributes = categorical_columns(groups)
    frame = groups.to_pandas()
    if perceived:
        from audit.perceived import SIGNAL_COLUMNS  # its status, error and model columns are no groups

        extra = read_table(run_dir, "perceived")
        perceived_attrs = [c for c in SIGNAL_COLUMNS if c in extra.column_names]
        frame = frame.merge(extra.select(["uid", *perceived_attrs]).to_pandas(), on="uid", how="left")
        attributes += perceived_attrs
    if frame["uid"].duplicated().any():
        dup = frame.loc[frame["uid"].duplicated(), "uid"].iloc[0]
        raise ValueError(f"signals/groups holds uid {dup} more than once")
    return frame, attributes


def load_decisions(run_dir: str | os.PathLike) -> tuple[pd.DataFrame, list[str]]:
    decisions = read_table(run_dir, "decisions").to_pandas()
    steps = step_names(decisions)
    if decisions["uid"].duplicated().any():
        dup = decisions.loc[decisions["uid"].duplicated(), "uid"].iloc[0]
        raise ValueError(f"decisions.parquet holds uid {dup} more than once; rerun `fairsift filter`")
    if "kept" not in decisions.columns:
        raise ValueError("decisions.parquet has no `kept` column; rerun `fairsift filter`")
    # a step that was not evaluated for a row (null) does not pass it: the conservative reading
    for step in steps:
        decisions[f"pass_{step}"] = decisions[f"pass_{step}"].fillna(False).astype(bool)
    decisions["kept"] = decisions["kept"].fillna(False).astype(bool)
    return decisions, steps


def audit_frame(decisions: pd.DataFrame, groups: pd.DataFrame, attributes: list[str]) -> pd.DataFrame:
    """decisions left-joined with the group columns; rows without signals get null groups (shown as '(missing)')."""
    keep = ["uid", *[a for a in attributes if a in groups.columns]]
    for helper in GEO_HELPERS:
        if helper in groups.columns and helper not in keep:
            keep.append(helper)
    # decisions carries helper columns of its own (e.g. the filter's `language`): the group signals win
    decisions = decisions.drop(columns=[c for c in keep if c != "uid" and c in decisions.columns])
    return decisions.merge(groups[keep], on="uid", how="left", validate="one_to_one")


def downloaded_mask(frame: pd.DataFrame, steps: list[str]) -> pd.Series:
    """Rows whose image downloaded: pass_download when the filter recorded that step, else every row."""
    return frame["pass_download"] if "download" in steps else pd.Series(True, index=frame.index)
