"""The one shape of every audit result: a long table, one row per (analysis, step, attribute, group, metric).

Like fairlearn's MetricFrame flattened: `analysis`, `step` (nullable), `attribute`, `group`, `n`, `metric`, `value`,
`ci_low`, `ci_high` first (the contract in curate.schemas.AUDIT), then the columns a given analysis adds
(`population`, `mode`, `ratio`, `flag_low_n`, ...). Each analysis is written as RUN/audit/<analysis>.parquet.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curate.schemas import AUDIT, conform
from curate.tables import atomic_write_parquet

AUDIT_COLUMNS: list[str] = list(AUDIT.names)
MISSING_GROUP = "(missing)"  # label of rows whose signal is null: shown as its own group so shares sum to 1


def audit_rows(
    analysis: str,
    *,
    attribute,
    group,
    n,
    metric,
    value,
    ci_low=np.nan,
    ci_high=np.nan,
    step=None,
    **extra,
) -> pd.DataFrame:
    """Rows of an audit table from scalars or equal-length arrays (scalars are repeated), contract columns first."""
    columns = {
        "analysis": analysis,
        "step": step,
        "attribute": attribute,
        "group": group,
        "n": n,
        "metric": metric,
        "value": value,
        "ci_low": ci_low,
        "ci_high": ci_high,
        **extra,
    }
    lengths = {len(v) for v in columns.values() if isinstance(v, (list, tuple, np.ndarray, pd.Series, pd.Index))}
    if len(lengths) > 1:
        raise ValueError(f"audit_rows({analysis!r}): columns have different lengths {sorted(lengths)}")
    size = lengths.pop() if lengths else 1
    data = {}
    for name, v in columns.items():
        if isinstance(v, (pd.Series, pd.Index)):
            v = v.to_numpy()
        data[name] = v if isinstance(v, (list, tuple, np.ndarray)) else [v] * size
    frame = pd.DataFrame(data)
    frame["n"] = frame["n"].astype("int64")
    for col in ("value", "ci_low", "ci_high"):
        frame[col] = frame[col].astype("float64")
    return frame


def concat_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame()
    return pd.concat(frames, ignore_index=True)


def empty_frame(extra: dict[str, str] | None = None) -> pd.DataFrame:
    """An audit frame with no rows but the contract columns typed (and any extra columns, name -> pandas dtype)."""
    dtypes = {"analysis": "object", "step": "object", "attribute": "object", "group": "object", "n": "int64",
              "metric": "object", "value": "float64", "ci_low": "float64", "ci_high": "float64", **(extra or {})}
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in dtypes.items()})


def to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Arrow table in the contract's types: contract columns first, nulls kept (e.g. `step` of composition)."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    return conform(table, AUDIT)


def audit_path(run_dir: str | os.PathLike, analysis: str) -> Path:
    return Path(run_dir) / "audit" / f"{analysis}.parquet"


def write_audit_table(run_dir: str | os.PathLike, analysis: str, frame: pd.DataFrame) -> Path:
    """Write RUN/audit/<analysis>.parquet atomically; the file's name is the analysis, whatever rows it holds."""
    if len(frame) and set(frame["analysis"].unique()) != {analysis}:
        raise ValueError(f"audit table {analysis!r} holds rows of analyses {sorted(frame['analysis'].unique())}")
    return atomic_write_parquet(to_arrow(frame), audit_path(run_dir, analysis))


def read_audit_table(run_dir: str | os.PathLike, analysis: str) -> pd.DataFrame:
    path = audit_path(run_dir, analysis)
    if not path.exists():
        raise FileNotFoundError(f"audit table {path} not found; create it with `fairsift audit {run_dir}`")
    return pq.read_table(path).to_pandas()


def group_labels(values: pd.Series) -> pd.Series:
    """Group label of each row: the signal's value as text, or MISSING_GROUP where the signal is null."""
    labels = values.astype("object").where(values.notna(), MISSING_GROUP)
    return labels.map(str)
