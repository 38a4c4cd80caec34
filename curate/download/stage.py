"""The download stage: pairs/ -> shards/, one shards part per pairs part, images fetched and resized by img2dataset.

img2dataset (the library) does all fetching, X-Robots-Tag checking, decoding, resizing, re-encoding and hashing.
This module only decides which rows it may see (the URL guard), hands it the pending pairs parts (small parts share
one call, since each call spawns processes; a call takes at most BATCH_ROWS rows unless one part is bigger), and turns
its output back into one shards part per pairs part, every pairs row present exactly once, in pairs order:

- rows refused before the call get "invalid_url" or "blocked_private_network";
- img2dataset's "failed_to_download" becomes "opted_out" when an X-Robots-Tag directive refused the image, and
  "blocked_private_network" when the redirect guard refused it (below);
- a row img2dataset lost (its shard crashed) comes back as "failed_to_download" with a message saying so.

Redirects: img2dataset follows them itself, in the processes it spawns, where the URL check above cannot reach. Unless
private networks are allowed, img2dataset runs in curate.net.redirect_guard's environment: its workers then refuse a
redirect to a private address, and any connection to one (DNS rebinding), with a message holding REFUSAL_MARKER.

`sha256` is img2dataset's hash of the original bytes as served (the exact-duplicate key, independent of the
resize settings), not of the re-encoded JPEG in `image`.

Decompression bombs: img2dataset decodes with OpenCV, not Pillow, so Pillow's MAX_IMAGE_PIXELS does not apply.
OpenCV refuses to decode images over OPENCV_IO_MAX_IMAGE_PIXELS before allocating them; we set that to Pillow's
limit (unless the user set it) in the environment img2dataset's worker processes inherit, and also pass it as
img2dataset's max_image_area for images that do decode.
"""

from __future__ import annotations

import contextlib
import math
import json
import os
import signal
import tempfile
import threading
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "disabled")  # img2dataset imports wandb and albumentations
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from curate import tables  # noqa: E402
from curate.net.url_guard import UrlGuard  # noqa: E402
from curate.options import DownloadOptions  # noqa: E402
from curate.net.redirect_guard import REFUSAL_MARKER, guarded_environment  # noqa: E402
from curate.schemas import (  # noqa: E402
    SHARDS,
    STATUS_FAILED_DOWNLOAD,
    STATUS_FAILED_RESIZE,
    STATUS_OPTED_OUT,
    STATUS_PRIVATE_NETWORK,
    conform,
)

MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb limit
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))

# the contract columns plus the EXIF img2dataset extracts from the original file (JSON text, null on failure)
SHARDS_WITH_EXIF = SHARDS.append(pa.field("exif", pa.string()))
ROW_COL = "pairs_row"  # position in the pairs part: ties img2dataset's output back even when uids repeat
MAX_ROWS_PER_SHARD = 10_000  # img2dataset's default shard size
BATCH_ROWS = 10_000  # pairs rows per img2dataset call, at most (a bigger part still goes whole)
ROBOTS_MESSAGE = "X-Robots-Tag"  # img2dataset: "Use of image disallowed by X-Robots-Tag directive"
BOMB_MESSAGES = ("CV_IO_MAX_IMAGE_PIXELS", "image area too large")
PRIVATE_HINT = "; pass --allow-private-network to download from it"
LOG_TAIL_CHARS = 2000
LOST_MESSAGE = "img2dataset returned no result for this row (its shard failed)"
# what this stage adds to the pairs columns (the contract's result columns), keyed by the row's place in its part
_RESULT_SCHEMA = pa.schema(
    [pa.field(ROW_COL, pa.int64())] + [f for f in SHARDS_WITH_EXIF if f.name not in ("uid", "url", "caption")]
)


def download(run_dir: str | os.PathLike, options: DownloadOptions) -> dict:
    """Download every pairs part that has no shards part yet. Counts cover the whole shards table afterwards."""
    run_dir = Path(run_dir)
    pair_parts = tables.list_parts(run_dir, "pairs")
    if not pair_parts:
        raise tables.MissingTableError(run_dir, "pairs")
    guard = UrlGuard(options.allow_private_network)
    counts: dict = {"rows": 0, "status": {}, "parts": len(pair_parts), "parts_skipped": 0}
    options_changed = _record_options(run_dir, options)
    if options_changed:
        counts["rebuilt_options_changed"] = options_changed
    pending = []
    for pairs_path in pair_parts:
        shards_path = tables.part_path(run_dir, "shards", pairs_path.name)
        if options_changed:
            shards_path.unlink(missing_ok=True)
        if shards_path.exists() and tables.part_matches(shards_path, read_pairs_part(pairs_path).column("uid")):
            counts["parts_skipped"] += 1
            _add_status_counts(counts, tables.read_part(shards_path, ["status"]).column("status"))
        else:
            pending.append(pairs_path)
    work_root = tables.table_path(run_dir, "shards")
    with tqdm(total=len(pending), desc="download", unit="part", dynamic_ncols=True) as bar:
        for batch in _batches(pending):
            for pairs_path, shards in download_parts(batch, options, guard, work_root):
                tables.write_part(run_dir, "shards", pairs_path.name, shards)
                _add_status_counts(counts, shards.column("status"))
                bar.update(1)
            bar.set_postfix(rows=counts["rows"], success=counts["status"].get("success", 0))
    counts["status"] = dict(sorted(counts["status"].items()))
    return counts


# options that change what lands in shards/ (threads and processes only change how fast)
_OUTPUT_OPTIONS = ("image_size", "resize_mode", "timeout", "retries", "allow_private_network",
                   "disallowed_header_directives", "encode_quality")
OPTIONS_FILE = "_options.json"


def _record_options(run_dir: Path, options: DownloadOptions) -> list[str]:
    """Write shards/_options.json; return the options that differ from the ones the existing parts were made with
    (then every part is downloaded again: a rerun with --allow-private-network or another --image-size must not
    keep the old rows)."""
    path = tables.table_path(run_dir, "shards") / OPTIONS_FILE
    current = {k: getattr(options, k) for k in _OUTPUT_OPTIONS}
    previous = json.loads(path.read_text()) if path.is_file() else None
    changed = sorted(k for k in current if previous is not None and previous.get(k) != current[k])
    if previous is None and tables.list_parts(run_dir, "shards"):
        changed = []  # parts from before options were recorded: keep them
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(current, indent=1, sort_keys=True))
    return changed


def _batches(pair_parts: list[Path]) -> list[list[Path]]:
    """Small parts share one img2dataset call (each call spawns processes, seconds of start-up); a batch stops at
    BATCH_ROWS so an interrupted run loses at most that much work."""
    batches: list[list[Path]] = []
    rows = 0
    for path in pair_parts:
        n = pq.ParquetFile(path).metadata.num_rows
        if not batches or rows + n > BATCH_ROWS:
            batches.append([])
            rows = 0
        batches[-1].append(path)
        rows += n
    return batches


def _add_status_counts(counts: dict, statuses: pa.ChunkedArray) -> None:
    counts["rows"] += len(statuses)
    for entry in pc.value_counts(statuses).to_pylist():
        key = entry["values"] if entry["values"] is not None else "null"
        counts["status"][key] = counts["status"].get(key, 0) + entry["counts"]


def read_pairs_part(path: Path) -> pa.Table:
    table = tables.read_part(path)
    missing = [c for c in ("uid", "url", "caption") if c not in table.column_names]
    if missing:
        raise ValueError(f"{path}: pairs table lacks column(s) {missing}; it needs uid, url and caption")
    table = table.select(["uid", "url", "caption"])
    return table.append_column(ROW_COL, pa.array(range(table.num_rows), pa.int64()))


def download_parts(
    pairs_paths: list[Path], options: DownloadOptions, guard: UrlGuard, work_root: Path
) -> list[tuple[Path, pa.Table]]:
    """The shards table of each pairs part (one row per pairs row, in pairs order), with one img2dataset call."""
    parts = [read_pairs_part(path) for path in pairs_paths]
    refusals, fetch_rows, to_fetch, offset = [], [], [], 0
    for pairs in parts:
        refused = {row: refusal for row, url in enumerate(pairs.column("url").to_pylist())
                   if (refusal := guard.refusal(url)) is not None}
        fetch = [row for row in range(pairs.num_rows) if row not in refused]
        refusals.append(refused)
        fetch_rows.append(fetch)
        # within the batch a row is known by its part's offset + its row in the part
        rows = pairs.take(pa.array(fetch, pa.int64()))
        batch_rows = pc.add(rows.column(ROW_COL), offset)
        to_fetch.append(rows.set_column(rows.schema.get_field_index(ROW_COL), ROW_COL, batch_rows))
        offset += pairs.num_rows

    fetched = _failure_rows([], [], []).append_column("uid", pa.array([], pa.string()))
    log_tail = ""
    if any(fetch_rows):
        work_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".tmp-download-", dir=work_root) as work:
            fetched, log_path = run_img2dataset(pa.concat_tables(to_fetch), options, Path(work))
            log_tail = _log_tail(log_path)

    results, offset = [], 0
    for path, pairs, refused, fetch in zip(pairs_paths, parts, refusals, fetch_rows):
        in_part = pc.and_(pc.greater_equal(fetched.column(ROW_COL), offset),
                          pc.less(fetched.column(ROW_COL), offset + pairs.num_rows))
        mine = fetched.filter(in_part)
        mine = mine.set_column(mine.schema.get_field_index(ROW_COL), ROW_COL, pc.subtract(mine.column(ROW_COL), offset))
        shards = assemble_shards(path, pairs, refused, fetch, mine)
        lost = pc.sum(pc.equal(shards.column("error_message"), LOST_MESSAGE)).as_py() or 0
        if lost:
            tqdm.write(f"warning: img2dataset returned no result for {lost} row(s) of {path.name}; they are "
                       f"recorded as {STATUS_FAILED_DOWNLOAD}. Its log ends with:\n{log_tail}")
        results.append((path, shards))
        offset += pairs.num_rows
    return results


def assemble_shards(
    pairs_path: Path, pairs: pa.Table, refusals: dict[int, tuple[str, str]], fetch_rows: list[int], fetched: pa.Table
) -> pa.Table:
    """Pairs rows + (refused rows, img2dataset's rows, rows it lost) -> the shards part, one row per pairs row."""
    if fetched.num_rows:
        uids_of_rows = pairs.column("uid").take(fetched.column(ROW_COL))
        if uids_of_rows.to_pylist() != fetched.column("uid").to_pylist():
            raise RuntimeError(f"{pairs_path}: img2dataset returned rows whose uid does not match their pairs row")
    fetched = _to_contract(fetched)
    returned = set(fetched.column(ROW_COL).to_pylist())
    lost = [row for row in fetch_rows if row not in returned]
    refused = sorted(refusals)
    pieces = [
        _failure_rows(refused, [refusals[r][0] for r in refused], [refusals[r][1] for r in refused]),
        _failure_rows(lost, [STATUS_FAILED_DOWNLOAD] * len(lost), [LOST_MESSAGE] * len(lost)),
        fetched,
    ]
    results = pa.concat_tables([p.select(_RESULT_SCHEMA.names).cast(_RESULT_SCHEMA) for p in pieces])
    results = results.take(pc.sort_indices(results, [(ROW_COL, "ascending")]))
    if results.column(ROW_COL).to_pylist() != list(range(pairs.num_rows)):
        raise RuntimeError(f"{pairs_path}: download results do not cover each pairs row exactly once")  # a bug here
    shards = pairs.select(["uid", "url", "caption"])
    for name in _RESULT_SCHEMA.names:
        if name != ROW_COL:
            shards = shards.append_column(name, results.column(name))
    return conform(shards, SHARDS_WITH_EXIF)


def _failure_rows(rows: list[int], statuses: list[str], messages: list[str]) -> pa.Table:
    columns = {ROW_COL: rows, "status": statuses, "error_message": messages}
    return pa.table({f.name: pa.array(columns.get(f.name, [None] * len(rows)), f.type) for f in _RESULT_SCHEMA})


def run_img2dataset(pairs: pa.Table, options: DownloadOptions, work: Path) -> tuple[pa.Table, Path]:
    """Hand the rows to img2dataset.download; return the rows it wrote (shards that finished) and its log file."""
    url_list = work / "pairs.parquet"
    output = work / "out"
    log_path = work / "img2dataset.log"
    pq.write_table(pairs, url_list)
    # several shards let img2dataset spread one part over its processes
    rows_per_shard = max(1, min(MAX_ROWS_PER_SHARD, math.ceil(pairs.num_rows / options.processes)))
    worker_guard = contextlib.nullcontext() if options.allow_private_network else guarded_environment()
    with output_to_log(log_path), _restore_sigint(), worker_guard:
        import img2dataset

        try:
            img2dataset.download(
                url_list=str(url_list),
                output_folder=str(output),
                **img2dataset_arguments(options, rows_per_shard),
            )
        except Exception as exc:
            raise RuntimeError(f"img2dataset failed: {exc}\n{_log_tail(log_path)}") from exc
    return read_img2dataset_output(output), log_path


def img2dataset_arguments(options: DownloadOptions, rows_per_shard: int) -> dict:
    """The img2dataset.download arguments of this stage (the benchmark runs bare img2dataset with the same)."""
    return dict(
        input_format="parquet",
        output_format="parquet",
        url_col="url",
        caption_col="caption",
        save_additional_columns=["uid", ROW_COL],
        image_size=options.image_size,
        resize_mode=options.resize_mode,
        processes_count=options.processes,
        thread_count=options.threads,
        timeout=options.timeout,
        retries=options.retries,
        encode_quality=options.encode_quality,
        encode_format="jpg",
        compute_hash="sha256",
        disallowed_header_directives=list(options.disallowed_header_directives),
        max_image_area=MAX_IMAGE_PIXELS,
        number_sample_per_shard=rows_per_shard,
        distributor="multiprocessing",
        enable_wandb=False,
    )


def read_img2dataset_output(output: Path) -> pa.Table:
    """Rows of the shards img2dataset finished: it writes <shard>_stats.json only after a shard's parquet is closed,
    so a parquet without one belongs to a crashed shard and may be cut short."""
    shard_tables = []
    for stats in sorted(output.glob("*_stats.json")):
        shard = output / (stats.name[: -len("_stats.json")] + ".parquet")
        if shard.exists():
            shard_tables.append(pq.read_table(shard))
    if not shard_tables:
        return pa.table({ROW_COL: pa.array([], pa.int64()), "uid": pa.array([], pa.string())})
    fetched = pa.concat_tables(shard_tables, promote_options="default")
    # a retried shard rewrites its file, so a row should appear once; keep the first if not
    seen: set[int] = set()
    keep = []
    for row in fetched.column(ROW_COL).to_pylist():
        keep.append(row not in seen)
        seen.add(row)
    return fetched.filter(pa.array(keep, pa.bool_()))


def _to_contract(fetched: pa.Table) -> pa.Table:
    """img2dataset's columns -> this stage's result columns, with its failures given clearer kinds and messages."""
    n = fetched.num_rows
    if n == 0:
        return _failure_rows([], [], [])

    def column(name: str, type_: pa.DataType) -> pa.Array:
        if name in fetched.column_names:
            return fetched.column(name).cast(type_)
        return pa.nulls(n, type_)

    status = column("status", pa.string())
    message = column("error_message", pa.string())
    opted_out = pc.and_(
        pc.equal(status, STATUS_FAILED_DOWNLOAD), pc.fill_null(pc.match_substring(message, ROBOTS_MESSAGE), False)
    )
    status = pc.if_else(opted_out, STATUS_OPTED_OUT, status)
    refused_private = pc.and_(
        pc.equal(status, STATUS_FAILED_DOWNLOAD), pc.fill_null(pc.match_substring(message, REFUSAL_MARKER), False)
    )
    status = pc.if_else(refused_private, STATUS_PRIVATE_NETWORK, status)
    message = pc.if_else(refused_private, pc.binary_join_element_wise(message, PRIVATE_HINT, ""), message)
    is_bomb = pc.and_(
        pc.equal(status, STATUS_FAILED_RESIZE),
        pc.fill_null(pc.or_(*(pc.match_substring(message, m) for m in BOMB_MESSAGES)), False),
    )
    bomb_note = f"image over {MAX_IMAGE_PIXELS} pixels refused (decompression bomb guard): "
    message = pc.if_else(is_bomb, pc.binary_join_element_wise(bomb_note, message, ""), message)
    message = pc.utf8_trim_whitespace(message)

    values = {
        ROW_COL: column(ROW_COL, pa.int64()),
        "status": status,
        "error_message": message,
        "image": column("jpg", pa.binary()),
        "sha256": column("sha256", pa.string()),
        "exif": column("exif", pa.string()),
    }
    for name in ("width", "height", "original_width", "original_height"):
        values[name] = column(name, pa.int32())
    return pa.table({f.name: values[f.name] for f in _RESULT_SCHEMA}, schema=_RESULT_SCHEMA)


@contextlib.contextmanager
def output_to_log(log_path: Path):
    """Send everything written to stdout/stderr meanwhile - by img2dataset and the processes it spawns, which
    inherit the file descriptors - to a log file, so the terminal shows this stage's progress bar, not its chatter."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@contextlib.contextmanager
def _restore_sigint():
    """img2dataset installs a SIGINT handler that exits with status 0; put ours back so Ctrl-C still interrupts."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if in_main_thread else None
    try:
        yield
    finally:
        if in_main_thread and previous is not None:
            signal.signal(signal.SIGINT, previous)


def _log_tail(log_path: Path) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return text[-LOG_TAIL_CHARS:]
