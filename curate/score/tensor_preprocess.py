"""open_clip's eval transform on batches of decoded uint8 image tensors, on the GPU (or the CPU, by the same code).

open_clip preprocesses one PIL image at a time: resize (shortest edge, longest edge or squash, with the model's
interpolation and antialiasing), centre crop (or crop-or-pad), to float in [0, 1], normalise with the model's
mean/std. Here the same steps run on tensors, one call per group of same-sized images (a run's shards are mostly of
one size, so a batch is usually one group), using torchvision's own resize/crop functions so the output sizes are
computed exactly as for the PIL path. Resizing uint8 tensors rounds back to uint8 as PIL does; the pixels then
differ from PIL's by at most a level or two of 255 (torch's antialiased kernels vs Pillow's), which moves CLIP
scores by ~1e-4 (tests/test_score_tensor_path.py holds them to 1e-3).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Optional, Sequence

import open_clip
import torch
from open_clip.transform import center_crop_or_pad
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from curate.score.clip_model import LoadedClip


def preprocess_config(loaded: LoadedClip) -> dict[str, Any]:
    """How the model expects images: open_clip's final preprocess config (size, mean, std, interpolation,
    resize_mode, fill_color), which `loaded.preprocess` was built from; tag overrides for checkpoints included."""
    cfg = dict(getattr(getattr(loaded.model, "visual", None), "preprocess_cfg", None) or {})
    defaults = {"size": loaded.image_size, "mean": open_clip.OPENAI_DATASET_MEAN, "std": open_clip.OPENAI_DATASET_STD,
                "interpolation": "bicubic", "resize_mode": "shortest", "fill_color": 0}
    cfg = {**defaults, **{k: v for k, v in cfg.items() if v is not None}}
    size = cfg["size"]
    cfg["size"] = (int(size), int(size)) if isinstance(size, int) else tuple(int(x) for x in size)
    return cfg


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """Stack [3, h, w] images into [n, 3, h, w] with a plain copy of their memory: libjpeg's output is an HWC buffer
    seen as CHW (stacking it as CHW is a strided gather, ~2x slower), nvJPEG's is planar CHW."""
    if images[0].is_contiguous():
        return torch.stack(images)
    return torch.stack([image.permute(1, 2, 0) for image in images]).permute(0, 3, 1, 2)  # channels-last batch


class TensorPreprocess:
    def __init__(self, cfg: dict[str, Any], device: torch.device):
        self.size = tuple(cfg["size"])  # (height, width)
        self.resize_mode = cfg.get("resize_mode") or "shortest"
        if self.resize_mode not in ("shortest", "longest", "squash"):
            raise ValueError(f"unknown open_clip resize_mode {self.resize_mode!r}")
        self.interpolation = InterpolationMode.BILINEAR if cfg.get("interpolation") == "bilinear" \
            else InterpolationMode.BICUBIC  # open_clip's own rule: anything else (incl. "random") is bicubic
        self.fill = cfg.get("fill_color", 0)
        self.device = device
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32, device=device).view(1, -1, 1, 1)

    def _keep_ratio_size(self, height: int, width: int, longest: float) -> list[int]:
        # open_clip's ResizeKeepRatio.get_params without the random parts
        ratio_h, ratio_w = height / self.size[0], width / self.size[1]
        ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
        return [round(height / ratio), round(width / ratio)]

    def resize_crop(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [n, 3, h, w] of one size -> uint8 [n, 3, H, W] at the model's input size."""
        height, width = images.shape[-2:]
        if self.resize_mode == "squash":
            return F.resize(images, list(self.size), self.interpolation, antialias=True)
        if self.resize_mode == "longest":
            resized = F.resize(images, self._keep_ratio_size(height, width, 1.0), self.interpolation, antialias=True)
            return center_crop_or_pad(resized, list(self.size), fill=self.fill)
        if self.size[0] == self.size[1]:  # torchvision's Resize(int): shortest edge, long edge truncated as for PIL
            resized = F.resize(images, self.size[0], self.interpolation, antialias=True)
        else:  # open_clip builds this ResizeKeepRatio without passing its interpolation: always bicubic
            resized = F.resize(images, self._keep_ratio_size(height, width, 0.0), InterpolationMode.BICUBIC,
                               antialias=True)
        return F.center_crop(resized, list(self.size))

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        # the same operations, in the same order and precision, as ToTensor + Normalize
        return images.to(torch.float32).div(255).sub_(self.mean).div_(self.std)

    def __call__(self, images: Sequence[torch.Tensor], out: Optional[torch.Tensor] = None,
                 positions: Optional[Sequence[int]] = None) -> torch.Tensor:
        """uint8 [3, h, w] images (any sizes, CPU or this device) -> float32 [n, 3, H, W] on this device.

        With `out` and `positions`, image i is written to out[positions[i]] and `out` is returned.
        """
        if out is None:
            out = torch.empty((len(images), 3, *self.size), dtype=torch.float32, device=self.device)
            positions = range(len(images))
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, image in enumerate(images):
            groups[(image.device, tuple(image.shape))].append(i)
        for (device, _), members in groups.items():
            batch = _stack([images[i] for i in members])
            if batch.device != self.device:
                if self.device.type == "cuda":
                    batch = batch.pin_memory()
                batch = batch.to(self.device, non_blocking=True)
            index = torch.tensor([positions[i] for i in members], device=self.device)
            out.index_copy_(0, index, self.normalise(self.resize_crop(batch)))
        return out
