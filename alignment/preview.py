"""Face previews: the 256-px aligned face as a JPEG under a workspace's previews/ folder (written atomically).

`ws` here is anything with `root` and `tmp_dir` folders (a curation workspace); nothing is read from a catalog.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from alignment.align import align_face
from alignment.quality import PREVIEW_SIZE
from curation.catalog.store import atomic_write_bytes

PREVIEW_QUALITY = 90  # JPEG quality of the 256-px previews


_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def preview_relpath(key: str | int) -> str:
    """Where the preview for `key` lives, relative to the workspace: previews/<key>.jpg."""
    key = str(key)
    if not _KEY.match(key):
        raise ValueError(f"bad preview key {key!r}: letters, digits, '_', '-' and '/' only")
    return f"previews/{key}.jpg"


def encode_jpeg(rgb: np.ndarray, quality: int = PREVIEW_QUALITY) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def save_preview(root: Path, tmp_dir: Path, key: str | int, aligned: np.ndarray) -> str:
    """Write an aligned preview (JPEG, atomically) as root/previews/<key>.jpg; return the relative path."""
    rel = preview_relpath(key)
    atomic_write_bytes(root / rel, encode_jpeg(aligned), tmp_dir=tmp_dir)
    return rel


def write_preview(ws, key: str | int, rgb: np.ndarray, quad, *, aligned: np.ndarray | None = None) -> str:
    """Write the 256-px aligned preview of a face (JPEG, atomically) under the workspace's previews/ folder and
    return its path relative to the workspace. `aligned`: the preview when already made."""
    if aligned is None:
        aligned = align_face(rgb, quad, PREVIEW_SIZE)
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    return save_preview(ws.root, ws.tmp_dir, key, aligned)
