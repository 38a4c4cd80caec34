"""Parts: the unit every stage computes, and the record of what each part was computed from.

A table is a folder of part files. A stage is a plain function over one part (pairs part -> shards part, shards part
-> phash part, ...) plus, where it needs the whole run, an explicit global step over the per-part outputs. WHERE the
part functions run is an engine's business (pipelines/engines: local processes or Ray); a stage only receives a
`map_parts` callable that runs a function over a list of picklable items and returns the results in item order.
`serial_map` below is the degenerate engine used when a stage is called as a plain library function.

What a part was computed from. Every part that fairsift writes carries two keys in its Parquet footer:

- `fairsift.digest`: a digest of its content (blake2b-128 over the Arrow IPC stream of the table as written), so two
  parts with the same rows have the same digest whatever run, machine or engine wrote them;
- `fairsift.lineage`: JSON `{"stage", "inputs": {relative path: digest}, "options": {...}}` — the digests of the
  input parts it was computed from and the options that shape its content (never the ones that only change speed).

A part is *current* when it exists and its lineage equals the lineage the stage would record now. Anything else is
recomputed: a re-download at another size changes the shards parts' digests, so every pHash, CLIP, dedup, decisions
and corpus part computed from them is stale and redone, all the way down — and a part whose inputs came out
byte-identical keeps its digest, so nothing below it is redone for nothing. Files without a fairsift digest (written
by another tool) are identified by a hash of their bytes instead. Editing a part by round-tripping it through pyarrow
keeps the old footer: write it back with `table.replace_schema_metadata(None)` so it is identified by its bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Protocol, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

DIGEST_KEY = b"fairsift.digest"
LINEAGE_KEY = b"fairsift.lineage"


class MapParts(Protocol):
    """What an engine offers a stage: run fn over items (in parallel where it can), results in item order.

    With `setup`, each worker calls setup() once (e.g. to load a model) and then fn(item, state) for its items.
    `resources` hints what one call needs, e.g. {"num_gpus": 1} for scoring; engines that cannot honour it ignore it.
    fn, setup and the items must be picklable (module-level functions, plain data).
    """

    def __call__(self, fn: Callable, items: Sequence, *, desc: str = "", setup: Optional[Callable] = None,
                 resources: Optional[dict] = None) -> list: ...


def serial_map(fn: Callable, items: Sequence, *, desc: str = "", setup: Optional[Callable] = None,
               resources: Optional[dict] = None) -> list:
    """Run in this process, one item after the other: the engine of a stage called as a library function."""
    from tqdm import tqdm

    state = setup() if setup is not None and items else None
    results = []
    for item in tqdm(items, desc=desc or None, unit="part", disable=None if len(items) > 1 else True, leave=False):
        results.append(fn(item, state) if setup is not None else fn(item))
        release_part_memory()
    return results


def release_part_memory() -> None:
    """Hand back to the system the pages a finished part's Arrow buffers used. pyarrow's default pool (mimalloc)
    keeps freed pages for reuse, and over tens of parts its retained pages made a stage's peak grow with the run:
    bench_memory's export went from 625 MiB at 20k rows to 812 MiB at 400k, and to ~680 with this call."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


class _HashSink:
    """A write-only file object that hashes what is written to it (pyarrow streams IPC into it without a copy)."""

    def __init__(self) -> None:
        self.hash = hashlib.blake2b(digest_size=16)
        self.closed = False

    def write(self, data) -> int:
        self.hash.update(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True


DIGEST_WINDOW_ROWS = 8192  # rows hashed per IPC batch: fixed windows, so the digest ignores how memory is chunked


def _canonical_type(dtype: pa.DataType) -> pa.DataType:
    """The type with list items named "item" at every depth (Parquet reads them back as "element")."""
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        item = pa.field("item", _canonical_type(dtype.value_type), nullable=dtype.value_field.nullable)
        if pa.types.is_large_list(dtype):
            return pa.large_list(item)
        if pa.types.is_fixed_size_list(dtype):
            return pa.list_(item, dtype.list_size)
        return pa.list_(item)
    if pa.types.is_struct(dtype):
        return pa.struct([pa.field(f.name, _canonical_type(f.type), nullable=f.nullable) for f in dtype])
    return dtype


def _canonical(table: pa.Table) -> pa.Table:
    schema = pa.schema([pa.field(f.name, _canonical_type(f.type), nullable=f.nullable) for f in table.schema])
    # compared as text: pyarrow's schema equality ignores list item names
    return table if str(schema) == str(table.schema) else table.cast(schema)


def content_digest(table: pa.Table) -> str:
    """Digest of a table's schema (without metadata) and rows, as Arrow IPC bytes of fixed windows of rows.

    It depends on the rows only, not on how they sit in memory: a table sliced or chunked differently, or read back
    from its Parquet file, gets the same digest (each window is combined into one chunk and the IPC writer writes
    sliced buffers compactly; tests/test_fault_injection.py checks)."""
    sink = _HashSink()
    table = _canonical(table.replace_schema_metadata(None))
    with pa.ipc.new_stream(pa.PythonFile(sink, mode="w"), table.schema) as writer:
        for start in range(0, table.num_rows, DIGEST_WINDOW_ROWS):
            window = table.slice(start, DIGEST_WINDOW_ROWS).combine_chunks()
            for batch in window.to_batches():
                writer.write_batch(batch)
    return sink.hash.hexdigest()


_FILE_DIGESTS: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> digest of a file without a fairsift digest


def _file_bytes_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _FILE_DIGESTS:
        digest = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                digest.update(block)
        _FILE_DIGESTS[key] = "file:" + digest.hexdigest()
    return _FILE_DIGESTS[key]


def footer_metadata(path: str | os.PathLike) -> dict[bytes, bytes]:
    return pq.read_metadata(path).metadata or {}


def part_digest(path: str | os.PathLike) -> str:
    """The content digest of a part: from its footer when fairsift wrote it, else a hash of the file's bytes.
    A plain file that is not Parquet (a source HTML page, a WARC, a URL list) is identified by its bytes."""
    path = Path(path)
    if path.suffix == ".parquet":
        try:
            meta = footer_metadata(path)
        except (pa.ArrowInvalid, OSError):
            meta = {}
        if DIGEST_KEY in meta:
            return meta[DIGEST_KEY].decode()
    return _file_bytes_digest(path)


def read_lineage(path: str | os.PathLike) -> Optional[dict]:
    """The lineage recorded in a part's footer, or None (no such file, not written by fairsift, unreadable)."""
    try:
        meta = footer_metadata(path)
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return None
    raw = meta.get(LINEAGE_KEY)
    return json.loads(raw) if raw else None


def canonical(value: Any) -> Any:
    """Options as plain JSON data (pydantic models dumped, paths as text), so lineages compare by value."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def lineage(stage: str, inputs: dict[str, str], options: Any) -> dict:
    return {"stage": stage, "inputs": dict(sorted(inputs.items())), "options": canonical(options)}


def combined_digest(digests: Iterable[str]) -> str:
    """One digest for a list of digests (order matters): what a global step's outputs were computed from."""
    h = hashlib.blake2b(digest_size=16)
    for d in digests:
        h.update(d.encode())
        h.update(b"\n")
    return h.hexdigest()


def with_part_metadata(table: pa.Table, lineage_record: Optional[dict]) -> pa.Table:
    meta = dict(table.schema.metadata or {})
    meta.pop(DIGEST_KEY, None)
    meta.pop(LINEAGE_KEY, None)
    meta[DIGEST_KEY] = content_digest(table).encode()
    if lineage_record is not None:
        meta[LINEAGE_KEY] = json.dumps(lineage_record, sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


TEMP_PREFIX = ".tmp-"  # every temporary file or folder fairsift makes in a run folder starts with this
HOST_TAG = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
_TEMP_OWNER = re.compile(r"^\.tmp-(\d+)\.([0-9a-f]{8})-")


def temp_path(path: str | os.PathLike) -> Path:
    """A hidden temporary name beside `path` that says which process writes it (`.tmp-<pid>.<host>-<id>-<name>`),
    so a later run can tell the debris of a killed writer from a file that a live process is writing."""
    path = Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}.{HOST_TAG}-{uuid.uuid4().hex[:12]}-{path.name}")


@contextmanager
def temp_dir(parent: str | os.PathLike, name: str = "work") -> Iterator[Path]:
    """A hidden scratch folder in `parent` (e.g. a download's img2dataset output), removed on exit; named like
    temp_path, so if the process is killed the next stage command removes it (remove_dead_writers_temp_files)."""
    import shutil

    folder = temp_path(Path(parent) / name)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _remove_entry(entry: Path) -> None:
    """A temporary file, or a temporary folder with what is in it (a link to a folder is removed, not followed)."""
    import shutil

    if entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry)
    else:
        entry.unlink()


def _writer_is_dead(name: str) -> bool:
    match = _TEMP_OWNER.match(name)
    if match is None or match.group(2) != HOST_TAG:
        return False  # not ours to judge: another tool's name, or a writer on another machine
    return not _process_running(int(match.group(1)))


def _process_running(pid: int) -> bool:
    """Is the process alive (a zombie, killed but not yet reaped by its parent, is not)?"""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass  # no /proc (not Linux): ask the kernel
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_writers_temp_files(folder: str | os.PathLike, *, recursive: bool = True) -> list[Path]:
    """Remove temporary files and folders (anywhere under `folder`) whose writing process has died, e.g. by kill -9,
    which skips every cleanup. Safe while other processes write in the same run folder: a live writer's files, and
    names that do not say their writer, are left alone (a stage's plan_tasks clears those in its output folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    entries = folder.rglob(f"{TEMP_PREFIX}*") if recursive else folder.glob(f"{TEMP_PREFIX}*")
    for entry in sorted(entries):
        if not _writer_is_dead(entry.name):
            continue
        try:
            _remove_entry(entry)
            removed.append(entry)
        except OSError:
            continue  # gone meanwhile, or a read-only folder: nothing to clean there
    return removed


class PartWriteError(OSError):
    """A part could not be written (disk full, file too large, read-only folder, permission denied). The message
    names the part and the cause; errno and filename are the underlying error's, so callers can still tell them
    apart. Nothing is left behind: the temporary file is removed and an existing part of that name is untouched."""


def atomic_write(table: pa.Table, path: str | os.PathLike, lineage_record: Optional[dict] = None,
                 **parquet_kwargs) -> Path:
    """Write a part under a hidden temporary name in its folder, then rename: a part file that exists is complete.
    The footer gets the part's content digest and, when given, its lineage."""
    path = Path(path)
    tmp = temp_path(path)
    table = with_part_metadata(table, lineage_record)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        compression = parquet_kwargs.pop("compression", "zstd")
        if table.num_rows == 0:
            # no row group at all: pq.write_table would write one of 0 rows, which Hugging Face `datasets` refuses
            pq.ParquetWriter(tmp, table.schema, compression=compression).close()
        else:
            pq.write_table(table, tmp, compression=compression, **parquet_kwargs)
        os.replace(tmp, path)
    except OSError as exc:
        raise PartWriteError(exc.errno, f"cannot write {path}: {_os_error_reason(exc)}", str(path)) from exc
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only folder, where the temporary file could not be made either
    return path


def _os_error_reason(exc: OSError) -> str:
    """The cause in words: Arrow's messages wrap the OS's ("Error writing bytes to file. Detail: [errno 28] ...")."""
    if exc.errno is not None:
        return os.strerror(exc.errno)
    return str(exc)


def remove_temp_files(folder: str | os.PathLike, names: Optional[Iterable[str]] = None) -> list[Path]:
    """Remove the temporary files and folders that a killed writer left in a folder (kill -9 skips every cleanup);
    with `names`, only the temporary files of those outputs (`.tmp-<id>-<name>`).

    Called when a stage plans its work, before any of its parts runs: a run folder has one writer per output folder
    at a time, so a temporary name found then belongs to a run that died."""
    folder = Path(folder)
    removed = []
    suffixes = tuple(f"-{n}" for n in names) if names is not None else None
    if folder.is_dir():
        for entry in sorted(folder.glob(f"{TEMP_PREFIX}*")):
            if suffixes is not None and not entry.name.endswith(suffixes):
                continue
            try:
                _remove_entry(entry)
                removed.append(entry)
            except FileNotFoundError:
                pass
    return removed


@dataclass(frozen=True)
class PartTask:
    """One part of one stage: what it reads, what it writes and the lineage its outputs must record.

    Paths are relative to the run folder so that a task means the same on every node of a cluster that mounts it.
    `options` shape the output (they are in the lineage); `settings` only change how the work is done (threads,
    batch size) and are not.
    """

    stage: str
    run_dir: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    lineage: dict
    settings: dict = field(default_factory=dict)

    def path(self, rel: str) -> Path:
        return Path(self.run_dir) / rel

    @property
    def input_paths(self) -> list[Path]:
        return [self.path(p) for p in self.inputs]

    @property
    def output_paths(self) -> list[Path]:
        return [self.path(p) for p in self.outputs]

    def is_current(self) -> bool:
        return all(read_lineage(p) == self.lineage for p in self.output_paths)

    def write(self, table: pa.Table, output: str | int = 0) -> Path:
        """Write one of this task's outputs (by index or relative path) with the task's lineage."""
        rel = self.outputs[output] if isinstance(output, int) else output
        if rel not in self.outputs:
            raise ValueError(f"{self.stage} part {self.name}: {rel} is not one of its outputs {self.outputs}")
        return atomic_write(table, self.path(rel), self.lineage)


def plan_tasks(stage: str, run_dir: str | os.PathLike, items: Sequence[tuple[str, Sequence[str], Sequence[str]]],
               options: Any, settings: Optional[dict] = None, extra_inputs: Optional[dict[str, str]] = None
               ) -> tuple[list[PartTask], list[PartTask]]:
    """Tasks for (name, input paths, output paths) items, split into (to do, current).

    Temporary files left in the output folders by a killed run are removed first (`remove_temp_files`).

    `extra_inputs` (e.g. {"global": digest of a global step's result}) join every task's lineage.
    """
    run_dir = Path(run_dir)
    todo, current = [], []
    _remove_debris(run_dir, [rel for _, _, outputs in items for rel in outputs])
    for name, inputs, outputs in items:
        digests = {rel: part_digest(run_dir / rel) for rel in inputs}
        digests.update(extra_inputs or {})
        task = PartTask(stage=stage, run_dir=str(run_dir.resolve()), name=name, inputs=tuple(inputs), outputs=tuple(outputs),
                        lineage=lineage(stage, digests, options), settings=dict(settings or {}))
        (current if task.is_current() else todo).append(task)
    return todo, current


def _remove_debris(run_dir: Path, outputs: Sequence[str]) -> None:
    """Temporary files of a killed run of this stage: everything temporary in its output folders, but in the run
    folder itself (shared by every stage and the manifest) only the temporary files of its own outputs."""
    by_folder: dict[Path, set[str]] = {}
    for rel in outputs:
        path = run_dir / rel
        by_folder.setdefault(path.parent, set()).add(path.name)
    for folder, names in sorted(by_folder.items()):
        remove_temp_files(folder, names if folder.resolve() == run_dir.resolve() else None)


def remove_stale_outputs(folder: str | os.PathLike, keep: Iterable[str]) -> list[Path]:
    """Delete part files in a folder that no task produces any more (their input part is gone)."""
    folder = Path(folder)
    keep = {Path(k).name for k in keep}
    removed = []
    if folder.is_dir():
        for path in sorted(folder.glob("part-*")):
            if path.name not in keep and path.is_file():
                path.unlink()
                removed.append(path)
    return removed


def sum_counts(results: Iterable[dict]) -> dict:
    """Add up the count dicts that part functions return (nested dicts added key by key)."""
    total: dict = {}
    for result in results:
        for key, value in (result or {}).items():
            if isinstance(value, dict):
                total[key] = sum_counts([total.get(key, {}), value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
            else:
                total.setdefault(key, value)
    return total
