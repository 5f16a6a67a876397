"""A folder of synthetic "posts" for the demo: no account, no network, no GPU needed.

The faces come from scikit-image's bundled sample photos (the astronaut, whose face dlib finds, and the
cameraman, whose profile it misses: a case for the review page's manual crop), pasted with feathered edges at
random rotations, scales, positions and colour casts onto the other bundled photos. A few posts have no face
and a few files are broken, so the demo exercises every branch of ingest and analysis.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

# (x0, y0, x1, y1) of a generous head crop in each 512x512 sample photo.
ASTRONAUT_HEAD = (115, 20, 325, 230)
CAMERAMAN_HEAD = (185, 40, 345, 200)
BACKGROUNDS = (
    "coffee",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "brick",
    "grass",
    "gravel",
    "clock",
    "coins",
    "moon",
    "retina",
    "colorwheel",
    "page",
)


@dataclass
class DemoPosts:
    folder: Path
    with_face: int
    without_face: int
    broken: int

    @property
    def total(self) -> int:
        return self.with_face + self.without_face + self.broken


def _sample(name: str) -> Image.Image:
    from skimage import data  # imported here for start-up cost: only `ghosts demo` makes posts

    a = getattr(data, name)()
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    im = Image.fromarray(a)
    return im.convert("RGB")


def _paste_head(bg: Image.Image, head: Image.Image, rng: np.random.Generator) -> Image.Image:
    # Faces roll up to ±25°, which the detector must survive (it retries on rotated copies).
    angle = float(rng.uniform(-25, 25))
    target = int(min(bg.size) * rng.uniform(0.45, 0.8))
    head = head.resize((target, target), Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        head = ImageOps.mirror(head)
    # Colour cast and brightness: Halloween lighting, and enough variety for a GAN to learn something.
    arr = np.asarray(head).astype(np.float32)
    arr = arr * rng.uniform(0.7, 1.25, 3)[None, None, :] + rng.uniform(-20, 20)
    head = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    mask = Image.new("L", head.size, 0)
    ImageDraw.Draw(mask).ellipse((target * 0.06, target * 0.02, target * 0.94, target * 0.98), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(target * 0.05))
    head = head.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    mask = mask.rotate(angle, Image.Resampling.BICUBIC, expand=True)
    x = int(rng.integers(0, max(1, bg.width - head.width + 1)))
    y = int(rng.integers(0, max(1, bg.height - head.height + 1)))
    out = bg.copy()
    out.paste(head, (x, y), mask)
    return out


def _background(rng: np.random.Generator, cache: dict) -> Image.Image:
    name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if name not in cache:
        cache[name] = _sample(name)
    bg = cache[name]
    # Posts are roughly phone-photo shaped; upscale small samples so a pasted head has room.
    scale = max(1.0, 640 / min(bg.size)) * rng.uniform(1.0, 1.3)
    return bg.resize((int(bg.width * scale), int(bg.height * scale)), Image.Resampling.BICUBIC)


def _bomb_png(w: int = 30000, h: int = 30000) -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def make_demo_posts(
    folder: str | Path, n: int = 60, seed: int = 0, faces_fraction: float = 0.8, broken: int = 4
) -> DemoPosts:
    """Write `n` synthetic posts (JPEGs) into `folder`; deterministic for a given seed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    astronaut = _sample("astronaut").crop(ASTRONAUT_HEAD)
    cameraman = _sample("camera").crop(CAMERAMAN_HEAD)
    cache: dict = {}
    n_broken = min(broken, n)
    n_face = round((n - n_broken) * faces_fraction)
    n_plain = n - n_broken - n_face
    captions = []
    for i in range(n_face):
        # Mostly the astronaut (found by the detector); every sixth post is the cameraman (missed: crop by hand).
        head = cameraman if i % 6 == 5 else astronaut
        im = _paste_head(_background(rng, cache), head, rng)
        name = f"post{i:03d}.jpg"
        im.save(folder / name, quality=int(rng.integers(80, 96)))
        captions.append(
            {
                "file": name,
                "caption": "spooky #halloween #ghost",
                "face": "astronaut" if head is astronaut else "cameraman",
            }
        )
    for j in range(n_plain):
        name = f"post{n_face + j:03d}.jpg"
        _background(rng, cache).save(folder / name, quality=90)
        captions.append({"file": name, "caption": "no one here #halloween", "face": None})
    buf = io.BytesIO()
    _paste_head(_background(rng, cache), astronaut, rng).save(buf, "JPEG", quality=90)
    broken_files = {
        "broken-truncated.jpg": buf.getvalue()[: len(buf.getvalue()) // 3],
        "broken-not-an-image.jpg": b"<html>403 Forbidden</html>\n",
        "broken-empty.jpg": b"",
        "broken-bomb.png": _bomb_png(),
    }
    for name, payload in list(broken_files.items())[:n_broken]:
        (folder / name).write_bytes(payload)
    (folder / "posts.json").write_text(json.dumps(captions, indent=1))
    return DemoPosts(folder, n_face, n_plain, n_broken)
