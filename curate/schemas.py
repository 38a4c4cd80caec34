"""Arrow schemas of the contract tables (ARCHITECTURE.md). Stages may add columns; these are the ones others rely on."""

from __future__ import annotations

import pyarrow as pa

PAIRS = pa.schema(
    [
        ("uid", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("page_url", pa.string()),
        ("source", pa.string()),  # "html", "warc", "http", "ingest"
        ("caption_source", pa.string()),  # "alt", "figcaption", "title", "list"
        ("caption_truncated", pa.bool_()),
    ]
)

SHARDS = pa.schema(
    [
        ("uid", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("image", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
        ("sha256", pa.string()),
    ]
)

CLIP = pa.schema([("uid", pa.string()), ("clip_score", pa.float32()), ("model", pa.string())])

EMBEDDINGS = pa.schema(
    [
        ("uid", pa.string()),
        ("image_embedding", pa.list_(pa.float16())),
        ("text_embedding", pa.list_(pa.float16())),
    ]
)

PHASH = pa.schema([("uid", pa.string()), ("phash", pa.uint64())])

DEDUP = pa.schema([("uid", pa.string()), ("dup_of", pa.string()), ("dup_kind", pa.string())])

DUP_KINDS = ("url", "sha256", "phash", "semantic", "eval_set")

# shard statuses besides "success"; img2dataset's own failures keep its wording
STATUS_SUCCESS = "success"
STATUS_OPTED_OUT = "opted_out"  # X-Robots-Tag noai / noimageai
STATUS_PRIVATE_NETWORK = "blocked_private_network"
STATUS_INVALID_URL = "invalid_url"
STATUS_FAILED_DOWNLOAD = "failed_to_download"
STATUS_FAILED_RESIZE = "failed_to_resize"
STATUS_HOST_UNREACHABLE = "host_unreachable"  # not requested: the host's circuit breaker is open
STATUS_REFUSED_ROBOTS = "refused_robots"  # robots.txt disallows the URL for our user agent
STATUS_BLOCKED_DOMAIN = "blocked_domain"  # outside the allowed domains or inside a blocked one

AUDIT = pa.schema(
    [
        ("analysis", pa.string()),
        ("step", pa.string()),
        ("attribute", pa.string()),
        ("group", pa.string()),
        ("n", pa.int64()),
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("ci_low", pa.float64()),
        ("ci_high", pa.float64()),
    ]
)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Cast the contract columns to their types and put them first; extra columns are kept after them."""
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"table lacks contract columns {missing}")
    cols = [table.column(f.name).cast(f.type) for f in schema]
    extra = [n for n in table.column_names if n not in schema.names]
    return pa.Table.from_arrays(
        cols + [table.column(n) for n in extra], names=list(schema.names) + extra
    )


TEST_MODEL_MARKER = " — TEST MODEL"  # ends the model id of the tiny test model, in every table and manifest


def is_test_model_id(model_id: str) -> bool:
    """Does a model id (signals/clip's `model` column, the manifest's model.id) name the tiny test model?"""
    return TEST_MODEL_MARKER in model_id
