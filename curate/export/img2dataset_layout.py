"""`fairsift export --format img2dataset`: the corpus in img2dataset's own output layout, so tools written for
img2dataset's folders (and its readers' column names) take it as it is. Compared with img2dataset's writer
(img2dataset/writer.py, downloader.py):

- one shard per corpus part, named by the part's number in 5 digits (img2dataset's oom_shard_count), so the keys,
  which begin with the shard number, match the shard they are in;
- `parquet` output format: NNNNN.parquet with the metadata columns and the image in a column named after the
  encode format (`jpg`); `webdataset` (`--webdataset`): NNNNN.tar holding <key>.jpg, <key>.txt and <key>.json
  (the metadata, `json.dumps(meta, indent=4)` as img2dataset writes it), beside NNNNN.parquet with the metadata
  only; both write NNNNN_stats.json (count, successes, failed_to_download, failed_to_resize, duration, start_time,
  end_time, status_dict);
- metadata columns in img2dataset's order: its "additional columns" first (here uid, clip_score, clip_model and
  the pairs' saved columns), then caption, url, key, status, error_message, width, height, original_width,
  original_height, exif, sha256.

Only kept rows are exported (img2dataset's folders also hold failed downloads; those stay in RUN/shards/).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from curate.export.corpus import ENCODE_FORMAT, part_number
from curate.export.tars import samples, write_tar
from curate.parts import PartTask, temp_path

# img2dataset's own metadata columns, in the order its downloader appends them after the input's columns
IMG2DATASET_COLUMNS = ("caption", "url", "key", "status", "error_message", "width", "height", "original_width",
                       "original_height", "exif", "sha256")
OUTPUT_FORMATS = ("parquet", "webdataset")


def shard_name(corpus_part: str) -> str:
    return f"{part_number(corpus_part):05d}"


def metadata_table(corpus: pa.Table) -> pa.Table:
    """The corpus part's columns in img2dataset's order, without the image."""
    additional = [n for n in corpus.column_names if n not in IMG2DATASET_COLUMNS and n != "image"]
    return corpus.select(additional + list(IMG2DATASET_COLUMNS)).replace_schema_metadata(None)


def stats(meta: pa.Table, start: float, end: float) -> dict:
    statuses = {e["values"]: e["counts"] for e in pc.value_counts(meta.column("status")).to_pylist()} \
        if meta.num_rows else {}
    return {"count": meta.num_rows, "successes": statuses.get("success", 0),
            "failed_to_download": statuses.get("failed_to_download", 0),
            "failed_to_resize": statuses.get("failed_to_resize", 0), "duration": end - start, "start_time": start,
            "end_time": end, "status_dict": statuses}


def write_shard(item: tuple[PartTask, str]) -> dict:
    """One img2dataset shard from one corpus part; the .parquet is written last, so it marks the shard complete."""
    import pyarrow.parquet as pq

    task, output_format = item
    start = time.time()
    corpus = pq.read_table(task.input_paths[0])
    meta = metadata_table(corpus)
    out_dir = task.output_paths[0].parent
    name = task.output_paths[0].stem
    if output_format == "webdataset":
        rows = meta.to_pylist()
        images = corpus.column("image").combine_chunks().field("bytes").to_pylist() if corpus.num_rows else []
        by_key = dict(zip(meta.column("key").to_pylist(), images))
        write_tar(samples(rows, key=lambda r: r["key"], image=lambda r: by_key[r["key"]], meta=lambda r: r,
                          encode_format=ENCODE_FORMAT, indent=4, ensure_ascii=True), out_dir / f"{name}.tar")
        table = meta
    else:
        image_bytes = corpus.column("image").combine_chunks().field("bytes") if corpus.num_rows \
            else pa.array([], pa.binary())
        table = meta.append_column(pa.field(ENCODE_FORMAT, pa.binary()), image_bytes)
    _write_json(out_dir / f"{name}_stats.json", stats(meta, start, time.time()))
    task.write(table, 0)
    return {"rows": meta.num_rows}


def expected_files(shards: list[str], output_format: str) -> set[str]:
    suffixes = ("_stats.json", ".parquet") + ((".tar",) if output_format == "webdataset" else ())
    return {f"{s}{suffix}" for s in shards for suffix in suffixes}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, indent=4))
    os.replace(tmp, path)
