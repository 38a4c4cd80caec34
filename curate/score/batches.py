"""Reading one shards part as fixed-size batches of successful downloads, streamed from the Parquet file.

Only `batch_size` rows of image bytes are materialised at a time (plus what pyarrow buffers of the row group), so a
scorer's memory does not grow with the part, let alone with the run. Each batch carries its JPEG bytes as ONE
contiguous uint8 tensor with offsets (pinned when the model runs on CUDA: the decoders and the host-to-device copies
read page-locked memory without a staging copy) and per-row views into it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from curate import schemas

SHARDS_COLUMNS_READ = ("uid", "status", "caption", "image")
MISSING_BYTES = "image bytes missing although status is success"


@dataclass
class RawBatch:
    start: int  # position of the first row among the part's successful downloads
    uids: list[str]
    captions: list[str]
    data: torch.Tensor  # uint8 [total bytes]: every image of the batch back to back
    offsets: np.ndarray  # int64 [n + 1]: image i is data[offsets[i]:offsets[i + 1]]
    present: np.ndarray  # bool [n]: False where the row has no image bytes

    def __len__(self) -> int:
        return len(self.uids)

    def image(self, i: int) -> torch.Tensor:
        return self.data[int(self.offsets[i]):int(self.offsets[i + 1])]

    def image_bytes(self, i: int) -> Optional[bytes]:
        return self.data.numpy()[int(self.offsets[i]):int(self.offsets[i + 1])].tobytes() if self.present[i] else None

    def memoryview(self) -> memoryview:
        return memoryview(self.data.numpy())


def check_columns(path: Path) -> None:
    missing = [c for c in SHARDS_COLUMNS_READ if c not in pq.read_schema(path).names]
    if missing:
        raise ValueError(f"{path}: shards part lacks columns {missing}")


def _successful(batch: pa.RecordBatch) -> pa.Table:
    ok = pc.fill_null(pc.equal(batch.column("status"), schemas.STATUS_SUCCESS), False)
    return pa.Table.from_batches([batch]).filter(ok).select(["uid", "caption", "image"])


def _raw_batch(table: pa.Table, start: int, pin: bool) -> RawBatch:
    images = table.column("image").combine_chunks()
    if isinstance(images, pa.ChunkedArray):  # combine_chunks of an empty column
        images = pa.array([], type=images.type)
    present = images.is_valid().to_numpy(zero_copy_only=False).astype(bool)
    lengths = pc.fill_null(pc.binary_length(images), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    offsets = np.zeros(len(images) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    data = torch.empty(int(offsets[-1]), dtype=torch.uint8, pin_memory=pin)
    if len(images) and offsets[-1]:
        # one copy of the value bytes into (pinned) memory; the values of a binary array lie back to back
        value_offsets = np.frombuffer(images.buffers()[1], dtype=np.int64 if pa.types.is_large_binary(images.type)
                                      else np.int32)[images.offset:images.offset + len(images) + 1]
        values = np.frombuffer(images.buffers()[2], dtype=np.uint8)[value_offsets[0]:value_offsets[-1]]
        data.numpy()[:] = values
    return RawBatch(start=start, uids=table.column("uid").to_pylist(),
                    captions=[c or "" for c in table.column("caption").to_pylist()],
                    data=data, offsets=offsets, present=present)


def read_batches(path: Path, batch_size: int, pin: bool = False) -> Iterator[RawBatch]:
    """The part's successful downloads in order, `batch_size` rows per batch (the last one shorter)."""
    check_columns(path)
    pending: list[pa.Table] = []
    pending_rows, start = 0, 0
    source = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)  # pages read as needed, not the row group
    for record_batch in source.iter_batches(batch_size=batch_size, columns=list(SHARDS_COLUMNS_READ)):
        good = _successful(record_batch)
        if good.num_rows == 0:
            continue
        pending.append(good)
        pending_rows += good.num_rows
        while pending_rows >= batch_size:
            table = pa.concat_tables(pending)
            yield _raw_batch(table.slice(0, batch_size), start, pin)
            start += batch_size
            rest = table.slice(batch_size)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending_rows:
        yield _raw_batch(pa.concat_tables(pending), start, pin)


def successful_uids(path: Path) -> list[str]:
    """uids of the part's successful downloads, in order (the rows the clip part will hold)."""
    check_columns(path)
    head = pq.read_table(path, columns=["uid", "status"])
    ok = pc.fill_null(pc.equal(head.column("status"), schemas.STATUS_SUCCESS), False)
    return head.filter(ok).column("uid").to_pylist()
