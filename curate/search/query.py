"""Nearest pairs of a run to a text, an image file or one of its own pairs (clip-retrieval's use of embeddings).

A text or image query is encoded with the model that made the run's embeddings (its manifest says how to load it;
`model=` overrides) and compared by cosine with the stored image embeddings (or text embeddings with
`against="text"`). A uid query uses that pair's own stored embedding and leaves the pair itself out of the answer.
`kept_only` keeps only pairs the filter kept. Results carry the caption, URL, clip_score and decision of each pair.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate import tables
from curate.layout import MANIFEST
from curate.schemas import is_test_model_id
from curate.search.index import SearchIndex, load_or_build

RESULT_SCHEMA = pa.schema([
    ("rank", pa.int32()), ("score", pa.float32()), ("uid", pa.string()), ("kept", pa.bool_()),
    ("dropped_by", pa.string()), ("clip_score", pa.float32()), ("caption", pa.string()), ("url", pa.string()),
])


@dataclass
class ModelSpec:
    model: str
    pretrained: Optional[str] = None
    checkpoint: Optional[str] = None


@dataclass
class SearchResult:
    table: pa.Table
    info: dict = field(default_factory=dict)


def run_model(run_dir: Path, embeddings_model: Optional[str]) -> ModelSpec:
    """How to load the model that made the run's embeddings: the manifest's `model`, or the test model when the
    embeddings say they come from it."""
    manifest = Path(run_dir) / MANIFEST
    model = json.loads(manifest.read_text()).get("model") if manifest.is_file() else None
    if isinstance(model, dict) and model.get("arch"):
        return ModelSpec(model["arch"], model.get("pretrained"), model.get("checkpoint"))
    if embeddings_model and is_test_model_id(embeddings_model):
        from curate.score.clip_model import TEST_MODEL

        return ModelSpec(TEST_MODEL)  # its random init is seeded; a trained test checkpoint fails the id check below
    made_by = embeddings_model or "not recorded"
    raise ValueError(f"text and image queries need the model that made the embeddings ({made_by}), and {manifest} "
                     "does not say how to load it: pass --model (with --pretrained or --checkpoint)")


def _encode_query(spec: ModelSpec, text: Optional[str], image: Optional[Path], device: str):
    from PIL import Image

    from curate.score.clip_model import encode_images, encode_texts, load_clip

    loaded = load_clip(spec.model, pretrained=spec.pretrained, checkpoint=spec.checkpoint, device=device)
    if text is not None:
        vector = encode_texts(loaded, [text])
    else:
        try:
            with Image.open(image) as img:
                pixels = loaded.preprocess(img.convert("RGB")).unsqueeze(0)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read the query image {image}: {exc}") from exc
        vector = encode_images(loaded, pixels)
    return np.asarray(vector, dtype=np.float32), loaded


def stored_vector(run_dir: Path, uid: str, modality: str) -> np.ndarray:
    column = f"{modality}_embedding"
    for path in tables.list_parts(run_dir, "embeddings"):
        found = pq.read_table(path, columns=["uid", column], filters=[("uid", "=", uid)])
        if found.num_rows:
            vector = np.asarray(found.column(column)[0].as_py(), dtype=np.float32)[None, :]
            return vector / max(float(np.linalg.norm(vector)), 1e-12)
    raise ValueError(f"uid {uid} has no stored embedding in {run_dir}/signals/embeddings (not in this run, or its "
                     "image was not scored)")


def _kept(run_dir: Path) -> Optional[dict[str, bool]]:
    if not tables.table_exists(run_dir, "decisions"):
        return None
    d = tables.read_table(run_dir, "decisions", columns=["uid", "kept"])
    return dict(zip(d.column("uid").to_pylist(), d.column("kept").to_pylist()))


def _neighbours(index: SearchIndex, query: np.ndarray, k: int, exclude: Optional[str],
                keep: Optional[dict[str, bool]]) -> list[tuple[str, float]]:
    """The k best (uid, cosine), asking faiss for more until k survive the exclusions."""
    n = len(index.uids)
    want = min(n, k + 1 if keep is None else 4 * k + 1)
    while True:
        scores, ids = index.index.search(query, want)
        found = [(index.uids[i], float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
        found = [(u, s) for u, s in found if u != exclude and (keep is None or keep.get(u, False))]
        if len(found) >= k or want >= n:
            return found[:k]
        want = min(n, want * 4)


def _describe(run_dir: Path, uids: list[str]) -> dict[str, dict]:
    """Caption, URL, clip_score and decision of each uid, read for those uids only (DuckDB)."""
    import duckdb

    if not uids:
        return {}
    con = duckdb.connect()
    try:
        con.register("wanted", pa.table({"uid": uids}))
        shards = tables.list_parts(run_dir, "shards")
        out = {r[0]: {"caption": r[1], "url": r[2]} for r in con.sql(
            f"select s.uid, s.caption, s.url from read_parquet({tables.sql_file_list(shards)}, union_by_name=true) s "
            "semi join wanted w on s.uid = w.uid").fetchall()} if shards else {}
        for table, cols in (("clip", ["clip_score"]), ("decisions", ["kept", "dropped_by"])):
            if tables.table_exists(run_dir, table):
                files = tables.sql_file_list(tables.list_parts(run_dir, table))
                for row in con.sql(f"select t.uid, {', '.join('t.' + c for c in cols)} from read_parquet({files}, "
                                   "union_by_name=true) t semi join wanted w on t.uid = w.uid").fetchall():
                    out.setdefault(row[0], {}).update(dict(zip(cols, row[1:])))
    finally:
        con.close()
    return out


def search(run_dir: str | Path, *, text: Optional[str] = None, image: Optional[str | Path] = None,
           uid: Optional[str] = None, k: int = 20, kept_only: bool = False, against: str = "image",
           model: Optional[ModelSpec] = None, device: str = "cpu") -> SearchResult:
    run_dir = Path(run_dir)
    if sum(q is not None for q in (text, image, uid)) != 1:
        raise ValueError("give exactly one query: --text, --image or --uid")
    if k < 1:
        raise ValueError(f"-k must be at least 1, not {k}")
    index = load_or_build(run_dir, against)
    info = {"index": {key: index.record.get(key) for key in ("modality", "rows", "dim", "factory", "model")},
            "index_rebuilt": index.rebuilt, "embeddings_model": index.record.get("model")}
    if uid is not None:
        query = stored_vector(run_dir, uid, against)
        info["query"] = f"uid {uid}"
    else:
        spec = model or run_model(run_dir, index.record.get("model"))
        if image is not None and not Path(image).is_file():
            raise FileNotFoundError(f"query image not found: {image}")
        query, loaded = _encode_query(spec, text, Path(image) if image is not None else None, device)
        stored = index.record.get("model")
        if stored and loaded.model_id not in stored.split("; "):
            raise ValueError(f"the query model {loaded.model_id!r} did not make this run's embeddings ({stored!r}); "
                             "cosines across two models mean nothing")
        info.update(query=f"text {text!r}" if text is not None else f"image {image}", model=loaded.model_id,
                    is_test_model=loaded.is_test_model)
        if loaded.is_test_model:
            info["note"] = ("the query was encoded with the tiny TEST model (random weights) that made this run's "
                            "embeddings: neighbours say nothing about meaning")
    if query.shape[1] != index.record.get("dim"):
        raise ValueError(f"the query vector has {query.shape[1]} dimensions, the index {index.record.get('dim')}")
    keep = _kept(run_dir) if kept_only else None
    if kept_only and keep is None:
        raise tables.MissingTableError(run_dir, "decisions")
    hits = _neighbours(index, query, k, uid, keep)
    described = _describe(run_dir, [u for u, _ in hits])
    rows = [{"rank": r + 1, "score": s, "uid": u, **{c: described.get(u, {}).get(c) for c in RESULT_SCHEMA.names
                                                      if c not in ("rank", "score", "uid")}}
            for r, (u, s) in enumerate(hits)]
    return SearchResult(pa.Table.from_pylist(rows, schema=RESULT_SCHEMA), info)
