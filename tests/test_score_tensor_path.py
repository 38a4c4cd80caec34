"""The tensor scoring path (batched JPEG decode + preprocessing on the model's device) against the PIL path.

On this CPU-only machine the tensor path runs with CPU tensors: the same code that decodes with nvJPEG and
preprocesses on the GPU elsewhere. The oracle is open_clip's own PIL transform (the `decode: pil` path and
open_clip.image_transform_v2 directly).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import open_clip
import pyarrow as pa
import pytest
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from curate import tables
from curate.options import ScoreOptions
from curate.schemas import SHARDS, STATUS_FAILED_DOWNLOAD
from curate.score import jpeg
from curate.score.batches import read_batches
from curate.score.clip_model import TEST_MODEL
from curate.score.stage import score
from curate.score.tensor_preprocess import TensorPreprocess
from tests.tiny_clip import sample_pairs, shards_table, tiny_clip_checkpoint  # noqa: F401  (fixture)

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _opts(checkpoint, **kw) -> ScoreOptions:
    base = dict(model=TEST_MODEL, pretrained=None, checkpoint=str(checkpoint) if checkpoint else None, device="cpu",
                batch_size=16, workers=0)
    return ScoreOptions(**{**base, **kw})


def _reencode(data: bytes, mode: str, fmt: str = "JPEG", **save) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert(mode).save(buf, fmt, **save)
    return buf.getvalue()


def _clip(run: Path):
    return tables.read_table(run, "clip").to_pandas().set_index("uid")


def _write(run: Path, pairs, rows_per_part: int = 40) -> None:
    placeholder = sample_pairs()[0][0]  # shards_table reads each image's size; bad images get the placeholder's
    rows = shards_table([(placeholder, caption) for _, caption in pairs]).to_pylist()
    for row, (data, _) in zip(rows, pairs):
        row["image"] = data
    table = pa.Table.from_pylist(rows, schema=SHARDS)
    for i, start in enumerate(range(0, table.num_rows, rows_per_part)):
        tables.write_part(run, "shards", i, table.slice(start, rows_per_part))


def _shared_pairs(shared: Path, limit: int = 120) -> list[tuple[bytes, str]]:
    """Real JPEGs with captions from ../shared/data (Wikimedia, CC BY photos)."""
    pairs = []
    wiki = shared / "wikimedia_captions"
    if (wiki / "pairs.jsonl").is_file():
        for line in (wiki / "pairs.jsonl").read_text(encoding="utf-8").splitlines()[:limit]:
            row = json.loads(line)
            path = wiki / row["file"]
            if path.is_file():
                pairs.append((path.read_bytes(), row.get("alt_text") or row.get("caption") or ""))
    for path in sorted((shared / "cc_by_images").glob("*.jpg")):
        pairs.append((path.read_bytes(), path.stem))
    return pairs


def _compare_paths(tmp_path: Path, pairs, checkpoint, **kw):
    for decode in ("pil", "tensor"):
        _write(tmp_path / decode, pairs)
        score(tmp_path / decode, _opts(checkpoint, decode=decode, **kw))
    pil, tensor = _clip(tmp_path / "pil"), _clip(tmp_path / "tensor")
    assert list(pil.index) == list(tensor.index)
    assert pil["clip_score"].isna().equals(tensor["clip_score"].isna())
    np.testing.assert_allclose(tensor["clip_score"], pil["clip_score"], atol=1e-3)
    emb = {d: tables.read_table(tmp_path / d, "embeddings").to_pandas().set_index("uid") for d in ("pil", "tensor")}
    assert list(emb["pil"].index) == list(emb["tensor"].index)
    for column in ("image_embedding", "text_embedding"):
        a = np.stack(emb["pil"][column].to_numpy()).astype(np.float32)
        b = np.stack(emb["tensor"][column].to_numpy()).astype(np.float32)
        np.testing.assert_allclose(b, a, atol=5e-3)
    return pil, tensor


def test_tensor_path_scores_equal_the_pil_path_on_real_jpegs(tmp_path, tiny_clip_checkpoint):
    pairs = sample_pairs()  # 98 real photos: 256 and 224 px squares and larger non-square ones
    pil, tensor = _compare_paths(tmp_path, pairs, tiny_clip_checkpoint, batch_size=24)
    assert tensor["clip_score"].notna().all() and tensor["score_error"].isna().all()
    print("max |tensor - pil| on the bundled sample:", float(np.abs(tensor["clip_score"] - pil["clip_score"]).max()))


def test_tensor_path_scores_equal_the_pil_path_on_shared_data(tmp_path, tiny_clip_checkpoint, shared_data):
    pairs = _shared_pairs(shared_data)  # the fixture skips without ../shared/data; the sample test covers the same
    pil, tensor = _compare_paths(tmp_path, pairs, tiny_clip_checkpoint, batch_size=32, workers=2)
    assert tensor["clip_score"].notna().all()


def test_images_the_batched_decoder_cannot_take_fall_back_to_pil_or_become_errors(tmp_path, tiny_clip_checkpoint):
    good = [data for data, _ in sample_pairs()[:8]]
    truncated_with_eoi = good[3][: len(good[3]) // 2] + b"\xff\xd9"
    variants = {
        "jpeg": good[0],
        "grayscale": _reencode(good[1], "L"),
        "cmyk": _reencode(good[2], "CMYK"),
        "png": _reencode(good[4], "RGB", "PNG"),
        "progressive": _reencode(good[5], "RGB", progressive=True),
        "truncated": good[6][: len(good[6]) // 2],
        "truncated_with_eoi": truncated_with_eoi,
        "garbage": b"\xff\xd8 this is not a jpeg \xff\xd9",
        "empty": b"",
    }
    assert jpeg.plain_jpeg(variants["grayscale"]) and jpeg.plain_jpeg(variants["progressive"])
    assert not any(jpeg.plain_jpeg(variants[k]) for k in ("cmyk", "png", "truncated", "empty"))
    pairs = [(data, f"a photo {name}") for name, data in variants.items()]
    pil, tensor = _compare_paths(tmp_path, pairs, tiny_clip_checkpoint, batch_size=4)
    by_name = {name: uid for (name, _), uid in zip(variants.items(), tensor.index)}
    for name in ("jpeg", "grayscale", "cmyk", "png", "progressive"):
        assert tensor.loc[by_name[name], "clip_score"] == pytest.approx(pil.loc[by_name[name], "clip_score"], abs=1e-3)
    for name in ("truncated", "garbage", "empty"):
        assert np.isnan(tensor.loc[by_name[name], "clip_score"]), name
        assert tensor.loc[by_name[name], "score_error"].startswith("cannot decode image"), name
        assert tensor.loc[by_name[name], "score_error"] == pil.loc[by_name[name], "score_error"], name
    # a scan cut short but closed by an EOI: libjpeg and PIL both fill the rest, and both paths score it alike
    assert tensor.loc[by_name["truncated_with_eoi"], "clip_score"] == pytest.approx(
        pil.loc[by_name["truncated_with_eoi"], "clip_score"], abs=1e-3)


def test_missing_bytes_and_failed_downloads(tmp_path, tiny_clip_checkpoint):
    rows = shards_table(sample_pairs()[:3]).to_pylist()
    rows[1]["image"] = None  # says success, has no bytes
    rows.append({**rows[0], "uid": "f" * 32, "status": STATUS_FAILED_DOWNLOAD, "image": None})
    run = tmp_path / "run"
    tables.write_part(run, "shards", 0, pa.Table.from_pylist(rows, schema=SHARDS))
    counts = score(run, _opts(tiny_clip_checkpoint, decode="tensor", batch_size=2))
    assert (counts["rows"], counts["scored"], counts["failed"]) == (3, 2, 1)
    clip = _clip(run)
    assert "f" * 32 not in clip.index and "missing" in clip.loc[rows[1]["uid"], "score_error"]


def test_threads_tokenizer_processes_and_batch_sizes_do_not_change_the_tables(tmp_path, tiny_clip_checkpoint):
    pairs = sample_pairs()[:60]
    runs = {}
    for name, kw in {"inline": dict(workers=0, batch_size=16),
                     "threads": dict(workers=2, batch_size=7),
                     "processes": dict(workers=1, batch_size=16, tokenize_workers=1)}.items():
        _write(tmp_path / name, pairs, rows_per_part=25)
        score(tmp_path / name, _opts(tiny_clip_checkpoint, **kw))
        runs[name] = {t: tables.read_table(tmp_path / name, t) for t in ("clip", "embeddings")}
    for name in ("threads", "processes"):
        for t in ("clip", "embeddings"):
            a, b = runs["inline"][t], runs[name][t]
            assert a.column("uid").equals(b.column("uid")), (name, t)
            if t == "clip":
                np.testing.assert_allclose(b.column("clip_score").to_numpy(), a.column("clip_score").to_numpy(),
                                           atol=1e-6)
    # same batch size, same code: the threaded pipeline gives the very same bytes as the inline one
    assert runs["processes"]["clip"].equals(runs["inline"]["clip"])


def test_streams_a_part_in_batches(tmp_path):
    pairs = sample_pairs()[:50]
    rows = shards_table(pairs).to_pylist()
    for r in rows[::5]:
        r["status"], r["image"] = STATUS_FAILED_DOWNLOAD, None
    path = tables.write_part(tmp_path, "shards", 0, pa.Table.from_pylist(rows, schema=SHARDS))
    batches = list(read_batches(path, 16))
    assert [len(b) for b in batches] == [16, 16, 8]  # 40 successful rows, re-batched across the failures
    assert [b.start for b in batches] == [0, 16, 32]
    ok_rows = [r for r in rows if r["status"] == "success"]
    assert [u for b in batches for u in b.uids] == [r["uid"] for r in ok_rows]
    assert all(b.image_bytes(i) == ok_rows[b.start + i]["image"] for b in batches for i in range(len(b)))


@pytest.mark.parametrize("cfg", [
    dict(size=(64, 64), resize_mode="shortest", interpolation="bicubic"),
    dict(size=(224, 224), resize_mode="shortest", interpolation="bicubic"),
    dict(size=(48, 80), resize_mode="shortest", interpolation="bilinear"),
    dict(size=(64, 64), resize_mode="longest", interpolation="bicubic", fill_color=0),
    dict(size=(300, 300), resize_mode="longest", interpolation="bicubic", fill_color=0),
    dict(size=(64, 96), resize_mode="squash", interpolation="bicubic"),
])
def test_tensor_preprocess_matches_open_clips_transform(cfg):
    cfg = {"mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD, **cfg}
    reference = image_transform_v2(PreprocessCfg(**cfg), is_train=False)
    ours = TensorPreprocess(cfg, torch.device("cpu"))
    images = [data for data, _ in sample_pairs()[::7]]  # squares and non-square photos of several sizes
    expected = torch.stack([reference(Image.open(io.BytesIO(b))) for b in images])
    decoded = [decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8), mode=ImageReadMode.RGB) for b in images]
    got = ours(decoded)
    assert got.shape == expected.shape
    # a level or two of 255 apart (torch's antialiased kernels vs Pillow's), in normalised units
    level = 1 / 255 / min(cfg["std"])
    assert (got - expected).abs().max() <= 3 * level
    assert (got - expected).abs().mean() <= 0.1 * level
