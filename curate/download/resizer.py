"""Downloaded bytes -> the shards image columns: decode, resize and re-encode with img2dataset's own Resizer
(OpenCV + albumentations), so a normal image comes out byte for byte as img2dataset makes it; `sha256` (of the
original bytes, as img2dataset computes it: the exact-duplicate key, independent of resize settings) and `exif`
(img2dataset's exifread JSON of the original file) beside it.

Before and around the Resizer, what img2dataset gets wrong or leaves unclear:
- decompression bombs: the dimensions are read from the header (Pillow, no pixels decoded) and an image over
  `max_image_pixels` is refused before anything is allocated; OpenCV's own limit (OPENCV_IO_MAX_IMAGE_PIXELS) is set
  to the same value for files Pillow cannot read;
- EXIF orientation: OpenCV's IMREAD_UNCHANGED ignores it, so img2dataset stores rotated photos sideways; here the
  pixels are turned upright first (original_width/height then describe the upright image);
- 16-bit PNG/TIFF: OpenCV's JPEG encoder saturates 16-bit samples (a near-white image); they are scaled to 8 bits;
- formats OpenCV cannot decode but Pillow can (ICO, ...) go through Pillow;
- empty bodies, HTML pages and SVG (vector images, not rasterised) get their own error kinds and plain messages.
Each of these paths hands the Resizer a lossless PNG of the corrected pixels; every other image reaches it untouched.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import sys
import json
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Optional

from PIL import Image

DEFAULT_MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # Pillow's decompression-bomb limit
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(DEFAULT_MAX_IMAGE_PIXELS))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import cv2  # noqa: E402
import exifread  # noqa: E402
import numpy as np  # noqa: E402

from curate.download.writer import RowResult  # noqa: E402
from curate.schemas import STATUS_FAILED_RESIZE, STATUS_SUCCESS  # noqa: E402



def _img2dataset_resizer_module():
    """img2dataset's resizer module. `import img2dataset.resizer` first runs the package's __init__, which imports
    all of img2dataset (torch through webdataset, its Spark/Ray distributors): ~5 s in every worker process, while
    the resizer needs only OpenCV and albumentations. So its file is loaded on its own (same code, same images)."""
    if "img2dataset.resizer" in sys.modules:
        return sys.modules["img2dataset.resizer"]
    package = importlib.util.find_spec("img2dataset")
    if package is None or not package.submodule_search_locations:
        raise ImportError("img2dataset is not installed: pip install img2dataset")
    path = os.path.join(list(package.submodule_search_locations)[0], "resizer.py")
    spec = importlib.util.spec_from_file_location("fairsift_img2dataset_resizer", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


Resizer = _img2dataset_resizer_module().Resizer

# img2dataset's Resizer silences OpenCV by swapping file descriptors 1 and 2 around each call; two threads doing that
# at once would leave stdout pointing at /dev/null, so calls are serialised (a part resizes in one thread anyway).
_RESIZE_LOCK = threading.Lock()
logging.getLogger("exifread").setLevel(logging.CRITICAL)  # it logs "File format not recognized." per non-EXIF file
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112


def _failure(kind: str, message: str) -> RowResult:
    return RowResult(STATUS_FAILED_RESIZE, error_message=message, error_kind=kind)


@dataclass
class _Header:
    format: Optional[str]
    mode: str
    width: int
    height: int
    orientation: Optional[int]
    high_depth: bool


def _probe(data: bytes) -> _Header | Exception:
    """What the file says about itself, without decoding pixels (an exception when Pillow cannot tell)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                try:
                    orientation = im.getexif().get(_EXIF_ORIENTATION)
                except Exception:  # noqa: BLE001 - a broken EXIF block is not a broken image
                    orientation = None
                png_16 = data.startswith(_PNG_SIGNATURE) and len(data) > 24 and data[24] == 16
                high = png_16 or im.mode in ("I", "F") or im.mode.startswith("I;16")
                return _Header(im.format, im.mode, im.width, im.height, orientation, high)
    except Exception as exc:  # noqa: BLE001 - DecompressionBombError, UnidentifiedImageError, truncated headers
        return exc


def _orient(img: np.ndarray, orientation: Optional[int]) -> np.ndarray:
    """Apply an EXIF orientation (the same transposes as PIL.ImageOps.exif_transpose)."""
    transforms = {2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud, 5: lambda a: a.swapaxes(0, 1),
                  6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
                  8: lambda a: np.rot90(a, 1)}
    transform = transforms.get(orientation or 1)
    return np.ascontiguousarray(transform(img)) if transform else img


def _to_8bit(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return np.rint(img.astype(np.float32) / 257.0).astype(np.uint8)
    if np.issubdtype(img.dtype, np.floating):
        return np.rint(np.clip(img, 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.clip(img, 0, 255).astype(np.uint8)


def _png(img: np.ndarray) -> Optional[bytes]:
    ok, encoded = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return encoded.tobytes() if ok else None


def _corrected_with_opencv(data: bytes, header: _Header) -> Optional[bytes]:
    """Upright, 8-bit pixels as PNG, decoded by OpenCV (None when it cannot decode the file)."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        return None
    return _png(_orient(_to_8bit(img), header.orientation))


def _decoded_with_pillow(data: bytes) -> Optional[bytes]:
    """The first frame as an upright 8-bit RGB(A) PNG, decoded by Pillow (None when it cannot)."""
    from PIL import ImageOps

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                im.seek(0)
                im = ImageOps.exif_transpose(im)
                alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
                if im.mode.startswith("I;16") or im.mode in ("I", "F"):
                    im = Image.fromarray(_to_8bit(np.asarray(im)))
                im = im.convert("RGBA" if alpha else "RGB")
                out = io.BytesIO()
                im.save(out, "PNG", compress_level=1)
                return out.getvalue()
    except Exception:  # noqa: BLE001
        return None


def _sniff(data: bytes) -> Optional[RowResult]:
    head = data[:4096].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return _failure("unsupported_format", "SVG (vector) image: not rasterised")
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return _failure("not_an_image", "an HTML page, not an image")
    return None


def exif_json(data: bytes) -> Optional[str]:
    """img2dataset's `exif` column: exifread's tags of the original file as JSON text (None when it has none)."""
    try:
        tags = exifread.process_file(io.BytesIO(data), details=False)
        return json.dumps({k: str(v).strip() for k, v in tags.items() if v is not None})
    except Exception:  # noqa: BLE001 - as img2dataset: unreadable EXIF is no EXIF
        return None


class ImageProcessor:
    def __init__(self, image_size: int, resize_mode: str, encode_quality: int,
                 max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        self.max_image_pixels = max_image_pixels
        self.resizer = Resizer(image_size=image_size, resize_mode=resize_mode, resize_only_if_bigger=False,
                               encode_quality=encode_quality, encode_format="jpg", max_image_area=max_image_pixels)

    def _resize(self, payload: bytes):
        with _RESIZE_LOCK:
            return self.resizer(io.BytesIO(payload))

    def __call__(self, data: bytes) -> RowResult:
        if not data:
            return _failure("empty", "empty file (0 bytes)")
        sniffed = _sniff(data)
        if sniffed is not None:
            return sniffed
        header = _probe(data)
        if isinstance(header, Image.DecompressionBombError):
            return _failure("decompression_bomb", f"image over the {self.max_image_pixels}-pixel limit "
                            f"(decompression bomb guard); Pillow read the header: {header}")
        if isinstance(header, _Header):
            pixels = header.width * header.height
            if pixels > self.max_image_pixels:
                return _failure("decompression_bomb", f"image is {header.width}x{header.height} = {pixels} pixels, "
                                f"over the {self.max_image_pixels}-pixel limit (decompression bomb guard)")
        payload = data
        if isinstance(header, _Header) and (header.high_depth or header.orientation not in (None, 1)):
            payload = _corrected_with_opencv(data, header) or _decoded_with_pillow(data) or data
        img, width, height, original_width, original_height, error = self._resize(payload)
        if error is not None and isinstance(header, _Header):
            fallback = _decoded_with_pillow(data)  # a format OpenCV does not read
            if fallback is not None:
                img, width, height, original_width, original_height, error = self._resize(fallback)
        if error is not None:
            return self._explain(error, header)
        return RowResult(STATUS_SUCCESS, image=img, width=width, height=height, original_width=original_width,
                         original_height=original_height, sha256=hashlib.sha256(data).hexdigest(),
                         exif=exif_json(data))

    def _explain(self, error: str, header) -> RowResult:
        if "image area too large" in error or "CV_IO_MAX_IMAGE_PIXELS" in error:
            return _failure("decompression_bomb", f"image over {self.max_image_pixels} pixels refused "
                            f"(decompression bomb guard): {error}")
        if isinstance(header, Exception):
            reason = str(header).split(" <", 1)[0] or type(header).__name__  # no object reprs in messages
            kind = "truncated" if "truncated" in reason.lower() else "not_an_image"
            return _failure(kind, f"Image decoding error: not a readable image ({reason})")
        return _failure("corrupt", f"Image decoding error: {header.format or 'image'} {header.width}x"
                        f"{header.height} could not be decoded: truncated or corrupt data "
                        f"({error.splitlines()[0][:200]})")
