"""One corpus part: the kept rows of one shards part, with img2dataset's columns and Hugging Face features.

Columns (in this order): `uid`, `key`, `url`, `caption`, `image`, then img2dataset's `status`, `error_message`,
`width`, `height`, `original_width`, `original_height`, `exif`, `sha256`, then `clip_score` and `clip_model` (the
model that made the score, which says "TEST MODEL" for the test model), then the pairs part's additional columns
(`--save-additional-columns` of ingest) and any other column the shards part carries.

- `key` is img2dataset's sample key: shards' own `key` when the download wrote one, else the key img2dataset gives
  the row at that place: the shard number (the part's number) in 5 digits, then the row in the part in 4 digits
  (more when a part holds more than 10,000 rows), e.g. part-00003 row 17 -> "000030017".
- `sha256` is img2dataset's hash of the ORIGINAL download (the bytes the server sent), not of the re-encoded `image`:
  two URLs serving the same file share it whatever the resize settings.
- `image` is stored as Hugging Face's Image layout, a struct {bytes: JPEG bytes, path: null}, and the file's schema
  carries the `huggingface` features metadata, so `datasets.load_dataset("parquet", ...)` returns an `Image` feature
  with no cast. pandas gives `{"bytes": ..., "path": None}`; DuckDB reads `image.bytes`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.schemas import PAIRS

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # datasets.Image's Arrow storage
ENCODE_FORMAT = "jpg"  # the download stage re-encodes every image as JPEG; img2dataset names the column after it
CORPUS = pa.schema(
    [
        ("uid", pa.string()),
        ("key", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("image", IMAGE_TYPE),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
        ("exif", pa.string()),
        ("sha256", pa.string()),
        ("clip_score", pa.float32()),
        ("clip_model", pa.string()),
    ]
)
FROM_SHARDS = [n for n in CORPUS.names if n not in ("key", "image", "exif", "clip_score", "clip_model")]
# shards columns about failures (null on every kept row): they stay in shards, not in the corpus
SHARDS_ONLY = ("error_kind",)
HF_METADATA_KEY = b"huggingface"
_HF_VALUE_DTYPES = {
    pa.string(): "string", pa.large_string(): "large_string", pa.binary(): "binary", pa.bool_(): "bool",
    pa.int8(): "int8", pa.int16(): "int16", pa.int32(): "int32", pa.int64(): "int64", pa.uint8(): "uint8",
    pa.uint16(): "uint16", pa.uint32(): "uint32", pa.uint64(): "uint64", pa.float16(): "float16",
    pa.float32(): "float32", pa.float64(): "float64",
}
_PART_NUMBER = re.compile(r"(\d+)")


def hf_features(schema: pa.Schema) -> dict:
    """Hugging Face `datasets` features for a schema: `image` as Image, plain columns as Value; other types are
    left out, and `datasets` infers them from Arrow."""
    features: dict = {}
    for field in schema:
        if field.name == "image" and field.type == IMAGE_TYPE:
            features[field.name] = {"_type": "Image"}
        elif field.type in _HF_VALUE_DTYPES:
            features[field.name] = {"dtype": _HF_VALUE_DTYPES[field.type], "_type": "Value"}
    return features


def with_hf_metadata(table: pa.Table) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta[HF_METADATA_KEY] = json.dumps({"info": {"features": hf_features(table.schema)}}).encode()
    return table.replace_schema_metadata(meta)


def part_number(name: str) -> int:
    """part-00003.parquet -> 3 (img2dataset's shard id of that part)."""
    found = _PART_NUMBER.search(name)
    return int(found.group(1)) if found else 0


def img2dataset_keys(shard_id: int, rows: list[int], rows_in_shard: int) -> list[str]:
    """img2dataset's compute_key: shard id then the row, zero-padded to oom_shard_count (5) + oom_sample_per_shard
    (ceil(log10(samples per shard)), 4 for its default 10,000) digits."""
    oom_sample = max(4, math.ceil(math.log10(max(rows_in_shard, 1))))
    width = 5 + oom_sample
    return [f"{(10 ** oom_sample) * shard_id + row:0{width}d}" for row in rows]


def read_kept_rows(shards_path: Path, kept_rows: list[int], batch_rows: int = 1024) -> tuple[pa.Table, int]:
    """The rows of a shards part at `kept_rows` (in that order), with the part's row count. Read batch by batch so
    that a part's images are never all decoded at once: only the kept ones are held (bench_memory's export peak)."""
    parquet = pq.ParquetFile(shards_path)
    wanted = np.asarray(kept_rows, dtype=np.int64)
    order = np.argsort(wanted, kind="stable")
    ascending = wanted[order]
    pieces, start = [], 0
    for batch in parquet.iter_batches(batch_size=batch_rows):
        end = start + batch.num_rows
        low, high = np.searchsorted(ascending, [start, end])
        if high > low:
            pieces.append(batch.take(pa.array(ascending[low:high] - start)))
        start = end
    if not pieces:
        return parquet.schema_arrow.empty_table(), parquet.metadata.num_rows
    table = pa.Table.from_batches(pieces)
    if not np.array_equal(order, np.arange(len(order))):
        table = table.take(pa.array(np.argsort(order, kind="stable")))  # back to the selection's order
    return table, parquet.metadata.num_rows


def corpus_table(kept: pa.Table, shard_name: str, kept_rows: list[int], rows_in_shard: int, clip_scores: list,
                 clip_models: list, pairs_extras: Optional[pa.Table]) -> pa.Table:
    """The corpus rows of one shards part from its kept rows (all of its columns read; read_kept_rows), which sit at
    `kept_rows` in a part of `rows_in_shard` rows."""
    n = kept.num_rows
    columns: dict[str, pa.Array] = {name: kept.column(name).cast(CORPUS.field(name).type) for name in FROM_SHARDS}
    if "key" in kept.column_names:
        columns["key"] = kept.column("key").cast(pa.string())
    else:
        columns["key"] = pa.array(img2dataset_keys(part_number(shard_name), kept_rows, rows_in_shard), pa.string())
    images = kept.column("image").combine_chunks().cast(pa.binary()) if n else pa.array([], pa.binary())
    columns["image"] = pa.StructArray.from_arrays([images, pa.nulls(n, pa.string())], fields=list(IMAGE_TYPE))
    columns["exif"] = (kept.column("exif").cast(pa.string()) if "exif" in kept.column_names
                       else pa.nulls(n, pa.string()))
    columns["clip_score"] = pa.array(clip_scores, pa.float32())
    columns["clip_model"] = pa.array(clip_models, pa.string())
    table = pa.table({name: columns[name] for name in CORPUS.names}, schema=CORPUS)
    for name in kept.column_names:  # other shards columns travel along (not the download's failure detail)
        if name not in CORPUS.names and name not in SHARDS_ONLY:
            table = table.append_column(name, kept.column(name))
    if pairs_extras is not None:
        table = _join_pairs_extras(table, pairs_extras)
    return with_hf_metadata(table)


def pairs_extra_columns(pairs_path: Path) -> list[str]:
    """The additional columns a pairs part carries (ingest's --save-additional-columns)."""
    return [n for n in pq.read_schema(pairs_path).names if n not in PAIRS.names]


def _join_pairs_extras(table: pa.Table, extras: pa.Table) -> pa.Table:
    """Columns of the pairs part beyond the contract, matched by uid (first row of a uid wins)."""
    names = [n for n in extras.column_names if n != "uid" and n not in table.column_names]
    if not names:
        return table
    index = pc.index_in(table.column("uid"), value_set=extras.column("uid").combine_chunks())
    for name in names:
        table = table.append_column(name, pc.take(extras.column(name), index))
    return table
