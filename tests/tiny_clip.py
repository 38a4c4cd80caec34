"""A tiny CLIP trained for a few seconds on the bundled sample, for tests that need matched pairs to score higher
than mismatched ones. The weights are the TEST model's ("tiny-test"); scores mean nothing beyond this sample.

    from tests.tiny_clip import tiny_clip_checkpoint   # session fixture -> Path of a checkpoint
    load_clip("tiny-test", checkpoint=str(path))

Training is seeded and runs a fixed number of full-batch steps, so a checkpoint is the same on every run; it is
cached under the temp folder keyed by everything that shapes it, so separate pytest sessions train it once.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence, Union

import pyarrow as pa
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from curate.score.clip_model import TEST_MODEL, load_clip
from curate.schemas import SHARDS, STATUS_SUCCESS
from curate.tables import compute_uid, write_part

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "pipelines" / "sample"
DEFAULT_STEPS = 30
LEARNING_RATE = 1e-3

ImageLike = Union[Image.Image, bytes]


def sample_pairs(caption_field: str = "alt_text") -> list[tuple[bytes, str]]:
    """The bundled sample as (JPEG bytes, caption) in samples.jsonl order."""
    pairs = []
    with open(SAMPLE_DIR / "samples.jsonl", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            caption = row.get(caption_field) or row.get("caption")
            if not caption:
                raise ValueError(f"{SAMPLE_DIR / 'samples.jsonl'} line {line_no}: no {caption_field!r} or 'caption'")
            pairs.append(((SAMPLE_DIR / row["file"]).read_bytes(), caption))
    return pairs


def shards_table(pairs: Sequence[tuple[bytes, str]], url_prefix: str = "http://sample.test/img") -> pa.Table:
    """A SHARDS table of successful downloads holding `pairs` (JPEG bytes, caption); uids unique per position."""
    rows = []
    for i, (data, caption) in enumerate(pairs):
        url = f"{url_prefix}/{i}.jpg"
        width, height = Image.open(io.BytesIO(data)).size
        rows.append({"uid": compute_uid(url, caption), "url": url, "caption": caption, "status": STATUS_SUCCESS,
                     "error_message": None, "image": data, "width": width, "height": height,
                     "original_width": width, "original_height": height,
                     "sha256": hashlib.sha256(data).hexdigest()})
    return pa.Table.from_pylist(rows, schema=SHARDS)


def write_sample_shards(run_dir: str | os.PathLike, pairs: Sequence[tuple[bytes, str]], rows_per_part: int = 40) -> list[Path]:
    """RUN/shards/ with `pairs` split into parts, as the download stage would leave it."""
    table = shards_table(pairs)
    return [write_part(run_dir, "shards", i, table.slice(start, rows_per_part))
            for i, start in enumerate(range(0, table.num_rows, rows_per_part))]


def _as_image(image: ImageLike) -> Image.Image:
    return Image.open(io.BytesIO(image)) if isinstance(image, (bytes, bytearray)) else image


def _cache_key(pairs: Sequence[tuple[ImageLike, str]], steps: int, seed: int) -> str:
    digest = hashlib.sha256(f"{steps}|{seed}|{LEARNING_RATE}|{torch.__version__}".encode())
    digest.update((Path(__file__).resolve().parents[1] / "curate" / "score" / "model_configs" / f"{TEST_MODEL}.json").read_bytes())
    digest.update(Path(__file__).read_bytes())  # a change to this recipe trains afresh
    for image, caption in pairs:
        digest.update(image if isinstance(image, (bytes, bytearray)) else image.tobytes())
        digest.update(caption.encode("utf-8"))
    return digest.hexdigest()[:16]


def train_tiny_clip(
    pairs: Sequence[tuple[ImageLike, str]],
    seconds: float = 15.0,
    seed: int = 0,
    *,
    steps: int = DEFAULT_STEPS,
    out_path: str | os.PathLike | None = None,
) -> Path:
    """Train the tiny-test model contrastively on `pairs` (full batch, symmetric InfoNCE via open_clip's ClipLoss)
    and save its state dict (.safetensors; give out_path that suffix) loadable with load_clip("tiny-test", checkpoint=path).

    `steps` fixes the work, so the result is deterministic; `seconds` is only a safety cap for a very slow machine
    (hitting it warns, since the checkpoint then depends on the machine's speed).
    """
    if len(pairs) < 2:
        raise ValueError("contrastive training needs at least 2 pairs")
    if out_path is not None and Path(out_path).suffix != ".safetensors":
        raise ValueError(f"out_path must end in .safetensors (open_clip picks the loader by suffix): {out_path}")
    loaded = load_clip(TEST_MODEL, device="cpu", precision="fp32")
    model = loaded.model
    images = torch.stack([loaded.preprocess(_as_image(img).convert("RGB")) for img, _ in pairs])
    tokens = loaded.tokenizer([caption for _, caption in pairs])

    # one thread: the same float reduction order on every machine, and no spinning threads on a busy shared CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(model, images, tokens, steps, seconds, seed)
    finally:
        torch.set_num_threads(threads)

    path = Path(out_path) if out_path else Path(tempfile.mkdtemp(prefix="tiny-clip-")) / "tiny-test.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    # safetensors: the same weights give the same bytes (torch.save embeds the file name), so the checksum is stable
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    os.replace(tmp, path)  # a concurrent session sees the whole file or none
    return path


def _train(model: torch.nn.Module, images: torch.Tensor, tokens: torch.Tensor, steps: int, seconds: float, seed: int):
    from open_clip.loss import ClipLoss

    torch.manual_seed(seed)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.0)
    loss_fn = ClipLoss()
    started = time.monotonic()
    for step in range(steps):
        if time.monotonic() - started > seconds:
            warnings.warn(f"tiny CLIP training stopped at step {step}/{steps} after {seconds}s; "
                          "the checkpoint is not the reproducible one")
            break
        image_features, text_features, logit_scale = model(images, tokens)
        loss = loss_fn(image_features, text_features, logit_scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()


def cached_tiny_clip(seed: int = 0, steps: int = DEFAULT_STEPS) -> Path:
    """The checkpoint trained on the bundled sample, trained once per machine and reused."""
    pairs = sample_pairs()
    cache_dir = Path(tempfile.gettempdir()) / "fairsift-tiny-clip"
    path = cache_dir / f"tiny-test-{_cache_key(pairs, steps, seed)}.safetensors"
    if not path.is_file():
        # a generous cap: the cached file should be the reproducible one even on a crowded machine
        train_tiny_clip(pairs, seconds=600.0, seed=seed, steps=steps, out_path=path)
    return path


@pytest.fixture(scope="session")
def tiny_clip_checkpoint() -> Path:
    """Path of the tiny-test checkpoint trained on the bundled sample pairs."""
    return cached_tiny_clip()
