"""The run's faiss index over signals/embeddings, built once and reused until the embeddings change.

RUN/search_index/ holds, per modality (`image`, `text`), `<modality>.faiss` (the index; ids are row numbers),
`<modality>_uids.parquet` (the uid of each row number) and `<modality>.json`, which records what the index was
built from: the content
digest of every embeddings part (curate.parts), the model that made the embeddings, the faiss factory string, the
row count and the dimension. An index whose recorded parts differ from the current ones (a rescore, another model, a
re-download) is rebuilt before it answers, so a search never reads stale vectors.

Vectors are the stored float16 unit vectors as float32, normalised again, so inner product is cosine. Up to
EXACT_MAX_ROWS rows the index is exact (`Flat`, inner product: every row compared); above it, `IVF<nlist>,Flat`
with nlist ~ 4 sqrt(n), trained on a sample and searched with nprobe = NPROBE, which trades a little recall for
speed. The factory can be forced with `factory=`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate import tables
from curate.layout import SEARCH_INDEX_DIR
from curate.parts import part_digest, temp_path

MODALITIES = ("image", "text")
EXACT_MAX_ROWS = 1_000_000
NPROBE = 32
TRAIN_SAMPLE = 200_000
MODEL_METADATA_KEY = b"fairsift.model"  # written by the score stage in each embeddings part's footer


@dataclass
class SearchIndex:
    index: object  # faiss.Index
    uids: list[str]
    record: dict
    rebuilt: bool


def index_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / SEARCH_INDEX_DIR


def embedding_parts(run_dir: Path) -> dict[str, str]:
    """relative path -> content digest of every embeddings part."""
    return {str(p.relative_to(run_dir)): part_digest(p) for p in tables.list_parts(run_dir, "embeddings")}


def embeddings_model(run_dir: Path) -> Optional[str]:
    """The model id the score stage recorded in the embeddings parts (None when unrecorded)."""
    models = set()
    for path in tables.list_parts(run_dir, "embeddings"):
        meta = pq.read_schema(path).metadata or {}
        if MODEL_METADATA_KEY in meta:
            models.add(meta[MODEL_METADATA_KEY].decode())
    return "; ".join(sorted(models)) if models else None


def read_vectors(run_dir: Path, modality: str) -> tuple[list[str], np.ndarray]:
    """(uids, float32 unit vectors [n, dim]) of one modality, part by part."""
    column = f"{modality}_embedding"
    uids: list[str] = []
    blocks: list[np.ndarray] = []
    for path in tables.list_parts(run_dir, "embeddings"):
        part = pq.read_table(path, columns=["uid", column])
        if part.num_rows == 0:
            continue
        values = part.column(column).combine_chunks()
        flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
        blocks.append(flat.reshape(part.num_rows, -1))
        uids += part.column("uid").to_pylist()
    if not blocks:
        return [], np.zeros((0, 0), np.float32)
    vectors = np.ascontiguousarray(np.concatenate(blocks))
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms > 0, norms, 1.0)
    return uids, vectors


def default_factory(n: int) -> str:
    if n <= EXACT_MAX_ROWS:
        return "Flat"
    return f"IVF{int(4 * math.sqrt(n))},Flat"


def build(vectors: np.ndarray, factory: str):
    import faiss

    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        rng = np.random.default_rng(0)
        sample = vectors[rng.choice(len(vectors), size=min(len(vectors), TRAIN_SAMPLE), replace=False)]
        index.train(sample)
    index.add(vectors)
    if hasattr(index, "nprobe"):
        index.nprobe = NPROBE
    return index


def load_or_build(run_dir: str | Path, modality: str = "image", factory: Optional[str] = None) -> SearchIndex:
    """The current index of one modality: the stored one when it was built from the current embeddings parts,
    else a new one (stored for the next search)."""
    import faiss

    run_dir = Path(run_dir)
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; one of {', '.join(MODALITIES)}")
    if not tables.table_exists(run_dir, "embeddings"):
        raise tables.MissingTableError(run_dir, "embeddings")
    folder = index_dir(run_dir)
    record_path = folder / f"{modality}.json"
    parts = embedding_parts(run_dir)
    recorded = json.loads(record_path.read_text()) if record_path.is_file() else None
    index_path, uids_path = folder / f"{modality}.faiss", folder / f"{modality}_uids.parquet"
    if recorded is not None and recorded.get("built_from") == parts and (factory in (None, recorded.get("factory"))) \
            and index_path.is_file() and uids_path.is_file():
        index = faiss.read_index(str(index_path))
        if hasattr(index, "nprobe"):
            index.nprobe = NPROBE
        return SearchIndex(index, pq.read_table(uids_path).column("uid").to_pylist(), recorded, rebuilt=False)

    start = time.perf_counter()
    uids, vectors = read_vectors(run_dir, modality)
    if not uids:
        raise ValueError(f"signals/embeddings in {run_dir} holds no vectors (no image was scored): nothing to search")
    chosen = factory or default_factory(len(uids))
    index = build(vectors, chosen)
    record = {"modality": modality, "built_from": parts, "model": embeddings_model(run_dir), "factory": chosen,
              "rows": len(uids), "dim": int(vectors.shape[1]), "metric": "inner product of unit vectors (cosine)",
              "build_seconds": round(time.perf_counter() - start, 3)}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _atomic(index_path, lambda tmp: faiss.write_index(index, str(tmp)))
        _atomic(uids_path, lambda tmp: pq.write_table(pa.table({"uid": pa.array(uids, pa.string())}), tmp))
        _atomic(record_path, lambda tmp: tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n"))
    except OSError as exc:  # a read-only run folder still answers; the index is built again next time
        record["not_stored"] = f"{type(exc).__name__}: {exc}"
    return SearchIndex(index, uids, record, rebuilt=True)


def _atomic(path: Path, write) -> None:
    tmp = temp_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
