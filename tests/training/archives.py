"""Small dataset archives built in tmp folders, in the format `ghosts freeze` writes."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import PIL.Image


def blob_images(n: int, res: int, seed: int = 0, channels: int = 3) -> np.ndarray:
    """Smooth coloured blobs on gradients: [n, res, res, channels] uint8, each image different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res] / (res - 1)
    out = np.empty((n, res, res, channels), np.uint8)
    for i in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        colour, bg = rng.uniform(0, 1, channels), rng.uniform(0, 1, channels)
        img = bg * (1 - yy[..., None] * 0.5) * (1 - blob[..., None]) + colour * blob[..., None]
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def member_name(i: int) -> str:
    return f"{i:08d}"[:5] + "/img" + f"{i:08d}" + ".png"


def write_archive(
    path: Path, images: np.ndarray, labels: list[int] | None = None, extra: dict | None = None
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for i, img in enumerate(images):
            buf = io.BytesIO()
            PIL.Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="PNG")
            zf.writestr(member_name(i), buf.getvalue())
        table = None if labels is None else [[member_name(i), int(l)] for i, l in enumerate(labels)]
        zf.writestr("dataset.json", json.dumps({"labels": table}))
        for name, text in (extra or {}).items():
            zf.writestr(name, text)
    return path


def make_archive(tmp: Path, n: int = 32, res: int = 32, name: str = "blobs", **kw) -> Path:
    return write_archive(tmp / f"{name}.zip", blob_images(n, res, **kw))
