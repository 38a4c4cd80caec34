"""What the filter steps read: the shards rows (one per downloaded pair) and the signals aligned to them by uid.

Each signal is read once per filter run and cached here, so two steps that need the same signal (e.g. `basic` and
`language`) share it. Caption language is the one signal the filter computes itself; it is stored in signals/lang
so that a rerun, the audit and the dashboard reuse it instead of detecting it again.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from curate import tables
from curate.filter.language_id import detect_languages

SHARD_COLUMNS = ["uid", "caption", "status", "width", "height", "original_width", "original_height"]
LANG_SCHEMA = pa.schema([("uid", pa.string()), ("language", pa.string()), ("language_prob", pa.float32()),
                         ("detector", pa.string())])


class FilterContext:
    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        shards = tables.read_table(self.run_dir, "shards", columns=SHARD_COLUMNS)
        # the image column is never read: decisions need only captions, statuses and sizes
        self.rows: pd.DataFrame = shards.to_pandas()
        self.uids: np.ndarray = self.rows["uid"].to_numpy(dtype=object)
        self._index = pd.Index(self.uids)
        self._languages: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def align(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rows of a uid-keyed frame in shards order; uids the frame lacks come back as NaN/None."""
        frame = frame.drop_duplicates("uid", keep="first").set_index("uid")
        return frame.reindex(self._index)

    @cached_property
    def captions(self) -> list[str]:
        return [c if isinstance(c, str) else "" for c in self.rows["caption"].tolist()]

    @cached_property
    def clip_scores(self) -> np.ndarray:
        """clip_score per row as float64, NaN where the row has no score (failed image, not scored yet)."""
        clip = tables.read_table(self.run_dir, "clip", columns=["uid", "clip_score"]).to_pandas()
        scores = self.align(clip)["clip_score"].to_numpy(dtype=np.float64, na_value=np.nan)
        return scores

    @cached_property
    def dedup(self) -> pd.DataFrame:
        table = tables.read_table(self.run_dir, "dedup")
        wanted = [c for c in ("uid", "dup_of", "dup_kind", "eval_match") if c in table.column_names]
        return table.select(wanted).to_pandas()

    def image_sizes(self, use: str) -> tuple[np.ndarray, np.ndarray]:
        """(width, height) as float arrays, NaN where unknown; `use` is "original" or "resized"."""
        wcol, hcol = ("original_width", "original_height") if use == "original" else ("width", "height")
        width = self.rows[wcol].to_numpy(dtype=np.float64, na_value=np.nan)
        height = self.rows[hcol].to_numpy(dtype=np.float64, na_value=np.nan)
        return width, height

    @cached_property
    def languages(self) -> tuple[np.ndarray, np.ndarray]:
        """(language, probability) per row from the default detector (fastText lid.176, as DataComp)."""
        return self.languages_by("fasttext")

    def languages_by(self, detector: str) -> tuple[np.ndarray, np.ndarray]:
        """(language, probability) per row from signals/lang; rows it lacks, or holds from another detector, are
        detected now and stored (signals/lang holds one detector's verdicts, named in its `detector` column)."""
        if detector in self._languages:
            return self._languages[detector]
        stored = tables.read_table(self.run_dir, "lang", required=False)
        known = stored.to_pandas() if stored is not None else pd.DataFrame(columns=LANG_SCHEMA.names)
        if "detector" not in known:  # written before the column existed: py3langid's verdicts
            known["detector"] = "py3langid"
        known = known[known["detector"] == detector]
        aligned = self.align(known[["uid", "language", "language_prob"]])
        missing = np.flatnonzero(aligned["language_prob"].isna().to_numpy())
        if len(missing):
            detected = detect_languages([self.captions[i] for i in missing], detector)
            aligned.iloc[missing, aligned.columns.get_loc("language")] = [d[0] for d in detected]
            aligned.iloc[missing, aligned.columns.get_loc("language_prob")] = [d[1] for d in detected]
            lang_table = pa.Table.from_pydict(
                {
                    "uid": list(self.uids),
                    "language": aligned["language"].tolist(),
                    "language_prob": aligned["language_prob"].astype("float32").tolist(),
                    "detector": [detector] * len(self.uids),
                },
                schema=LANG_SCHEMA,
            )
            tables.write_table(self.run_dir, "lang", lang_table)
        language = aligned["language"].to_numpy(dtype=object)
        prob = aligned["language_prob"].to_numpy(dtype=np.float64, na_value=0.0)
        self._languages[detector] = (language, prob)
        return language, prob
