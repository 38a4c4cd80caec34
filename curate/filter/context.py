"""What the filter steps read for ONE shards part: its rows, and the signals aligned to them by uid.

Signal tables are written one part per shards part with the same part name (signals/clip/part-00003.parquet belongs
to shards/part-00003.parquet), so a part reads only its own signal parts. A signal table written some other way (one
file for the whole run, parts cut differently) still works: its rows for this part's uids are picked out of all its
parts, which is slower but gives the same decisions.

Global facts a step needs (the CLIP top-fraction cut, parity's per-group cuts) come in `prepared`, computed once per
run by the step's global step before any part is decided.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from curate import tables
from curate.filter.language_id import detect_languages

SHARD_COLUMNS = ["uid", "caption", "status", "width", "height", "original_width", "original_height"]
LANG_SCHEMA = pa.schema([("uid", pa.string()), ("language", pa.string()), ("language_prob", pa.float32()),
                         ("detector", pa.string())])


def signal_inputs(run_dir: str | Path, table: str, part_name: str) -> list[str]:
    """Run-relative paths a part reads of a signal table: its aligned part, or else every part of the table."""
    run_dir = Path(run_dir)
    aligned = tables.part_path(run_dir, table, part_name)
    if aligned.is_file():
        return [str(aligned.relative_to(run_dir))]
    return [str(p.relative_to(run_dir)) for p in tables.list_parts(run_dir, table)]


def read_signal(run_dir: str | Path, table: str, part_name: str, uids: Sequence[str],
                columns: Optional[list[str]] = None) -> Optional[pa.Table]:
    """The signal table's rows for this part (None when the run has no such table)."""
    run_dir = Path(run_dir)
    aligned = tables.part_path(run_dir, table, part_name)
    if aligned.is_file():
        available = pq.read_schema(aligned).names
        return pq.read_table(aligned, columns=[c for c in columns if c in available] if columns else None)
    parts = tables.list_parts(run_dir, table)
    if not parts:
        return None
    dataset = ds.dataset([str(p) for p in parts], format="parquet")
    wanted = [c for c in columns if c in dataset.schema.names] if columns else None
    return dataset.to_table(columns=wanted, filter=pc.field("uid").isin(pa.array(list(uids), pa.string())))


class FilterContext:
    def __init__(self, run_dir: str | Path, part_name: str, prepared: Optional[dict] = None):
        self.run_dir = Path(run_dir)
        self.part_name = part_name
        self.prepared = prepared or {}
        path = tables.part_path(self.run_dir, "shards", part_name)
        # the image column is never read: decisions need only captions, statuses and sizes
        available = pq.read_schema(path).names
        missing = [c for c in ("uid", "caption", "status") if c not in available]
        if missing:
            raise ValueError(f"{path}: shards part lacks columns {missing}")
        shards = pq.read_table(path, columns=[c for c in SHARD_COLUMNS if c in available])
        self.rows: pd.DataFrame = shards.to_pandas()
        for col in SHARD_COLUMNS:
            if col not in self.rows:
                self.rows[col] = None
        self.uids: np.ndarray = self.rows["uid"].to_numpy(dtype=object)
        self._index = pd.Index(self.uids)
        self._languages: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def align(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows of a uid-keyed frame in shards order; uids the frame lacks come back as NaN/None."""
        frame = frame.drop_duplicates("uid", keep="first").set_index("uid")
        return frame.reindex(self._index)

    def signal(self, table: str, columns: list[str], required: bool = True) -> Optional[pd.DataFrame]:
        found = read_signal(self.run_dir, table, self.part_name, self.uids.tolist(), ["uid", *columns])
        if found is None:
            if required:
                raise tables.MissingTableError(self.run_dir, table)
            return None
        return found.to_pandas()

    @cached_property
    def captions(self) -> list[str]:
        return [c if isinstance(c, str) else "" for c in self.rows["caption"].tolist()]

    @cached_property
    def clip_scores(self) -> np.ndarray:
        """clip_score per row as float64, NaN where the row has no score (failed image, not scored yet)."""
        clip = self.signal("clip", ["clip_score"])
        return self.align(clip)["clip_score"].to_numpy(dtype=np.float64, na_value=np.nan)

    @cached_property
    def dedup(self) -> pd.DataFrame:
        frame = self.signal("dedup", ["dup_of", "dup_kind", "eval_match"])
        return frame[[c for c in ("uid", "dup_of", "dup_kind", "eval_match") if c in frame.columns]]

    def groups(self, attribute: str) -> pd.Series:
        """The group signal `attribute` per row (None where the row has none), from signals/groups."""
        frame = self.signal("groups", [attribute])
        if attribute not in frame.columns:
            raise ValueError(f"group_parity attribute '{attribute}' is not a column of signals/groups; "
                             f"run `fairsift audit` to write it")
        return self.align(frame)[attribute]

    def image_sizes(self, use: str) -> tuple[np.ndarray, np.ndarray]:
        """(width, height) as float arrays, NaN where unknown; `use` is "original" or "resized"."""
        wcol, hcol = ("original_width", "original_height") if use == "original" else ("width", "height")
        width = pd.to_numeric(self.rows[wcol], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        height = pd.to_numeric(self.rows[hcol], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        return width, height

    @cached_property
    def languages(self) -> tuple[np.ndarray, np.ndarray]:
        """(language, probability) per row from the default detector (fastText lid.176, as DataComp)."""
        return self.languages_by("fasttext")

    def languages_by(self, detector: str) -> tuple[np.ndarray, np.ndarray]:
        """(language, probability) per row from this part's signals/lang (written before the steps run, by the
        detector the config's first language step names); rows it lacks, or holds from another detector, are
        detected here."""
        if detector in self._languages:
            return self._languages[detector]
        stored = self.signal("lang", ["language", "language_prob", "detector"], required=False)
        known = stored if stored is not None else pd.DataFrame(columns=LANG_SCHEMA.names)
        if "detector" not in known:  # written before the column existed: py3langid's verdicts
            known["detector"] = "py3langid"
        known = known[known["detector"] == detector]
        aligned = self.align(known[["uid", "language", "language_prob"]])
        missing = np.flatnonzero(aligned["language_prob"].isna().to_numpy())
        if len(missing):
            detected = detect_languages([self.captions[i] for i in missing], detector)
            aligned.iloc[missing, aligned.columns.get_loc("language")] = [d[0] for d in detected]
            aligned.iloc[missing, aligned.columns.get_loc("language_prob")] = [d[1] for d in detected]
        language = aligned["language"].to_numpy(dtype=object)
        prob = aligned["language_prob"].to_numpy(dtype=np.float64, na_value=0.0)
        self._languages[detector] = (language, prob)
        return language, prob


def language_table(uids: Sequence[str], captions: Sequence[Optional[str]], detector: str) -> pa.Table:
    """signals/lang rows for one part: every row's caption language, its probability and the detector."""
    detected = detect_languages([c if isinstance(c, str) else "" for c in captions], detector)
    return pa.Table.from_pydict({"uid": list(uids), "language": [d[0] for d in detected],
                                 "language_prob": [float(d[1]) for d in detected],
                                 "detector": [detector] * len(detected)}, schema=LANG_SCHEMA)
