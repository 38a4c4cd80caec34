"""webdataset tars: one sample per row, `<key>.jpg`, `<key>.txt` and `<key>.json`, written under a temporary name
and renamed, with a fixed mtime and owner so that the same rows give byte-identical tars."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path
from typing import Callable, Iterable
from curate.parts import temp_path


def write_tar(samples: Iterable[dict], tar_path: Path) -> int:
    """samples: {"__key__": str, "<ext>": bytes, ...}; returns how many were written."""
    import webdataset as wds

    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(tar_path)
    n = 0
    try:
        with open(tmp, "wb") as f:
            writer = wds.TarWriter(f, encoder=False, mtime=0.0, user="fairsift", group="fairsift",
                                   format=tarfile.USTAR_FORMAT)
            for sample in samples:
                writer.write(sample)
                n += 1
            writer.close()
        os.replace(tmp, tar_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return n


def json_safe(value):
    """Parquet values as JSON: bytes are left out by the callers, floats stay floats, everything else as text."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return str(value)


def samples(rows: Iterable[dict], key: Callable[[dict], str], image: Callable[[dict], bytes],
            meta: Callable[[dict], dict], encode_format: str = "jpg", indent=None, ensure_ascii: bool = False
            ) -> Iterable[dict]:
    for row in rows:
        yield {"__key__": key(row), encode_format: image(row) or b"",
               "txt": (row.get("caption") or "").encode("utf-8"),
               "json": json.dumps(json_safe(meta(row)), ensure_ascii=ensure_ascii, indent=indent).encode("utf-8")}
