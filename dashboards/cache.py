"""Cached access to runs: one DuckDB connection per run folder, query results cached by their arguments."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboards.queries import RunData


@st.cache_resource(show_spinner=False)
def run_data(run: str) -> RunData:
    return RunData(run)


@st.cache_data(show_spinner=False, max_entries=256)
def query(run: str, method: str, *args, **kwargs):
    """Cached call of a RunData method; the result must be picklable (DataFrames, dicts, lists)."""
    return getattr(run_data(run), method)(*args, **kwargs)


@st.cache_data(show_spinner=False, max_entries=64)
def audit_table(run: str, name: str) -> pd.DataFrame:
    return run_data(run).audit_table(name)
