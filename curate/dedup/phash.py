"""Perceptual hashes of the downloaded images: RUN/signals/phash/, one part per shards part, in a process pool.

The hash is `imagehash.phash(image, hash_size=8)` packed into a uint64: the 64 bits in the order imagehash gives
them (row-major over its 8x8 grid), the first bit the most significant, so `hex(value)` equals `str(imagehash)`.
"""

from __future__ import annotations

import io
import os
import sys
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from curate import tables
from curate.schemas import PHASH, STATUS_SUCCESS

HASH_SIZE = 8
BATCH_SIZE = 64  # images per task sent to a worker: large enough to hide the pickling round trip
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


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


def phash_batch(images: Sequence[bytes | None]) -> list[int | None]:
    """Worker task: hash a batch of encoded images."""
    return [phash_of_bytes(data) for data in images]


def default_workers() -> int:
    return os.cpu_count() or 1


@contextmanager
def worker_pool(workers: int | None = None) -> Iterator[Executor]:
    with ProcessPoolExecutor(max_workers=workers or default_workers()) as pool:
        yield pool


def phash_files(paths: Sequence[str]) -> list[int | None]:
    """Worker task: hash a batch of image files (read in the worker, so big folders never sit in memory)."""
    return [phash_of_bytes(Path(p).read_bytes()) for p in paths]


def hash_many(items: Sequence, pool: Executor, progress: tqdm | None = None, task=phash_batch) -> list[int | None]:
    """Hash encoded images (or, with task=phash_files, image paths) in the pool, results in input order."""
    batches = [items[i : i + BATCH_SIZE] for i in range(0, len(items), BATCH_SIZE)]
    hashes: list[int | None] = []
    for batch, result in zip(batches, pool.map(task, batches)):
        hashes.extend(result)
        if progress is not None:
            progress.update(len(batch))
    return hashes


def _success_rows(shards_part: Path) -> pa.Table:
    part = tables.read_part(shards_part, columns=["uid", "status", "image"])
    return part.filter(pc.equal(part.column("status"), STATUS_SUCCESS))


def _pending_parts(run_dir: Path) -> list[Path]:
    """Shards parts whose phash part is missing or no longer matches their successful rows."""
    pending = []
    for shards_part in tables.list_parts(run_dir, "shards"):
        status = tables.read_part(shards_part, columns=["uid", "status"])
        expected = status.filter(pc.equal(status.column("status"), STATUS_SUCCESS)).column("uid")
        if not tables.part_matches(tables.part_path(run_dir, "phash", shards_part.name), expected):
            pending.append(shards_part)
    return pending


def compute_phashes(run_dir: str | os.PathLike, *, workers: int | None = None) -> dict:
    """Write signals/phash/ for every shards part that has no phash part yet; returns counts of parts."""
    run_dir = Path(run_dir)
    shard_parts = tables.list_parts(run_dir, "shards")
    if not shard_parts:
        raise tables.MissingTableError(run_dir, "shards")
    pending = _pending_parts(run_dir)
    if pending:
        total = sum(pc.sum(pc.equal(tables.read_part(p, ["status"]).column("status"), STATUS_SUCCESS)).as_py() or 0
                    for p in pending)
        with worker_pool(workers) as pool, tqdm(total=total, desc="pHash", unit="img", file=sys.stderr) as bar:
            for shards_part in pending:
                rows = _success_rows(shards_part)
                hashes = hash_many(rows.column("image").to_pylist(), pool, bar)
                out = pa.table({"uid": rows.column("uid"), "phash": pa.array(hashes, type=pa.uint64())}, schema=PHASH)
                tables.write_part(run_dir, "phash", shards_part.name, out)
    return {"parts": len(shard_parts), "parts_hashed": len(pending)}


def read_phashes(run_dir: str | os.PathLike) -> pa.Table:
    """The phash table aligned with shards' success rows, checking that each part matches its shards part."""
    run_dir = Path(run_dir)
    aligned = []
    for shards_part in tables.list_parts(run_dir, "shards"):
        phash_part = tables.part_path(run_dir, "phash", shards_part.name)
        if not phash_part.exists():
            raise tables.MissingTableError(run_dir, "phash")
        status = tables.read_part(shards_part, columns=["uid", "status"])
        expected = status.filter(pc.equal(status.column("status"), STATUS_SUCCESS)).column("uid")
        hashed = tables.read_part(phash_part, columns=["uid", "phash"])
        if not hashed.column("uid").equals(expected):
            raise ValueError(
                f"{phash_part} does not match {shards_part} (different uids); delete it and rerun `fairsift dedup`"
            )
        aligned.append(hashed)
    return pa.concat_tables(aligned) if aligned else pa.table({"uid": [], "phash": []}, schema=PHASH)


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


def hash_folder(folder: str | os.PathLike, pool: Executor | None = None) -> tuple[list[str], np.ndarray, list[str]]:
    """pHashes of a folder's images: (relative names, uint64 hashes, relative names that did not decode)."""
    root = Path(folder)
    files = image_files(root)
    names = [p.relative_to(root).as_posix() for p in files]
    paths = [str(p) for p in files]
    hashes = hash_many(paths, pool, task=phash_files) if pool is not None else phash_files(paths)
    ok = [h is not None for h in hashes]
    good_names = [n for n, keep in zip(names, ok) if keep]
    failed = [n for n, keep in zip(names, ok) if not keep]
    values = np.array([h for h in hashes if h is not None], dtype=np.uint64)
    return good_names, values, failed
