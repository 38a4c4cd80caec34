"""Builds small run folders for the filter, export and sql tests: real sample images and captions written through
curate.tables as the download, score and dedup stages would write them (shards, signals/clip, signals/dedup)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pyarrow as pa
from PIL import Image

from curate import schemas, tables

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "pipelines" / "sample"


@dataclass
class Row:
    caption: str
    url: str = ""
    status: str = schemas.STATUS_SUCCESS
    image_file: Optional[str] = None  # a file of the bundled sample; None for a failed download
    original_size: Optional[tuple[int, int]] = None  # default: the image's own size
    clip_score: Optional[float] = None
    dup_of: Optional[str] = None  # index of the row it duplicates, as a str of an int, or an eval-set name
    dup_kind: Optional[str] = None

    @property
    def uid(self) -> str:
        return tables.compute_uid(self.url, self.caption)


def sample_records() -> list[dict]:
    return [json.loads(line) for line in (SAMPLE_DIR / "samples.jsonl").read_text().splitlines() if line.strip()]


def sample_rows(n: int) -> list[Row]:
    """n successful rows with real images and captions from the bundled sample."""
    rows = []
    for i, rec in enumerate(sample_records()[:n]):
        rows.append(Row(caption=rec["caption"], url=f"http://127.0.0.1/img/{i}.jpg", image_file=rec["file"]))
    return rows


def _shard_record(row: Row) -> dict:
    record = {"uid": row.uid, "url": row.url, "caption": row.caption, "status": row.status,
              "error_message": None if row.status == schemas.STATUS_SUCCESS else f"{row.status} (test)",
              "image": None, "width": None, "height": None, "original_width": None, "original_height": None,
              "sha256": None}
    if row.image_file is not None:
        data = (SAMPLE_DIR / row.image_file).read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
        ow, oh = row.original_size or (width, height)
        record.update(image=data, width=width, height=height, original_width=ow, original_height=oh,
                      sha256=hashlib.sha256(data).hexdigest())
    return record


def write_run(run_dir: Path, rows: list[Row], *, parts: int = 2, clip: bool = True, dedup: bool = True) -> Path:
    """shards in `parts` parts (to exercise part-wise stages), plus signals/clip and signals/dedup."""
    run_dir = Path(run_dir)
    per_part = max(1, -(-len(rows) // parts))
    for p in range(parts):
        chunk = rows[p * per_part:(p + 1) * per_part]
        table = pa.Table.from_pylist([_shard_record(r) for r in chunk], schema=schemas.SHARDS)
        tables.write_part(run_dir, "shards", p, table)
    if clip:
        scored = [r for r in rows if r.clip_score is not None]
        tables.write_table(run_dir, "clip", pa.Table.from_pylist(
            [{"uid": r.uid, "clip_score": r.clip_score, "model": "tiny-test"} for r in scored], schema=schemas.CLIP))
    if dedup:
        def dup_target(r: Row) -> Optional[str]:
            if r.dup_of is None:
                return None
            return rows[int(r.dup_of)].uid if r.dup_of.isdigit() else r.dup_of

        tables.write_table(run_dir, "dedup", pa.Table.from_pylist(
            [{"uid": r.uid, "dup_of": dup_target(r), "dup_kind": r.dup_kind} for r in rows], schema=schemas.DEDUP))
    return run_dir


# captions and cases planted by planted_rows(); tests look rows up by these keys
GERMAN = "Ein schwarzer Hund spielt im Park mit einem Ball"
NSFW = "vintage erotica magazine cover from the seventies"
EROTIC_INSIDE_A_WORD = "diagram of a heterotic string theory model in physics"


def planted_rows(n_sample: int = 30) -> dict[str, Row]:
    """Real sample rows (distinct clip scores) plus one row per filter case, keyed by what it plants."""
    rows: dict[str, Row] = {}
    sample = sample_rows(n_sample + 9)
    for i, row in enumerate(sample[:n_sample]):
        row.clip_score = round(0.15 + 0.005 * i, 4)
        rows[f"sample_{i}"] = row
    spare = iter(sample[n_sample:])

    def planted(caption: str, score: Optional[float], **kwargs) -> Row:
        row = next(spare)
        row.caption, row.url, row.clip_score = caption, row.url + "?planted", score
        for key, value in kwargs.items():
            setattr(row, key, value)
        return row

    rows["german"] = planted(GERMAN, 0.40)
    rows["nsfw"] = planted(NSFW, 0.39)
    rows["erotic_inside_word"] = planted(EROTIC_INSIDE_A_WORD, 0.385)
    rows["small"] = planted("a small photo of a red bicycle", 0.38, original_size=(150, 400))
    rows["wide"] = planted("a wide panorama of a mountain range", 0.37, original_size=(1200, 300))
    rows["short"] = planted("IMG_4663", 0.36)
    rows["phash_dup"] = planted("a near copy of the first sample image", 0.35, dup_of="0", dup_kind="phash")
    rows["eval_dup"] = planted("a test image of a frog on a leaf", 0.34, dup_of="cifar10/test/00042.png",
                               dup_kind="eval_set")
    rows["failed"] = Row(caption="a photo of a lost cat", url="http://127.0.0.1/status/404/cat.jpg",
                         status=schemas.STATUS_FAILED_DOWNLOAD)
    rows["unscored"] = planted("a photo of a dog that was not scored", None)
    return rows
