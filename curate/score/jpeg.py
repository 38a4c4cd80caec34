"""JPEG decoding for scoring: batched torchvision/nvJPEG decode for plain JPEGs, PIL one by one for everything else.

Which images take the batched path is decided from the bytes alone (`plain_jpeg`): an 8-bit baseline, extended or
progressive JPEG with 1 (grey) or 3 (YCbCr/RGB) components that ends with its EOI marker. Everything else (PNG,
WebP, CMYK/YCCK JPEGs, 12-bit, arithmetic-coded, truncated files) goes to PIL, which decodes it exactly as open_clip's
own preprocess would, or fails with a message that becomes the row's `score_error`. The EOI check matters on the GPU:
nvJPEG's hardware decoder does not report a truncated stream, it returns grey pixels; libjpeg and PIL refuse it.

The marker scan is hand-written because neither PIL (it parses the whole header into an Image object, ~10x slower)
nor torchvision expose the SOF fields without decoding; it reads a few dozen bytes per image.
"""

from __future__ import annotations

import io
import re
from typing import Callable, Optional, Sequence

import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

_SOF_SUPPORTED = {0xC0, 0xC1, 0xC2}  # baseline, extended sequential, progressive (Huffman)
_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # lossless, hierarchical, arithmetic
_STANDALONE = {0x01} | set(range(0xD0, 0xD8))
_OBJECT_ADDRESS = re.compile(r" ?<[\w.]+ object at 0x[0-9a-fA-F]+>")


def plain_jpeg(data: memoryview | bytes) -> bool:
    """Is this a complete 8-bit JPEG with 1 or 3 components (the kind batched decoders handle like libjpeg)?"""
    n = len(data)
    if n < 4 or data[0] != 0xFF or data[1] != 0xD8 or data[n - 2] != 0xFF or data[n - 1] != 0xD9:
        return False
    i = 2
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in _SOF_SUPPORTED:
            if i + 10 > n:
                return False
            return data[i + 4] == 8 and data[i + 9] in (1, 3)
        if marker in _SOF_OTHER or marker in (0xDA, 0xD9):  # a scan before any frame header: not a plain JPEG
            return False
        i += 2 + (data[i + 2] << 8 | data[i + 3])
    return False


def pil_preprocess(data: Optional[bytes], preprocess: Callable) -> tuple[Optional[torch.Tensor], Optional[str]]:
    """open_clip's own transform on a PIL image: the baseline path, and the fallback of the tensor path."""
    if data is None:
        from curate.score.batches import MISSING_BYTES

        return None, MISSING_BYTES
    try:
        return preprocess(Image.open(io.BytesIO(data))), None
    except Exception as exc:  # any undecodable image becomes a row with a note, never a crashed run
        # PIL names the in-memory file by its address; drop it so the same bytes always give the same message
        message = _OBJECT_ADDRESS.sub("", str(exc))
        return None, f"cannot decode image: {type(exc).__name__}: {message}"


def decode_each(images: Sequence[torch.Tensor], device: torch.device | str = "cpu") -> list[Optional[torch.Tensor]]:
    """Decode one by one; None where the decoder refuses an image (it then goes to PIL)."""
    out: list[Optional[torch.Tensor]] = []
    for data in images:
        try:
            out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            out.append(None)
    return out


def decode_many(images: Sequence[torch.Tensor], device: torch.device | str = "cpu") -> list[Optional[torch.Tensor]]:
    """Decode a list of JPEGs in one call (nvJPEG batch decode on CUDA, libjpeg-turbo on CPU: both release the
    GIL). A batch the decoder refuses as a whole is decoded again one by one with libjpeg-turbo on the CPU, so one
    bad image costs only itself and an image nvJPEG cannot handle still gets libjpeg's pixels before PIL's."""
    if not images:
        return []
    try:
        return list(decode_jpeg(list(images), mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        return decode_each(images, "cpu")
