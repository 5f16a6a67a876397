"""Degenerate image files made on the fly: every kind of input a scrape or a photo folder throws at ingest."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _photo(w=160, h=120, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8))


def _png_with_header(w: int, h: int) -> bytes:
    """A tiny, valid-looking PNG whose IHDR claims w x h pixels (a decompression bomb's header)."""

    def chunk(tag, body):
        return (
            struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_degenerate(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}

    def save(name, im, **kw):
        p = folder / name
        im.save(p, **kw)
        out[name] = p

    buf = io.BytesIO()
    _photo(seed=1).save(buf, "JPEG", quality=90)
    (folder / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    out["truncated.jpg"] = folder / "truncated.jpg"
    (folder / "notes.jpg").write_text("this is a text file with an image extension\n")
    out["notes.jpg"] = folder / "notes.jpg"
    save("cmyk.jpg", _photo(seed=2).convert("CMYK"), quality=90)
    save("palette.png", _photo(seed=3).convert("P", palette=Image.Palette.ADAPTIVE, colors=64))
    rgba = _photo(seed=4).convert("RGBA")
    a = np.array(rgba)
    a[:, :40, 3] = 0  # a transparent left strip
    save("rgba.png", Image.fromarray(a, "RGBA"))
    g16 = (np.linspace(0, 65535, 160 * 120).reshape(120, 160)).astype(np.uint16)
    save("gray16.png", Image.fromarray(g16))  # uint16 -> mode I;16
    save("gray.png", _photo(seed=5).convert("L"))
    save("la.png", _photo(seed=6).convert("LA"))
    # EXIF orientation 6: stored landscape 160x120, displayed portrait 120x160.
    exif = Image.Exif()
    exif[0x0112] = 6
    save("rotated.jpg", _photo(seed=7), quality=90, exif=exif.tobytes())
    (folder / "bomb.png").write_bytes(_png_with_header(30000, 30000))
    out["bomb.png"] = folder / "bomb.png"
    return out


@pytest.fixture
def degenerate_dir(tmp_path) -> Path:
    d = tmp_path / "degenerate"
    make_degenerate(d)
    return d
