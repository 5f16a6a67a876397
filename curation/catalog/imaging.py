"""Decoding photos the one way the whole pipeline sees them: EXIF-upright, 8-bit RGB, size-checked.

The store keeps the original bytes; this function is applied whenever pixels are needed, and `conversion`
records what it had to do so the catalog can say so.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from curation.catalog.errors import GhostsError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is refused, never half-decoded
DEFAULT_MAX_PIXELS = 100_000_000
# Formats a photo pipeline accepts; anything else Pillow can open (EPS, ICO, ...) is refused by name.
ACCEPTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}
EXT_BY_FORMAT = {
    "JPEG": "jpg",
    "MPO": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
}


class ImageRejected(GhostsError):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Decoded:
    rgb: np.ndarray  # H x W x 3 uint8, upright
    format: str
    mode: str  # original PIL mode
    conversion: str | None  # what was done to get RGB, None when nothing
    exif_transposed: bool

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def ext(self) -> str:
        return EXT_BY_FORMAT.get(self.format, "bin")


def decode_image(
    src: str | os.PathLike | bytes, max_pixels: int | None = None, *, writable: bool = True
) -> Decoded:
    """Decode a photo fully; raise ImageRejected with a short reason for anything unusable. `writable=False`
    may hand back a read-only array (the same pixels, one copy fewer: for callers that only read them)."""
    max_pixels = max_pixels or DEFAULT_MAX_PIXELS
    fp = io.BytesIO(src) if isinstance(src, (bytes, bytearray, memoryview)) else Path(src)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit below decides
            im = Image.open(fp)
            fmt = im.format or "?"
            if fmt not in ACCEPTED_FORMATS:
                raise ImageRejected(f"unsupported format {fmt}")
            w, h = im.size
            # The header's size is checked before any pixel is decoded (decompression bombs).
            if w * h > max_pixels:
                raise ImageRejected(
                    f"too large: {w}x{h} = {w * h / 1e6:.0f} MP exceeds the {max_pixels / 1e6:.0f} MP limit"
                )
            if w == 0 or h == 0:
                raise ImageRejected("empty image (zero width or height)")
            im.load()
    except ImageRejected:
        raise
    except UnidentifiedImageError:
        raise ImageRejected("not an image (unrecognised file format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow refuses headers far past its own limit before we can read the size; its message has the count.
        m = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(m.group(1)) / 1e6:.0f} MP" if m else "the image"
        raise ImageRejected(
            f"too large: {size} exceeds the {max_pixels / 1e6:.0f} MP limit (decompression bomb?)"
        ) from None
    except (OSError, SyntaxError, ValueError) as e:
        msg = str(e)
        if "truncated" in msg or "broken data stream" in msg or "image file is" in msg:
            raise ImageRejected(f"truncated or corrupt image data ({msg})") from None
        raise ImageRejected(f"cannot decode image: {msg}") from None

    steps: list[str] = []
    mode = im.mode
    transposed = False
    orientation = im.getexif().get(0x0112, 1)
    if orientation not in (1, None):
        im = ImageOps.exif_transpose(im)
        transposed = True
        steps.append(f"EXIF orientation {orientation} applied")
    rgb = _to_rgb(im, steps, writable)
    return Decoded(
        rgb=rgb, format=fmt, mode=mode, conversion="; ".join(steps) or None, exif_transposed=transposed
    )


def _rgb_bytes(im: Image.Image) -> bytes:
    """The packed RGB bytes of an RGB image, unpacked in one call into one buffer of the image's size (what
    im.tobytes() gives, which unpacks in 64 KB pieces and joins them: a second copy, into fresh pages)."""
    w, h = im.size
    try:
        enc = Image._getencoder("RGB", "raw", "RGB")  # Pillow's own raw encoder, the one tobytes() uses
        enc.setimage(im.im, (0, 0, w, h))
        _, status, data = enc.encode(w * h * 3 + 1)  # room for all of it: status 1 = done in one call
    except (AttributeError, TypeError, ValueError, OSError):  # a Pillow without this private API
        return im.tobytes()
    return data if status == 1 and len(data) == w * h * 3 else im.tobytes()


def _to_rgb(im: Image.Image, steps: list[str], writable: bool = True) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        w, h = im.size
        a = np.frombuffer(_rgb_bytes(im), dtype=np.uint8).reshape(h, w, 3)
        # Read-only, the array is Pillow's one buffer (0.65 ms for a 1080 x 1350 photo); a writable one is a
        # numpy copy of it (2.6 ms; bytearray(im.tobytes()) took 3.4-3.8 ms, medians of 30).
        return a if not writable else a.copy()
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) grey: scale to 8 bits instead of letting convert() clip at 255.
        a = np.asarray(im).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        g = np.clip(np.round(a * (255.0 / top)), 0, 255).astype(np.uint8)
        steps.append(f"{mode}->RGB (16-bit scaled to 8-bit)")
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        g = (
            np.zeros(a.shape, np.uint8)
            if hi <= lo
            else np.round((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
        )
        steps.append("F->RGB (float range stretched)")
        return np.repeat(g[..., None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        # Transparent pixels become white, as in a browser on a white page.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        steps.append(f"{mode}->RGB (alpha composited on white)")
        return np.asarray(Image.alpha_composite(bg, rgba).convert("RGB"), dtype=np.uint8).copy()
    steps.append(f"{mode}->RGB")
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_rgb(path: str | os.PathLike, max_pixels: int | None = None, *, writable: bool = True) -> np.ndarray:
    """The pixels of a stored photo as upright H x W x 3 uint8 RGB (see decode_image for `writable`)."""
    return decode_image(path, max_pixels, writable=writable).rgb
