"""Read one pairs part for the download, and decide which rows are not URLs we may request at all."""

from __future__ import annotations

from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import pyarrow as pa

from curate import tables

ALLOWED_SCHEMES = ("http", "https")
PAIRS_COLUMNS = ("uid", "url", "caption")


def read_pairs_part(path: str | Path) -> pa.Table:
    """uid, url, caption of a pairs part; a clear error naming the file when one is missing."""
    table = tables.read_part(path)
    missing = [c for c in PAIRS_COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: pairs table lacks column(s) {missing}; it needs uid, url and caption")
    return table.select(list(PAIRS_COLUMNS)).cast(
        pa.schema([("uid", pa.string()), ("url", pa.string()), ("caption", pa.string())]))


def invalid_url_reason(url: Optional[str]) -> Optional[str]:
    """Why this is not a URL to request, or None for a well-formed http(s) URL with a host."""
    if url is None or not url.strip():
        return "empty url"
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port out of range or not a number
    except ValueError as exc:
        return f"malformed url: {exc}"
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        if not parts.scheme:
            return "url has no scheme"
        return f"unsupported scheme {parts.scheme!r} (only http and https are downloaded)"
    if not parts.hostname:
        return "url has no host"
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return "url contains control characters"  # (a space is sent percent-encoded, as browsers do)
    return None
