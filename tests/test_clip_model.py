"""CLIP model loading: the tiny test model, local checkpoints, cached hub weights offline, and clear failures."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from curate.score.clip_model import (
    TEST_MODEL,
    WeightsUnavailableError,
    encode_images,
    encode_texts,
    load_clip,
    model_info,
)
from curate.score.stage import default_pretrained
from tests.tiny_clip import sample_pairs, tiny_clip_checkpoint  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    """A local port nothing listens on: an endpoint there refuses connections at once, like a machine offline."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_python(code: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(env_extra, PYTHONPATH=str(ROOT), WANDB_MODE="disabled", NO_ALBUMENTATIONS_UPDATE="1")
    # the timeout only stops a hung run; the test itself asserts on the outcome
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def _pixels(loaded, n: int = 4) -> torch.Tensor:
    import io

    return torch.stack([loaded.preprocess(Image.open(io.BytesIO(img))) for img, _ in sample_pairs()[:n]])


def test_test_model_is_seeded_flagged_and_encodes_unit_vectors():
    a = load_clip(TEST_MODEL, device="cpu")
    b = load_clip(TEST_MODEL, device="cpu")
    assert a.weights_sha256 == b.weights_sha256 and len(a.weights_sha256) == 64
    assert a.is_test_model and "TEST MODEL" in a.model_id and "random init, seed 0" in a.model_id
    assert (a.embed_dim, a.image_size) == (64, 64)
    info = model_info(a)
    assert json.loads(json.dumps(info)) == info
    assert info["is_test_model"] is True and info["device"] == "cpu" and info["precision"] == "fp32"

    images = encode_images(a, _pixels(a))
    texts = encode_texts(a, ["a red bus", "", "x " * 500])  # an empty and an over-long caption both encode
    for emb in (images, texts):
        assert emb.dtype == np.float32 and emb.shape[1] == 64
        np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(encode_images(b, _pixels(b)), images)


def test_checkpoint_loads_with_file_checksum_and_matches_open_clip(tiny_clip_checkpoint):
    loaded = load_clip(TEST_MODEL, checkpoint=str(tiny_clip_checkpoint), device="cpu")
    assert loaded.weights_sha256 == hashlib.sha256(tiny_clip_checkpoint.read_bytes()).hexdigest()
    assert loaded.checkpoint == str(tiny_clip_checkpoint) and loaded.is_test_model
    assert loaded.weights_sha256[:12] in loaded.model_id and "TEST MODEL" in loaded.model_id
    assert loaded.weights_sha256 != load_clip(TEST_MODEL, device="cpu").weights_sha256

    reference, _, preprocess = open_clip.create_model_and_transforms(TEST_MODEL, pretrained=str(tiny_clip_checkpoint))
    reference.eval()
    with torch.no_grad():
        expected = reference.encode_image(_pixels(loaded), normalize=True).numpy()
        expected_text = reference.encode_text(open_clip.get_tokenizer(TEST_MODEL)(["a dog"]), normalize=True).numpy()
    np.testing.assert_allclose(encode_images(loaded, _pixels(loaded)), expected, atol=1e-5)
    np.testing.assert_allclose(encode_texts(loaded, ["a dog"]), expected_text, atol=1e-5)


def test_missing_weights_fail_fast_with_checkpoint_instructions(tmp_path):
    code = """
        from curate.score.clip_model import WeightsUnavailableError, load_clip
        try:
            load_clip("ViT-B-32", pretrained="laion2b_s34b_b79k", device="cpu")
        except WeightsUnavailableError as exc:
            print("RAISED", isinstance(exc, ValueError))
            print(exc)
    """
    # offline by setting, and offline in fact (the hub endpoint refuses connections); the cache is empty in both
    for env in ({"HF_HUB_OFFLINE": "1"}, {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"}):
        proc = _run_python(code, {"HF_HOME": str(tmp_path / "hf"), **env})
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "RAISED True" in proc.stdout, (env, proc.stdout, proc.stderr[-3000:])
        assert "fairsift score RUN --model ViT-B-32 --checkpoint" in proc.stdout
        assert "HF_HUB_OFFLINE" in proc.stdout and "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in proc.stdout
        assert "Retrying" not in proc.stderr  # no waiting out the hub client's retries


def test_cached_hub_weights_load_without_network(tmp_path, tiny_clip_checkpoint):
    """An hf-hub model already in the Hugging Face cache loads while the hub is unreachable."""
    repo, commit = "fairsift-test/tiny-clip", "0" * 40
    repo_dir = tmp_path / "hf" / "hub" / f"models--{repo.replace('/', '--')}"
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    model_cfg = json.loads((ROOT / "curate" / "score" / "model_configs" / "tiny-test.json").read_text())
    (snapshot / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    shutil.copyfile(tiny_clip_checkpoint, snapshot / "open_clip_model.safetensors")

    code = f"""
        import json
        from curate.score.clip_model import encode_texts, load_clip, model_info
        loaded = load_clip("hf-hub:{repo}", device="cpu")
        print(json.dumps({{"info": model_info(loaded), "emb": encode_texts(loaded, ["a dog"]).tolist()}}))
    """
    proc = _run_python(code, {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["info"]["id"] == f"hf-hub:{repo}" and out["info"]["is_test_model"] is False
    assert out["info"]["weights_sha256"] == hashlib.sha256((snapshot / "open_clip_model.safetensors").read_bytes()).hexdigest()
    expected = encode_texts(load_clip(TEST_MODEL, checkpoint=str(tiny_clip_checkpoint), device="cpu"), ["a dog"])
    np.testing.assert_allclose(np.array(out["emb"]), expected, atol=1e-5)


def test_bad_names_and_paths_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown open_clip architecture 'ViT-Nope'"):
        load_clip("ViT-Nope", pretrained="x", device="cpu")
    with pytest.raises(ValueError, match="unknown pretrained tag 'nope' for ViT-B-32"):
        load_clip("ViT-B-32", pretrained="nope", device="cpu")
    with pytest.raises(ValueError, match="--pretrained TAG .* or --checkpoint PATH"):
        load_clip("ViT-B-32", pretrained=None, device="cpu")
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        load_clip(TEST_MODEL, checkpoint=str(tmp_path / "missing.pt"), device="cpu")
    garbage = tmp_path / "garbage.pt"
    torch.save({"visual.nothing": torch.zeros(1)}, garbage)
    with pytest.raises(ValueError, match="could not be loaded into architecture tiny-test"):
        load_clip(TEST_MODEL, checkpoint=str(garbage), device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_clip(TEST_MODEL, device="cuda")
    assert not issubclass(FileNotFoundError, WeightsUnavailableError)


def test_default_pretrained_tags():
    assert default_pretrained("ViT-B-32", None) == "laion2b_s34b_b79k"
    assert default_pretrained("ViT-L-14", None) == open_clip.list_pretrained_tags_by_model("ViT-L-14")[0]
    assert default_pretrained("ViT-B-32", Path("/some/ckpt.pt")) is None
    assert default_pretrained(TEST_MODEL, None) is None
    assert default_pretrained("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", None) is None


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(ValueError, match=r"weights\.pt is not a readable open_clip / PyTorch checkpoint"):
        load_clip("ViT-B-32", checkpoint=str(bad), device="cpu")
