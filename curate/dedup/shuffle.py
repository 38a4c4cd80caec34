"""The shuffle under dedup's global steps: records written by map tasks, grouped by partition, read by reduce tasks.

Layout (Spark's sort-based shuffle): a map task writes ONE file per shuffle, holding its records sorted by partition;
partition p's records are an Arrow IPC stream at a byte range of the file, and the file ends with the P + 1 byte
offsets of the partitions and then P (int64 each). The reduce task for partition p reads that byte range from every
map file (one seek each). So M map tasks and P partitions make M files, not M x P, and no process ever holds more
than one map task's records or one partition's records. Files live in a hidden work folder inside the run
(`.dedup-work-*`), which the run's nodes all mount, and are deleted when the stage ends.

Partitions are chosen by a hash of the record's key (`mix64`), so equal keys meet in one partition whatever map task
wrote them, and the result of a reduce task does not depend on how the rows were split into parts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
from curate.parts import temp_path

_INT64 = np.dtype("<i8")
# two fixed SipHash keys: pandas' hash_array is the same on every machine and in every process
_KEY_A = "fairsift-dedup-a"
_KEY_B = "fairsift-dedup-b"


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread uint64 of each uint64 (for choosing partitions)."""
    z = np.asarray(values, dtype=np.uint64).copy()
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def string_digests(values: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A 128-bit digest of each (non-null) string as two uint64 arrays (two keyed SipHashes). Two different
    strings share a digest with probability ~n^2 / 2^129: nil for any corpus (10^10 keys: ~1e-19)."""
    objects = np.asarray(values.to_numpy(zero_copy_only=False), dtype=object)
    return (pd.util.hash_array(objects, hash_key=_KEY_A, categorize=False),
            pd.util.hash_array(objects, hash_key=_KEY_B, categorize=False))


def partition_count(records: int, per_partition: int) -> int:
    return max(1, -(-int(records) // max(1, int(per_partition))))


def write(path: str | os.PathLike, table: pa.Table, partition: np.ndarray, n_partitions: int) -> int:
    """Write a map task's records (partition[i] is row i's partition) as one shuffle file; returns bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partition = np.asarray(partition, dtype=np.int64)
    if len(partition) != table.num_rows:
        raise ValueError(f"{path}: {len(partition)} partition numbers for {table.num_rows} records")
    if len(partition) and (partition.min() < 0 or partition.max() >= n_partitions):
        raise ValueError(f"{path}: partition numbers outside 0..{n_partitions - 1}")
    order = np.argsort(partition, kind="stable")
    table = table.take(pa.array(order))
    bounds = np.searchsorted(partition[order], np.arange(n_partitions + 1))
    offsets = np.zeros(n_partitions + 1, dtype=_INT64)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            for p in np.flatnonzero(bounds[1:] > bounds[:-1]):
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table.slice(bounds[p], bounds[p + 1] - bounds[p]))
                f.write(sink.getvalue())
                offsets[p + 1 :] = f.tell()
            f.write(offsets.tobytes())
            f.write(np.array([n_partitions], dtype=_INT64).tobytes())
            size = f.tell()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return size


def read(paths: Iterable[str | os.PathLike], p: int, schema: Optional[pa.Schema] = None) -> Optional[pa.Table]:
    """Partition p's records from every map file, in the order of `paths`; None when there are none."""
    pieces = []
    for path in paths:
        with open(path, "rb") as f:
            f.seek(-8, os.SEEK_END)
            n_partitions = int(np.frombuffer(f.read(8), dtype=_INT64)[0])
            if not 0 <= p < n_partitions:
                raise ValueError(f"{path}: holds {n_partitions} partitions, asked for partition {p}")
            f.seek(-8 * (n_partitions + 2) + 8 * p, os.SEEK_END)
            start, stop = np.frombuffer(f.read(16), dtype=_INT64)
            if stop > start:
                f.seek(int(start))
                pieces.append(pa.ipc.open_stream(pa.py_buffer(f.read(int(stop - start)))).read_all())
    if not pieces:
        return schema.empty_table() if schema is not None else None
    return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]


def map_files(folder: str | os.PathLike, names: Sequence[str]) -> list[str]:
    """The existing map files of a shuffle, in the given (map task) order."""
    folder = Path(folder)
    return [str(folder / n) for n in names if (folder / n).is_file()]
