"""Perceptual hashes of the downloaded images: RUN/signals/phash/, one part per shards part.

`phash_part` is the per-part function (shards part -> phash part, written with its lineage: the shards part's digest
and the hash parameters); `compute_phashes` maps it over the parts that are not current with the engine's map_parts,
so a re-downloaded part is hashed again and an unchanged one never is.

The hash is `imagehash.phash(image, hash_size=8)` packed into a uint64: the 64 bits in the order imagehash gives
them (row-major over its 8x8 grid), the first bit the most significant, so `hex(value)` equals `str(imagehash)`.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import tables
from curate.parts import MapParts, PartTask, plan_tasks, remove_stale_outputs, serial_map
from curate.schemas import PHASH, STATUS_SUCCESS

HASH_SIZE = 8
FILES_PER_TASK = 256  # eval-set images hashed per task
READ_BATCH = 256  # shards rows decoded at a time: a part's images never sit in memory all at once
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
SHARDS_COLUMNS = ("uid", "url", "status", "sha256", "image")
# what shapes a phash part besides its shards part (its lineage)
PHASH_OPTIONS = {"hash": "imagehash.phash", "hash_size": HASH_SIZE, "rows": "status == success"}


def phash_of_image(image) -> int:
    """pHash of a PIL image as an int in 0..2**64-1 (see the module docstring for the bit order)."""
    import imagehash

    bits = imagehash.phash(image, hash_size=HASH_SIZE).hash.reshape(-1)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def phash_of_bytes(data: bytes | None) -> int | None:
    """pHash of encoded image bytes; None when they are missing or do not decode."""
    if not data:
        return None
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return phash_of_image(image)
    except Exception:  # any decoder error means "no hash" for this one image, never a failed run
        return None


def phash_files(paths: Sequence[str]) -> list[int | None]:
    """Task: hash a batch of image files (read in the worker, so big folders never sit in memory)."""
    return [phash_of_bytes(Path(p).read_bytes()) for p in paths]


def check_shards_part(path: Path) -> None:
    missing = [c for c in SHARDS_COLUMNS if c not in pq.read_schema(path).names]
    if missing:
        raise ValueError(f"{path}: shards part lacks columns {missing}")


def success_mask(status: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.equal(status, STATUS_SUCCESS).fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def phash_part(task: PartTask) -> dict:
    """Part function: the pHash of every successfully downloaded image of one shards part (null when it does not
    decode), one row per such row, in shards order."""
    shards_path = task.input_paths[0]
    check_shards_part(shards_path)
    uids, hashes = [], []
    for batch in pq.ParquetFile(shards_path).iter_batches(batch_size=READ_BATCH, columns=["uid", "status", "image"]):
        rows = batch.filter(pa.array(success_mask(batch.column("status"))))
        uids.append(rows.column("uid"))
        hashes.extend(phash_of_bytes(data) for data in rows.column("image").to_pylist())
    uid = pa.chunked_array(uids, type=pa.string()) if uids else pa.chunked_array([], type=pa.string())
    out = pa.table({"uid": uid, "phash": pa.array(hashes, type=pa.uint64())}, schema=PHASH)
    task.write(out.combine_chunks())
    return {"images": len(hashes), "phash_failed": sum(h is None for h in hashes)}


def phash_tasks(run_dir: Path) -> tuple[list[PartTask], list[PartTask]]:
    items = [(p.name, [f"shards/{p.name}"], [f"signals/phash/{p.name}"]) for p in tables.list_parts(run_dir, "shards")]
    return plan_tasks("phash", run_dir, items, PHASH_OPTIONS)


def compute_phashes(run_dir: str | os.PathLike, *, map_parts: MapParts = serial_map) -> dict:
    """Write signals/phash/ for every shards part whose phash part is missing or not current; returns counts."""
    run_dir = Path(run_dir)
    if not tables.list_parts(run_dir, "shards"):
        raise tables.MissingTableError(run_dir, "shards")
    todo, current = phash_tasks(run_dir)
    map_parts(phash_part, todo, desc="pHash")
    remove_stale_outputs(tables.table_path(run_dir, "phash"), [o for t in todo + current for o in t.outputs])
    return {"parts": len(todo) + len(current), "parts_hashed": len(todo)}


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files under a folder, recursively, sorted by relative path; hidden files and folders are skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"eval-set folder not found: {root}")
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in rel.parts):
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def hash_folder(folder: str | os.PathLike, map_parts: MapParts = serial_map) -> tuple[list[str], np.ndarray, list[str]]:
    """pHashes of a folder's images: (relative names, uint64 hashes, relative names that did not decode)."""
    root = Path(folder)
    files = image_files(root)
    names = [p.relative_to(root).as_posix() for p in files]
    paths = [str(p) for p in files]
    batches = [paths[i : i + FILES_PER_TASK] for i in range(0, len(paths), FILES_PER_TASK)]
    hashes = [h for batch in map_parts(phash_files, batches, desc="eval-set pHash") for h in batch]
    ok = [h is not None for h in hashes]
    good_names = [n for n, keep in zip(names, ok) if keep]
    failed = [n for n, keep in zip(names, ok) if not keep]
    values = np.array([h for h in hashes if h is not None], dtype=np.uint64)
    return good_names, values, failed
