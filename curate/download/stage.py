"""The download stage: pairs/ -> shards/, one shards part per pairs part, on the part model (curate.parts).

`download(run_dir, options, map_parts=...)` plans one task per pairs part and lets the engine map `download_part`
over those that are not current; `download_part` is a plain module-level function of one PartTask, so a local
process pool or Ray runs it as is. Inside a part, one module per concern, as in img2dataset:

    reader.py     pairs part -> rows; URLs that are not http(s) with a host become `invalid_url` up front
    fetcher.py    rows -> bytes: fetch threads, per-host scheduling (scheduler.py), robots.txt, X-Robots-Tag,
                  Retry-After, circuit breaker; the HTTP client and its private-network guard are curate.net's
    resizer.py    bytes -> resized JPEG, sizes, sha256 of the original, EXIF (img2dataset's Resizer)
    writer.py     results -> the shards part, every pairs row once and in order, img2dataset's key

Statuses: success; failed_to_download and failed_to_resize (img2dataset's); opted_out (X-Robots-Tag);
refused_robots (robots.txt); blocked_private_network; blocked_domain; host_unreachable (breaker); invalid_url.
`error_kind` says which failure exactly (dns, refused, timeout, http_404, too_large, decompression_bomb, ...), and
the stage's counts add them up under "failures".
"""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")  # img2dataset imports wandb and albumentations
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from curate import tables  # noqa: E402
from curate.download.reader import invalid_url_reason, read_pairs_part  # noqa: E402
from curate.download.writer import RowResult, shards_table  # noqa: E402
from curate.options import DOWNLOAD_SPEED_SETTINGS, DownloadOptions  # noqa: E402
from curate.parts import MapParts, PartTask, plan_tasks, remove_stale_outputs, serial_map  # noqa: E402
from curate.schemas import STATUS_INVALID_URL, STATUS_SUCCESS  # noqa: E402

STAGE = "download"


def output_options(options: DownloadOptions) -> dict:
    """The options that shape the shards (they go in each part's lineage)."""
    return options.model_dump(mode="json", exclude=set(DOWNLOAD_SPEED_SETTINGS))


def speed_settings(options: DownloadOptions) -> dict:
    return options.model_dump(mode="json", include=set(DOWNLOAD_SPEED_SETTINGS))


def download(run_dir: str | os.PathLike, options: DownloadOptions, *, map_parts: MapParts = serial_map) -> dict:
    """Download every pairs part whose shards part is missing or stale. Counts cover the whole shards table."""
    run_dir = Path(run_dir)
    pair_parts = tables.list_parts(run_dir, "pairs")
    if not pair_parts:
        raise tables.MissingTableError(run_dir, "pairs")
    for path in pair_parts:  # a bad pairs table is an error before anything is fetched
        names = pq.read_schema(path).names
        missing = [c for c in ("uid", "url", "caption") if c not in names]
        if missing:
            raise ValueError(f"{path}: pairs table lacks column(s) {missing}; it needs uid, url and caption")
    items = [(p.name, [f"pairs/{p.name}"], [f"shards/{p.name}"]) for p in pair_parts]
    todo, current = plan_tasks(STAGE, run_dir, items, output_options(options), settings=speed_settings(options))
    started = time.perf_counter()
    map_parts(download_part, todo, desc="download")
    elapsed = time.perf_counter() - started
    remove_stale_outputs(tables.table_path(run_dir, "shards"), [o for t in todo + current for o in t.outputs])
    counts = table_counts([run_dir / t.outputs[0] for t in todo + current])
    counts.update(parts=len(pair_parts), parts_skipped=len(current), parts_downloaded=len(todo))
    if todo and elapsed > 0:
        counts["rows_per_s"] = round(sum(pq.ParquetFile(run_dir / t.outputs[0]).metadata.num_rows for t in todo)
                                     / elapsed, 1)
    return counts


def table_counts(paths: list[Path]) -> dict:
    """rows, status counts and failure-kind counts over shards parts."""
    status: dict[str, int] = {}
    failures: dict[str, int] = {}
    rows = 0
    for path in paths:
        part = pq.read_table(path, columns=["status", "error_kind"])
        rows += part.num_rows
        for counter, column in ((status, "status"), (failures, "error_kind")):
            for entry in pc.value_counts(part.column(column)).to_pylist():
                if entry["values"] is not None:
                    counter[entry["values"]] = counter.get(entry["values"], 0) + entry["counts"]
    return {"rows": rows, "status": dict(sorted(status.items())), "failures": dict(sorted(failures.items()))}


def part_options(task: PartTask) -> DownloadOptions:
    return DownloadOptions(**task.lineage["options"], **task.settings)


def download_part(task: PartTask) -> dict:
    """pairs part -> shards part (written with the task's lineage). Picklable; keeps no state between calls."""
    from curate.download.fetcher import PartFetcher, fetch_settings
    from curate.download.resizer import ImageProcessor

    options = part_options(task)
    pairs = read_pairs_part(task.input_paths[0])
    results: list = [None] * pairs.num_rows
    jobs = []
    for row, url in enumerate(pairs.column("url").to_pylist()):
        reason = invalid_url_reason(url)
        if reason is not None:
            results[row] = RowResult(STATUS_INVALID_URL, reason, "invalid_url")
        else:
            jobs.append((row, url.strip()))

    processor = ImageProcessor(options.image_size, options.resize_mode, options.encode_quality,
                               options.max_image_pixels)

    def on_result(row: int, fetched) -> None:
        if fetched.status is not None:
            results[row] = RowResult(fetched.status, fetched.message, fetched.kind)
            return
        results[row] = processor(fetched.body)

    fetcher = PartFetcher(fetch_settings(options))
    try:
        fetcher.run(jobs, on_result)
    finally:
        fetcher.close()
    shards = shards_table(pairs, results, task.name)
    task.write(shards, 0)
    status = pc.value_counts(shards.column("status")).to_pylist()
    return {"rows": shards.num_rows,
            "status": {entry["values"]: entry["counts"] for entry in status},
            "success": sum(e["counts"] for e in status if e["values"] == STATUS_SUCCESS)}


def img2dataset_arguments(options: DownloadOptions, rows_per_shard: int) -> dict:
    """The arguments of a bare `img2dataset.download` that shapes images as these options do (same resizer, sizes,
    quality, hash and X-Robots-Tag directives): for comparing with img2dataset itself."""
    return dict(input_format="parquet", output_format="parquet", url_col="url", caption_col="caption",
                save_additional_columns=["uid"], image_size=options.image_size, resize_mode=options.resize_mode,
                processes_count=options.processes, thread_count=options.threads, timeout=options.timeout,
                retries=options.retries, encode_quality=options.encode_quality, encode_format="jpg",
                compute_hash="sha256", disallowed_header_directives=list(options.disallowed_header_directives),
                number_sample_per_shard=rows_per_shard, distributor="multiprocessing", enable_wandb=False)
