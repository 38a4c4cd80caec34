"""Results of one part -> its shards table: every pairs row once, in pairs order, the contract columns first, then
img2dataset's own columns (`key`, `exif`) and `error_kind` (the failure kind the stage summary counts)."""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import Optional

import pyarrow as pa

from curate.schemas import SHARDS, conform

SHARDS_COLUMNS = SHARDS.append(pa.field("key", pa.string())).append(pa.field("exif", pa.string())).append(
    pa.field("error_kind", pa.string()))
IMG2DATASET_SAMPLES_PER_SHARD = 10_000  # img2dataset's defaults: 4 digits of sample number ...
IMG2DATASET_OOM_SHARD_COUNT = 5  # ... after 5 digits of shard number: 9-digit keys


@dataclass
class RowResult:
    status: str
    error_message: Optional[str] = None
    error_kind: Optional[str] = None
    image: Optional[bytes] = None
    width: Optional[int] = None
    height: Optional[int] = None
    original_width: Optional[int] = None
    original_height: Optional[int] = None
    sha256: Optional[str] = None
    exif: Optional[str] = None


def shard_id(part_name: str) -> int:
    """The number in 'part-00042.parquet' (img2dataset's shard id); a stable hash for names without one."""
    match = re.search(r"(\d+)", part_name)
    return int(match.group(1)) if match else zlib.crc32(part_name.encode()) % 10**IMG2DATASET_OOM_SHARD_COUNT


def img2dataset_keys(part_name: str, n_rows: int) -> list[str]:
    """Keys as img2dataset forms them (downloader.compute_key): shard id, then the row's number in the shard,
    zero-padded to 5 + 4 digits. A part of more than 10,000 rows gets as many sample digits as it needs (its keys are
    then longer, and still unique as strings)."""
    oom_samples = max(math.ceil(math.log10(IMG2DATASET_SAMPLES_PER_SHARD)), math.ceil(math.log10(max(n_rows, 1))))
    width = oom_samples + IMG2DATASET_OOM_SHARD_COUNT
    base = shard_id(part_name) * 10**oom_samples
    return [f"{base + row:0{width}d}" for row in range(n_rows)]


def shards_table(pairs: pa.Table, results: list[RowResult], part_name: str) -> pa.Table:
    if len(results) != pairs.num_rows or any(r is None for r in results):
        raise RuntimeError(f"{part_name}: download results do not cover each pairs row exactly once")  # a bug
    columns = {name: pairs.column(name) for name in ("uid", "url", "caption")}
    for field in SHARDS_COLUMNS:
        if field.name not in columns and field.name != "key":
            columns[field.name] = pa.array([getattr(r, field.name) for r in results], field.type)
    columns["key"] = pa.array(img2dataset_keys(part_name, pairs.num_rows), pa.string())
    table = pa.table({f.name: columns[f.name] for f in SHARDS_COLUMNS})
    return conform(table, SHARDS_COLUMNS)
