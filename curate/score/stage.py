"""The score stage: CLIP similarity of every downloaded pair, plus the embeddings that dedup and the audit reuse.

shards/part-N.parquet -> signals/clip/part-N.parquet (uid, clip_score, model, score_error)
                      -> signals/embeddings/part-N.parquet (uid, image_embedding, text_embedding; float16, unit length)

`score` plans the parts (curate.parts), lets the engine map `part.score_part` over the parts to redo, with the model
loaded once per worker (`part.load_scorer` as map_parts' setup, one GPU per worker on CUDA), and counts the whole
output table. How images reach the model is a setting: the tensor path (batched JPEG decode, GPU preprocessing,
overlapped stages; `tensor_path`) by default, or the PIL + DataLoader path (`pil_path`) it is measured against.

What a clip/embeddings part records as its lineage (so what makes it be redone): the shards part's digest, the model
id and the weights' checksum, and the numerics class. fp16 autocast moves scores by ~2e-4 against fp32 (measured on
ViT-B-32 and tiny-test), below the 1e-3 at which the project calls two score tables equal and the same order as the
difference between nvJPEG and libjpeg pixels, so fp32 and fp16 are one class and the device stays a setting;
bf16 moves them by ~1.5e-3, beyond that tolerance, so a bf16 part is not current for an fp32/fp16 run and vice
versa. Device, batch size, workers, decode path and tokenizer processes are settings: they change speed only.
A part made by another model is therefore rescored, and so is a part whose shards part changed.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Optional

import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from curate import tables
from curate.layout import TABLE_PATHS
from curate.options import ScoreOptions
from curate.parts import MapParts, PartTask, plan_tasks, read_lineage, remove_stale_outputs, serial_map
from curate.score.batches import check_columns
from curate.score.clip_model import (
    HF_HUB_PREFIX,
    TEST_MODEL,
    load_clip,
    model_identity,
)
from curate.score.part import MODEL_INFO_KEY, MODEL_METADATA_KEY, ScorerSpec, load_scorer, score_part

DEFAULT_TAGS = {"ViT-B-32": "laion2b_s34b_b79k"}


def default_pretrained(model: str, checkpoint: Optional[str | Path] = None) -> Optional[str]:
    """The pretrained tag used when none is given: None for a checkpoint, the test model and hub names."""
    import open_clip

    if checkpoint or model == TEST_MODEL or model.startswith(HF_HUB_PREFIX) or ":" in model:
        return None
    if model in DEFAULT_TAGS:
        return DEFAULT_TAGS[model]
    tags = open_clip.list_pretrained_tags_by_model(model)
    return tags[0] if tags else None


def numerics(precision: str) -> str:
    """The precision as far as it shapes the scores (see the module docstring)."""
    return "bf16" if precision == "bf16" else "fp32|fp16"


def _models_in_part(path: Path) -> set[str]:
    """Which model made an existing clip part: from its lineage, else (parts from before lineages) its table."""
    record = read_lineage(path)
    if record and record.get("options", {}).get("model"):
        return {record["options"]["model"]}
    if not path.is_file():
        return set()
    table = pq.read_table(path, columns=["model"])
    if table.num_rows == 0:
        meta = table.schema.metadata or {}
        return {meta[MODEL_METADATA_KEY].decode()} if MODEL_METADATA_KEY in meta else set()
    return {m for m in pc.unique(table.column("model")).to_pylist() if m is not None}


def _wants_gpu(device: str) -> bool:
    return device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())


def _table_counts(clip_paths: list[Path]) -> dict:
    """rows / scored / failed / mean over the whole clip table, one part's score column at a time."""
    rows = scored = 0
    total = 0.0
    for path in clip_paths:
        column = pq.read_table(path, columns=["clip_score"]).column("clip_score")
        rows += len(column)
        scored += len(column) - column.null_count
        if len(column) > column.null_count:
            total += pc.sum(column.cast("float64")).as_py()
    return {"rows": rows, "scored": scored, "failed": rows - scored,
            "mean_clip_score": round(total / scored, 6) if scored else None}


def _recorded_model_info(clip_path: Path) -> Optional[dict]:
    meta = pq.read_schema(clip_path).metadata or {}
    return json.loads(meta[MODEL_INFO_KEY]) if MODEL_INFO_KEY in meta else None


def score(run_dir: str | Path, options: ScoreOptions, *, map_parts: MapParts = serial_map) -> dict:
    """CLIP-score every successful download of RUN/shards/ part by part; returns the stage's counts."""
    run_dir = Path(run_dir)
    shards = tables.list_parts(run_dir, "shards")
    if not shards:
        raise tables.MissingTableError(run_dir, "shards")
    for path in shards:
        check_columns(path)
    pretrained = options.pretrained if options.pretrained is not None else default_pretrained(options.model,
                                                                                               options.checkpoint)
    identity = model_identity(options.model, pretrained, options.checkpoint)
    if identity.weights_sha256 is None:
        # hub weights not in the cache yet: fetch them once here, so that every part's lineage names their checksum
        load_clip(options.model, pretrained=pretrained, checkpoint=options.checkpoint, device="cpu", precision="fp32")
        identity = model_identity(options.model, pretrained, options.checkpoint)

    lineage_options = {"model": identity.model_id, "weights_sha256": identity.weights_sha256,
                       "pretrained": identity.pretrained, "precision": numerics(options.precision)}
    items = [(p.name, [f"{TABLE_PATHS['shards']}/{p.name}"],
              [f"{TABLE_PATHS['clip']}/{p.name}", f"{TABLE_PATHS['embeddings']}/{p.name}"]) for p in shards]
    settings = {"device": options.device, "batch_size": options.batch_size, "workers": options.workers,
                "decode": options.decode, "tokenize_workers": options.tokenize_workers,
                "nvjpeg_share": options.nvjpeg_share, "precision": options.precision,
                "cpu_threads": options.cpu_threads}
    todo, current = plan_tasks("score", run_dir, items, lineage_options, settings=settings)

    replaced: set[str] = set()
    rescored = 0
    for task in todo:
        previous = _models_in_part(task.output_paths[0]) - {identity.model_id}
        if previous:
            rescored += 1
            replaced |= previous

    spec = ScorerSpec(model=options.model, pretrained=identity.pretrained, checkpoint=identity.checkpoint,
                      model_id=identity.model_id, weights_sha256=identity.weights_sha256, **settings)
    results = map_parts(score_part, todo, desc="score", setup=partial(load_scorer, spec),
                        resources={"num_gpus": 1} if _wants_gpu(options.device) else None) if todo else []

    tasks: list[PartTask] = todo + current
    for table in ("clip", "embeddings"):
        remove_stale_outputs(tables.table_path(run_dir, table), [o for t in tasks for o in t.outputs])

    # counts describe the whole table after this run, so a rerun that skips everything reports the same numbers
    clip_paths = [tables.part_path(run_dir, "clip", p.name) for p in shards]
    info = results[0]["model"] if results else _recorded_model_info(clip_paths[0])
    counts = {
        **_table_counts(clip_paths),
        "parts": len(shards),
        "parts_scored": len(todo),
        "parts_skipped": len(current),
        "parts_rescored_model_changed": rescored,
        "model": info or {"id": identity.model_id, "weights_sha256": identity.weights_sha256},
    }
    counts = {k: counts[k] for k in ("rows", "scored", "failed", "parts", "parts_scored", "parts_skipped",
                                     "parts_rescored_model_changed", "model", "mean_clip_score")}
    if replaced:
        counts["replaced_model"] = "; ".join(sorted(replaced))
    return counts
