"""The export stage: the kept rows of decisions, with their image bytes and clip_score, as RUN/corpus/.

corpus/part-*.parquet follows the shards parts one for one (a part is done when its file exists, so a killed export
resumes), with plain column types that DuckDB, pandas and Hugging Face `datasets` read as they are — the folder
holds nothing else, so `pd.read_parquet("RUN/corpus")` and `load_dataset("parquet", data_dir="RUN/corpus")` work.
With `webdataset`, corpus_webdataset/part-*.tar beside it holds <uid>.jpg, <uid>.txt and <uid>.json per sample.

RUN/.corpus_source.json records the hash of the decisions file the corpus was built from: when the filter is rerun
with another config, the next export sees a different hash and rebuilds instead of mixing two selections.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from curate import tables
from curate.options import ExportOptions

CORPUS = pa.schema(
    [
        ("uid", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("image", pa.binary()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("clip_score", pa.float32()),
        ("clip_model", pa.string()),  # which model made clip_score: says "TEST MODEL" when the test model did
        ("sha256", pa.string()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
    ]
)
SHARD_COLUMNS = [n for n in CORPUS.names if n not in ("clip_score", "clip_model")]
SOURCE_FILE = ".corpus_source.json"  # in the run folder, not in corpus/: readers take every file of corpus/
WEBDATASET_DIR = "corpus_webdataset"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export(run_dir: str | Path, options: ExportOptions) -> dict:
    run_dir = Path(run_dir)
    decisions_path = tables.table_path(run_dir, "decisions")
    decisions = tables.read_table(run_dir, "decisions", columns=["uid", "kept"])
    shard_parts = tables.list_parts(run_dir, "shards")
    if not shard_parts:
        raise tables.MissingTableError(run_dir, "shards")
    corpus_dir = tables.table_path(run_dir, "corpus")

    source = _current_source(run_dir, corpus_dir, file_sha256(decisions_path))
    rebuilt = source.pop("_rebuilt")

    kept_uids = pc.filter(decisions["uid"], decisions["kept"]).combine_chunks()
    clip = tables.read_table(run_dir, "clip", columns=["uid", "clip_score", "model"], required=False)
    clip_by_uid = dict(zip(clip["uid"].to_pylist(), zip(clip["clip_score"].to_pylist(), clip["model"].to_pylist()))) \
        if clip is not None else {}

    written = skipped = tars = 0
    for shard_part in tqdm(shard_parts, desc="export", unit="part", disable=None, leave=False):
        out = tables.part_path(run_dir, "corpus", shard_part.name)
        if shard_part.name in source["empty_parts"]:
            skipped += 1
            continue
        if out.exists():
            skipped += 1
        else:
            part = _corpus_part(shard_part, kept_uids, clip_by_uid)
            written += 1
            if part.num_rows == 0:
                # no file for a part without kept rows: Hugging Face `datasets` fails on a Parquet file with no rows
                source["empty_parts"].append(shard_part.name)
                _write_source(run_dir, source)
                continue
            tables.atomic_write_parquet(part, out, row_group_size=options.rows_per_part)
        tar_path = run_dir / WEBDATASET_DIR / f"{out.stem}.tar"
        if options.webdataset and not tar_path.exists():
            _write_tar(tables.read_part(out), tar_path)
            tars += 1

    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in tables.list_parts(run_dir, "corpus"))
    return {"rows": rows, "kept": len(kept_uids), "parts": len(shard_parts), "parts_written": written,
            "parts_skipped": skipped, "webdataset_tars_written": tars, "rebuilt": rebuilt}


def _current_source(run_dir: Path, corpus_dir: Path, decisions_sha256: str) -> dict:
    """The corpus's record of its decisions; files built from other decisions (or of unknown origin) are removed."""
    source_path = run_dir / SOURCE_FILE
    recorded = json.loads(source_path.read_text()) if source_path.exists() else {}
    if recorded.get("decisions_sha256") == decisions_sha256:
        return {"empty_parts": [], **recorded, "_rebuilt": False}
    outputs = list(corpus_dir.glob("part-*.parquet")) + list((run_dir / WEBDATASET_DIR).glob("*.tar"))
    for path in outputs:
        path.unlink()
    source = {"decisions_sha256": decisions_sha256, "empty_parts": []}
    _write_source(run_dir, source)
    return {**source, "_rebuilt": bool(outputs)}


def _write_source(run_dir: Path, source: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".tmp-{uuid.uuid4().hex}-{SOURCE_FILE.lstrip('.')}"
    tmp.write_text(json.dumps(source, indent=2) + "\n")
    os.replace(tmp, run_dir / SOURCE_FILE)


def _corpus_part(shard_part: Path, kept_uids: pa.Array, clip_by_uid: dict) -> pa.Table:
    shards = tables.read_part(shard_part, columns=SHARD_COLUMNS)
    kept = shards.filter(pc.is_in(shards["uid"], value_set=kept_uids))
    found = [clip_by_uid.get(u, (None, None)) for u in kept["uid"].to_pylist()]
    from_clip = {"clip_score": pa.array([f[0] for f in found], pa.float32()),
                 "clip_model": pa.array([f[1] for f in found], pa.string())}
    columns = {name: from_clip[name] if name in from_clip else kept[name].cast(CORPUS.field(name).type)
               for name in CORPUS.names}
    return pa.table(columns, schema=CORPUS)


def _write_tar(part: pa.Table, tar_path: Path) -> None:
    """One sample = <uid>.jpg, <uid>.txt, <uid>.json; written under a temporary name, then renamed."""
    import webdataset as wds

    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar_path.with_name(f".tmp-{uuid.uuid4().hex}-{tar_path.name}")
    try:
        with open(tmp, "wb") as f:
            # fixed mtime and owner so that the same corpus gives byte-identical tars
            writer = wds.TarWriter(f, encoder=False, mtime=0.0, user="fairsift", group="fairsift",
                                   format=tarfile.USTAR_FORMAT)
            for row in part.to_pylist():
                meta = {k: row[k] for k in CORPUS.names if k != "image"}
                writer.write({"__key__": row["uid"], "jpg": row["image"] or b"",
                              "txt": (row["caption"] or "").encode("utf-8"),
                              "json": json.dumps(meta, ensure_ascii=False).encode("utf-8")})
            writer.close()
        os.replace(tmp, tar_path)
    finally:
        if tmp.exists():
            tmp.unlink()
