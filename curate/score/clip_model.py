"""CLIP models through open_clip: loading by the names open_clip uses, and encoding to L2-normalised embeddings.

A model is named as open_clip names it: an architecture with a pretrained tag (`ViT-B-32` + `laion2b_s34b_b79k`),
`hf-hub:org/repo`, or an architecture with a local checkpoint file. "tiny-test" is a tiny architecture registered
here for tests and offline demos; random-init (seed 0, identical everywhere) or loaded from a checkpoint.

Real weights are never replaced silently: when they cannot be had, `WeightsUnavailableError` says how to pass a
local checkpoint. Without network access the load fails in seconds instead of waiting out the hub's retries.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence
from urllib.parse import urlparse

import numpy as np
import open_clip
import torch
import torch.nn.functional as F

from curate.schemas import TEST_MODEL_MARKER
from curate.score.model_names import check_model_name

TEST_MODEL = "tiny-test"
TEST_MODEL_SEED = 0
HF_HUB_PREFIX = "hf-hub:"
_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_HUB_PROBE_TIMEOUT_S = 3.0


class WeightsUnavailableError(ValueError):
    """Real CLIP weights could not be loaded (no network, no cache); the message says how to pass a local file."""


@dataclass
class LoadedClip:
    model: torch.nn.Module
    preprocess: Callable  # eval transform: PIL image -> float tensor [3, H, W]
    tokenizer: Callable  # list[str] -> LongTensor [n, context_length]
    model_id: str
    weights_sha256: Optional[str]
    is_test_model: bool
    device: torch.device
    embed_dim: int
    image_size: int
    arch: str
    pretrained: Optional[str]
    checkpoint: Optional[str]
    precision: str  # "fp32", or the autocast dtype ("fp16", "bf16") over fp32 weights


def register_test_architecture() -> None:
    """Make "tiny-test" a known open_clip architecture (idempotent)."""
    if TEST_MODEL not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR / f"{TEST_MODEL}.json")


register_test_architecture()


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here; use --device cpu or auto")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use fp32 (or bf16) on CPU")
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision must be auto, fp32, fp16 or bf16, not {precision!r}")
    return precision


_FILE_SHA256: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> checksum: the stage and its workers ask twice


def file_sha256(path: str | os.PathLike) -> str:
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
    if key not in _FILE_SHA256:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _FILE_SHA256[key] = digest.hexdigest()
    return _FILE_SHA256[key]


def state_dict_sha256(model: torch.nn.Module) -> str:
    """Checksum of the weights themselves (names, dtypes, shapes, bytes), for models that have no file."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()


def _how_to_pass_weights(arch: str, pretrained: Optional[str]) -> str:
    if arch.startswith(HF_HUB_PREFIX):
        repo, fetch, example_arch = arch[len(HF_HUB_PREFIX):], f"open_clip.create_model('{arch}')", "<its architecture>"
    else:
        cfg = open_clip.get_pretrained_cfg(arch, pretrained or "")
        repo = "/".join((cfg.get("hf_hub") or "").strip("/").split("/")[:2]) or None
        fetch, example_arch = f"open_clip.create_model('{arch}', pretrained='{pretrained}')", arch
        if not repo and cfg.get("url"):
            repo = cfg["url"]
    where = f"https://huggingface.co/{repo}" if repo and "://" not in repo else (repo or "the model hub")
    return (
        "Pass a local checkpoint instead:\n"
        f"  fairsift score RUN --model {example_arch} --checkpoint /path/to/open_clip_model.safetensors\n"
        f"To get the file, on a machine with internet download open_clip_model.safetensors (or open_clip_pytorch_model.bin) "
        f"from {where}, or run `python -c \"import open_clip; {fetch}\"` there and take the file from "
        "~/.cache/huggingface/hub/models--*/snapshots/*/; copy it here.\n"
        "Weights already in the Hugging Face cache (~/.cache/huggingface, or $HF_HOME) load without network; "
        "HF_HUB_OFFLINE=1 makes sure nothing is fetched."
    )


@lru_cache(maxsize=None)
def _host_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=_HUB_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


def hub_reachable() -> bool:
    """Can the model hub be reached? Asked once per process, in seconds, so that no load waits out retries."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy decides; a direct probe would say nothing
    url = urlparse(constants.ENDPOINT)
    return _host_reachable(url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80))


@contextlib.contextmanager
def _hub_offline(offline: bool) -> Iterator[None]:
    """Run open_clip's hub calls in huggingface_hub's offline mode (cache only, no request) when the hub is away."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = before or offline
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _cached_hub_weights(repo_and_file: str) -> Optional[str]:
    """The cached file of an open_clip hub entry ('org/repo/' or 'org/repo/file'), preferring safetensors as open_clip does."""
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = os.path.split(repo_and_file)  # the split open_clip makes of its hf_hub entries
    filename = filename or "open_clip_pytorch_model.bin"
    candidates = [filename]
    if filename == "open_clip_pytorch_model.bin":
        candidates.insert(0, "open_clip_model.safetensors")
    elif filename.endswith((".bin", ".pth")):
        candidates.insert(0, filename[:-4] + ".safetensors")
    for name in candidates:
        found = try_to_load_from_cache(repo_id, name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _cached_weights_file(arch: str, pretrained: Optional[str]) -> Optional[str]:
    """Where the hub weights of a loaded model sit on disk, for the manifest's checksum (None if not found)."""
    if arch.startswith(HF_HUB_PREFIX):
        return _cached_hub_weights(arch[len(HF_HUB_PREFIX):] + "/")
    cfg = open_clip.get_pretrained_cfg(arch, pretrained or "")
    if cfg.get("file"):
        return cfg["file"]
    if cfg.get("hf_hub"):
        return _cached_hub_weights(cfg["hf_hub"])
    if cfg.get("url"):
        path = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        return str(path) if path.is_file() else None
    return None


def _create(arch_or_name: str, pretrained: Optional[str], device: torch.device, **kwargs) -> tuple[torch.nn.Module, Callable]:
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch_or_name, pretrained=pretrained, precision="fp32", device=device, **kwargs
    )
    model.eval()
    return model, preprocess


def _load_checkpoint(arch: str, checkpoint: str, pretrained: Optional[str], device: torch.device):
    path = Path(checkpoint)
    if arch.startswith(HF_HUB_PREFIX):
        raise ValueError(f"--checkpoint needs an open_clip architecture as --model (e.g. ViT-B-32), not {arch!r}")
    # a known tag alongside a checkpoint only says how the weights expect images to be preprocessed
    tag_cfg = open_clip.get_pretrained_cfg(arch, pretrained) if pretrained else {}
    preprocess_kwargs = {k: tag_cfg[src] for k, src in (("image_mean", "mean"), ("image_std", "std"),
                         ("image_interpolation", "interpolation"), ("image_resize_mode", "resize_mode")) if src in tag_cfg}
    try:
        model, preprocess = _create(arch, str(path), device, **preprocess_kwargs)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} could not be loaded into architecture {arch}: {exc}") from exc
    except Exception as exc:  # torch.load / safetensors raise many kinds on a file that is not a checkpoint
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {path} is not a readable open_clip / PyTorch checkpoint "
                         f"({type(exc).__name__}: {first_line})") from exc
    return model, preprocess


def _load_hub(arch: str, pretrained: Optional[str], device: torch.device):
    offline = not hub_reachable()
    try:
        with _hub_offline(offline):
            model, preprocess = _create(arch, None if arch.startswith(HF_HUB_PREFIX) else pretrained, device)
            tokenizer = open_clip.get_tokenizer(arch)
    except Exception as exc:  # open_clip wraps hub and file errors in RuntimeError / FileNotFoundError
        where = "no network access to the model hub and the weights are not in the local cache" if offline else str(exc)
        raise WeightsUnavailableError(
            f"CLIP weights for {arch}{'/' + pretrained if pretrained and not arch.startswith(HF_HUB_PREFIX) else ''} "
            f"could not be loaded: {where}.\n{_how_to_pass_weights(arch, pretrained)}"
        ) from exc
    return model, preprocess, tokenizer


@contextlib.contextmanager
def _quiet_open_clip_logs() -> Iterator[None]:
    """open_clip logs "initialized randomly" for the test model and download errors that our own error replaces."""
    previous = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(previous)


def _embed_dim(model: torch.nn.Module) -> int:
    dim = getattr(getattr(model, "visual", None), "output_dim", None)
    if isinstance(dim, int):
        return dim
    projection = getattr(model, "text_projection", None)
    if isinstance(projection, torch.Tensor):
        return int(projection.shape[-1])
    raise ValueError("cannot tell the embedding size of this model")


def _image_size(model: torch.nn.Module) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


@dataclass(frozen=True)
class ModelIdentity:
    """What names a model's weights: the id written beside every score, and the checksum of the weights."""

    model_id: str
    weights_sha256: Optional[str]
    pretrained: Optional[str]  # the tag actually used (None for checkpoints without one, hub names, tiny-test)
    checkpoint: Optional[str]


def _resolved_names(model: str, pretrained: Optional[str], checkpoint: Optional[str]
                    ) -> tuple[Optional[str], Optional[str]]:
    """(pretrained, checkpoint) as load_clip uses them; unknown names are a clear error with the closest valid ones."""
    if model.startswith(HF_HUB_PREFIX):
        pretrained = None  # open_clip ignores a tag for hub names; so does the model id
    if pretrained and not checkpoint and os.path.isfile(pretrained):
        checkpoint, pretrained = pretrained, None  # open_clip also takes a file as `pretrained`: it is a checkpoint
    check_model_name(model, pretrained, checkpoint)  # unknown names: the closest valid ones, before any loading
    if checkpoint:
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"checkpoint file not found: {checkpoint}")
    elif model != TEST_MODEL and not model.startswith(HF_HUB_PREFIX) and not pretrained:
        raise ValueError(f"{model} needs weights: pass --pretrained TAG (one of "
                         f"{', '.join(open_clip.list_pretrained_tags_by_model(model)) or 'none known'}) "
                         f"or --checkpoint PATH")
    return pretrained, (str(checkpoint) if checkpoint else None)


def _seeded_test_model() -> tuple[torch.nn.Module, Callable]:
    # seeded in a forked RNG: identical weights on every machine, and the caller's RNG stream untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TEST_MODEL_SEED)
        return _create(TEST_MODEL, None, torch.device("cpu"))


@lru_cache(maxsize=1)
def _test_model_sha256() -> str:
    with warnings.catch_warnings(), _quiet_open_clip_logs():
        warnings.simplefilter("ignore", UserWarning)
        return state_dict_sha256(_seeded_test_model()[0])


def model_identity(model: str, pretrained: Optional[str] = None, checkpoint: Optional[str] = None) -> ModelIdentity:
    """The id and weights checksum that load_clip will report, without loading the model (a stage plans its parts
    with them before any worker loads it). Hub weights that are not in the local cache have no checksum yet."""
    pretrained, checkpoint = _resolved_names(model, pretrained, checkpoint)
    if checkpoint:
        sha = file_sha256(checkpoint)
        label = f"{model} (checkpoint {Path(checkpoint).name}, sha256 {sha[:12]})"
    elif model == TEST_MODEL:
        sha = _test_model_sha256()
        label = f"{TEST_MODEL} (random init, seed {TEST_MODEL_SEED})"
    else:
        cached = _cached_weights_file(model, pretrained)
        sha = file_sha256(cached) if cached else None
        label = model if model.startswith(HF_HUB_PREFIX) else f"{model}/{pretrained}"
    if model == TEST_MODEL:
        label += TEST_MODEL_MARKER
    return ModelIdentity(model_id=label, weights_sha256=sha, pretrained=pretrained, checkpoint=checkpoint)


def load_clip(
    model: str,
    pretrained: Optional[str] = None,
    checkpoint: Optional[str] = None,
    device: str = "auto",
    precision: str = "auto",
) -> LoadedClip:
    """Load a CLIP model with its eval transform and tokenizer; see the module docstring for the names accepted."""
    torch_device = resolve_device(device)
    precision = resolve_precision(precision, torch_device)
    is_test = model == TEST_MODEL
    pretrained, checkpoint = _resolved_names(model, pretrained, checkpoint)

    with warnings.catch_warnings(), _quiet_open_clip_logs():
        warnings.simplefilter("ignore", UserWarning)  # QuickGELU notices and the like are open_clip's business
        if checkpoint:
            net, preprocess = _load_checkpoint(model, checkpoint, pretrained, torch_device)
            tokenizer = open_clip.get_tokenizer(model)
        elif is_test:
            net, preprocess = _seeded_test_model()
            net = net.to(torch_device)
            tokenizer = open_clip.get_tokenizer(TEST_MODEL)
        else:
            net, preprocess, tokenizer = _load_hub(model, pretrained, torch_device)
    identity = model_identity(model, pretrained, checkpoint)  # after the load: hub weights are cached by now
    return LoadedClip(model=net, preprocess=preprocess, tokenizer=tokenizer, model_id=identity.model_id,
                      weights_sha256=identity.weights_sha256, is_test_model=is_test, device=torch_device,
                      embed_dim=_embed_dim(net), image_size=_image_size(net), arch=model, pretrained=pretrained,
                      checkpoint=checkpoint, precision=precision)


def autocast(loaded: LoadedClip):
    """Mixed precision over fp32 weights when the precision asks for it; a no-op context for fp32."""
    if loaded.precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.float16 if loaded.precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=loaded.device.type, dtype=dtype)


def _normalised(features: torch.Tensor) -> np.ndarray:
    # normalise in fp32: an fp16 norm leaves vectors measurably off unit length
    return F.normalize(features.float(), dim=-1).cpu().numpy()


def encode_images(loaded: LoadedClip, pixel_batch: torch.Tensor) -> np.ndarray:
    """[n, 3, H, W] preprocessed pixels -> [n, embed_dim] float32 unit vectors."""
    with torch.inference_mode(), autocast(loaded):
        features = loaded.model.encode_image(pixel_batch.to(loaded.device, non_blocking=True))
    return _normalised(features)


def encode_tokens(loaded: LoadedClip, tokens: torch.Tensor) -> np.ndarray:
    """[n, context_length] token ids (from loaded.tokenizer) -> [n, embed_dim] float32 unit vectors."""
    with torch.inference_mode(), autocast(loaded):
        features = loaded.model.encode_text(tokens.to(loaded.device, non_blocking=True))
    return _normalised(features)


def encode_texts(loaded: LoadedClip, texts: Sequence[str]) -> np.ndarray:
    """Captions -> [n, embed_dim] float32 unit vectors; the tokenizer truncates at the context length (77)."""
    if len(texts) == 0:
        return np.zeros((0, loaded.embed_dim), dtype=np.float32)
    return encode_tokens(loaded, loaded.tokenizer([t or "" for t in texts]))


def model_info(loaded: LoadedClip) -> dict[str, Any]:
    """JSON-able facts about the model, recorded in the manifest next to the scores it made."""
    return {
        "id": loaded.model_id,
        "arch": loaded.arch,
        "pretrained": loaded.pretrained,
        "checkpoint": loaded.checkpoint,
        "weights_sha256": loaded.weights_sha256,
        "is_test_model": loaded.is_test_model,
        "device": str(loaded.device),
        "precision": loaded.precision,
        "embed_dim": loaded.embed_dim,
        "image_size": loaded.image_size,
    }

