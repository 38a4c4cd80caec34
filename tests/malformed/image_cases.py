"""Image files that break decoders, each with the shards status (and error kind) the download must give it.

`image_cases()` returns ImageCase(name, data, status, kind): status is what the row must end in; kind is the
`error_kind` for failures (None for successes). `upright` marks EXIF-rotated cases whose decoded pixels must come out
upright: their upright image is red on the left half and blue on the right, wider than high.
Everything is generated here with Pillow/OpenCV/numpy: nothing is downloaded, nothing needs ../shared.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageOps

SUCCESS = "success"
RESIZE = "failed_to_resize"


@dataclass(frozen=True)
class ImageCase:
    name: str
    data: bytes
    status: str
    kind: Optional[str] = None
    upright: bool = False


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def _photo(w: int = 96, h: int = 64, seed: int = 0) -> Image.Image:
    """A smooth gradient with some noise: compresses like a photo, not like a flat colour."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 127 // max(w + h - 2, 1)], -1)
    rgb = np.clip(rgb + rng.integers(-12, 12, rgb.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _left_red_right_blue(w: int = 120, h: int = 60) -> Image.Image:
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = (220, 20, 20)
    a[:, w // 2:] = (20, 20, 220)
    return Image.fromarray(a, "RGB")


# the inverse of each EXIF orientation's transpose: stored pixels = inverse(upright)
_INVERSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_270}


def _exif_rotated(orientation: int, fmt: str = "JPEG") -> bytes:
    upright = _left_red_right_blue()
    stored = upright.transpose(_INVERSE[orientation]) if orientation in _INVERSE else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(stored, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    with Image.open(io.BytesIO(data)) as check:  # the generator's own oracle: Pillow turns it upright
        assert ImageOps.exif_transpose(check).size == upright.size
    return data


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_bomb(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height, with one tiny IDAT: a decoder that trusts it allocates it all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def _jpeg_bomb(width: int, height: int) -> bytes:
    """A small JPEG whose SOF0 marker is patched to declare width x height."""
    data = bytearray(_encode(_photo(16, 16), "JPEG"))
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _gif_bomb() -> bytes:
    data = bytearray(_encode(_photo(16, 16).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, 65535, 65535)  # logical screen
    frame = data.find(b"\x2c")  # the image descriptor
    struct.pack_into("<HH", data, frame + 5, 65535, 65535)
    return bytes(data)


def _animated(fmt: str) -> bytes:
    frames = [_photo(seed=i) for i in range(4)]
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=80, loop=0)


def _sixteen_bit_png(channels: int) -> bytes:
    import cv2

    ramp = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    img = ramp if channels == 1 else np.dstack([ramp] * 3 + [np.full_like(ramp, 65535)] * (channels - 3))
    ok, encoded = cv2.imencode(".png", img)
    assert ok
    return encoded.tobytes()


def image_cases(truncation_points: int = 8) -> list[ImageCase]:
    photo = _photo()
    jpeg = _encode(photo, "JPEG", quality=90)
    png = _encode(photo, "PNG")
    webp = _encode(photo, "WEBP", quality=90)
    gif = _encode(photo.convert("P"), "GIF")
    cases = [
        ImageCase("plain.jpg", jpeg, SUCCESS),
        ImageCase("plain.png", png, SUCCESS),
        ImageCase("plain.webp", webp, SUCCESS),
        ImageCase("plain.gif", gif, SUCCESS),
        ImageCase("progressive.jpg", _encode(photo, "JPEG", progressive=True), SUCCESS),
        ImageCase("gray.jpg", _encode(photo.convert("L"), "JPEG"), SUCCESS),
        ImageCase("one-pixel.png", _encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), SUCCESS),
        ImageCase("very-wide.png", _encode(_photo(4000, 2), "PNG"), SUCCESS),
        ImageCase("bitmap.bmp", _encode(photo, "BMP"), SUCCESS),
        ImageCase("tiff.tif", _encode(photo, "TIFF"), SUCCESS),
        ImageCase("icon.ico", _encode(photo, "ICO"), SUCCESS),  # OpenCV cannot; Pillow can
        ImageCase("cmyk.jpg", _encode(photo.convert("CMYK"), "JPEG"), SUCCESS),
        ImageCase("png16-gray.png", _sixteen_bit_png(1), SUCCESS),
        ImageCase("png16-rgb.png", _sixteen_bit_png(3), SUCCESS),
        ImageCase("png16-rgba.png", _sixteen_bit_png(4), SUCCESS),
        ImageCase("tiff16.tif", _encode(Image.fromarray(np.full((20, 30), 40000, np.uint16)), "TIFF"), SUCCESS),
        ImageCase("palette-alpha.png", _encode(photo.convert("P"), "PNG", transparency=0), SUCCESS),
        ImageCase("gray-alpha.png", _encode(photo.convert("LA"), "PNG"), SUCCESS),
        ImageCase("rgba.png", _encode(photo.convert("RGBA"), "PNG"), SUCCESS),
        ImageCase("rgba.webp", _encode(photo.convert("RGBA"), "WEBP"), SUCCESS),
        ImageCase("animated.gif", _animated("GIF"), SUCCESS),
        ImageCase("animated.webp", _animated("WEBP"), SUCCESS),
        ImageCase("huge-icc.jpg", _encode(photo, "JPEG", icc_profile=b"\0" * (3 << 20)), SUCCESS),
        ImageCase("huge-icc.png", _encode(photo, "PNG", icc_profile=b"\1" * (3 << 20)), SUCCESS),
        ImageCase("garbage-exif.jpg", _encode(photo, "JPEG", exif=b"Exif\0\0" + b"\xff" * 200), SUCCESS),
        ImageCase("empty.jpg", b"", RESIZE, "empty"),
        ImageCase("svg.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"><rect width="8" '
                             b'height="8"/></svg>', RESIZE, "unsupported_format"),
        ImageCase("svg-prolog.svg", b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', RESIZE,
                  "unsupported_format"),
        ImageCase("page.html", b"<!DOCTYPE html><html><body>not an image</body></html>", RESIZE, "not_an_image"),
        ImageCase("text.txt", b"just some text, no image here\n" * 10, RESIZE, "not_an_image"),
        ImageCase("random.bin", bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)), RESIZE,
                  "not_an_image"),
        ImageCase("bomb-1bit.png", _encode(Image.new("1", (10_000, 9_000), 0), "PNG"), RESIZE, "decompression_bomb"),
        ImageCase("bomb-header.png", _png_bomb(100_000, 100_000), RESIZE, "decompression_bomb"),
        ImageCase("bomb-header.jpg", _jpeg_bomb(60_000, 60_000), RESIZE, "decompression_bomb"),
        ImageCase("bomb-screen.gif", _gif_bomb(), RESIZE, "decompression_bomb"),
    ]
    for orientation in range(1, 9):
        cases.append(ImageCase(f"exif-orientation-{orientation}.jpg", _exif_rotated(orientation), SUCCESS,
                               upright=True))
    cases.append(ImageCase("exif-orientation-6.webp", _exif_rotated(6, "WEBP"), SUCCESS, upright=True))
    # truncated files: a cut inside the header cannot decode; a cut in the pixel data may decode partially (libjpeg
    # and libpng fill the rest), so those only have to end in a status, whichever
    for label, data in (("jpg", jpeg), ("png", png), ("webp", webp), ("gif", gif)):
        for i in range(1, truncation_points + 1):
            cut = len(data) * i // (truncation_points + 1)
            status = RESIZE if cut < 16 else None
            cases.append(ImageCase(f"truncated-{i}of{truncation_points + 1}.{label}", data[:cut],
                                   status or "any", None))
        cases.append(ImageCase(f"header-only.{label}", data[:12], RESIZE, None))
    return cases


def write_image_cases(folder, cases: Optional[list[ImageCase]] = None) -> list[ImageCase]:
    """Write the cases' files under folder/img/ (served by the loopback server as img/<name>)."""
    from pathlib import Path

    cases = image_cases() if cases is None else cases
    target = Path(folder) / "img"
    target.mkdir(parents=True, exist_ok=True)
    for case in cases:
        (target / case.name).write_bytes(case.data)
    return cases
