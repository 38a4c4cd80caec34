"""What the audit reads: the run's decisions and group signals, as DuckDB views over every part (audit.counts),
never as one in-memory frame of the run. This module knows which columns are group attributes and checks inputs.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.types as pat

from curate.tables import MissingTableError

# columns of signals/groups that explain or cross-check another column rather than being a group attribute
GEO_HELPERS = ("caption_country", "page_cctld_country", "url_cctld_country")  # kept for the agreement table
HELPER_COLUMNS = frozenset({"uid", *GEO_HELPERS})
HELPER_SUFFIXES = ("_source",)  # provenance of another column, e.g. country_source


def categorical_columns(schema: pa.Schema | pa.Table) -> list[str]:
    """Columns that hold categories (text, dictionary or boolean), helper columns excepted."""
    schema = schema.schema if isinstance(schema, pa.Table) else schema
    names = []
    for field in schema:
        if field.name in HELPER_COLUMNS or field.name.endswith(HELPER_SUFFIXES):
            continue
        t = field.type
        if pat.is_string(t) or pat.is_large_string(t) or pat.is_dictionary(t) or pat.is_boolean(t):
            names.append(field.name)
    return names


def step_names(columns: list[str]) -> list[str]:
    """Filter steps in the order the filter ran them: the pass_<step> columns, left to right."""
    steps = [c[len("pass_"):] for c in columns if c.startswith("pass_")]
    if not steps:
        raise ValueError("decisions has no pass_<step> columns; rerun `fairsift filter`")
    return steps


def require_views(con, run_dir, *names: str) -> None:
    present = {r[0] for r in con.execute("select view_name from duckdb_views() where not internal").fetchall()}
    for name in names:
        if name not in present:
            raise MissingTableError(run_dir, name)
