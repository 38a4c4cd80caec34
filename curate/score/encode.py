"""Encoding prepared batches: CLIP image and text embeddings, their cosine, and the copy back to the host.

Scores are the cosine of the fp32-normalised embeddings (computed on the device, before the embeddings are rounded
to float16 for storage), exactly as `clip_model.encode_images`/`encode_tokens` would give them. On CUDA the copies
back go to pinned buffers without blocking and are collected one batch later, so the host launches batch i+1's
kernels while batch i is still running instead of waiting for it; the caller bounds how many batches are in
flight (`IN_FLIGHT`) so that fast decoding cannot pile pixel batches up in device memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from curate.score.clip_model import LoadedClip, autocast


IN_FLIGHT = 2  # batches encoded but not yet waited for


@dataclass
class Encoded:
    scores: torch.Tensor  # float32 [k] (host, pinned on CUDA)
    image: torch.Tensor  # float16 [k, dim]
    text: torch.Tensor  # float16 [k, dim]
    done: Optional[torch.cuda.Event]

    def wait(self) -> None:
        if self.done is not None:
            self.done.synchronize()

    def numpy(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.wait()
        return self.scores.numpy(), self.image.numpy(), self.text.numpy()


def _to_host(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.device.type == "cpu":
        return tensor
    host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    return host.copy_(tensor, non_blocking=True)


def encode_pairs(loaded: LoadedClip, pixels: torch.Tensor, tokens: torch.Tensor,
                 ready: Optional[torch.cuda.Event] = None) -> Encoded:
    """pixels [k, 3, H, W] on the device (ready once `ready` fires), tokens [k, context] on the host."""
    device = loaded.device
    if device.type == "cuda":
        stream = torch.cuda.current_stream(device)
        if ready is not None:
            stream.wait_event(ready)
        pixels.record_stream(stream)  # made on the decode stream, used on this one
        tokens = tokens.pin_memory()
    tokens = tokens.to(device, non_blocking=True)
    with torch.inference_mode(), autocast(loaded):
        image = loaded.model.encode_image(pixels)
        text = loaded.model.encode_text(tokens)
    with torch.inference_mode():
        # normalise in fp32: an fp16 norm leaves vectors measurably off unit length
        image = F.normalize(image.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)
        scores = (image * text).sum(-1)
        result = Encoded(scores=_to_host(scores), image=_to_host(image.half()), text=_to_host(text.half()), done=None)
    if device.type == "cuda":
        result.done = torch.cuda.Event()
        result.done.record(torch.cuda.current_stream(device))
    return result
