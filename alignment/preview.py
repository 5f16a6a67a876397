"""Face previews: the 256-px aligned face as a JPEG under a workspace's previews/ folder (written atomically).

`ws` here is anything with `root` and `tmp_dir` folders (a curation workspace); nothing is read from a catalog.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import io
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from alignment.align import align_face
from alignment.quality import PREVIEW_SIZE
from curation.catalog.store import TMP_PREFIX, atomic_write_bytes, fsync_dir, set_umask_mode

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


def save_preview(
    root: Path, tmp_dir: Path, key: str | int, aligned: np.ndarray, *, durable: bool = True
) -> str:
    """Write an aligned preview (JPEG, atomically) as root/previews/<key>.jpg; return the relative path.

    `durable=False` still writes a temp file and renames it (never a torn preview), but leaves flushing it to
    the disk to the caller: the analysis writes a batch of previews, makes them durable with one `sync_folder`
    and only then records them in the catalog (two fsyncs per preview cost ~10 ms each on a busy disk)."""
    rel = preview_relpath(key)
    if durable:
        atomic_write_bytes(root / rel, encode_jpeg(aligned), tmp_dir=tmp_dir)
        return rel
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=tmp_dir)
    set_umask_mode(fd, path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(encode_jpeg(aligned))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return rel


def write_preview(ws, key: str | int, rgb: np.ndarray, quad, *, aligned: np.ndarray | None = None) -> str:
    """Write the 256-px aligned preview of a face (JPEG, atomically) under the workspace's previews/ folder and
    return its path relative to the workspace. `aligned`: the preview when already made."""
    if aligned is None:
        aligned = align_face(rgb, quad, PREVIEW_SIZE)
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    return save_preview(ws.root, ws.tmp_dir, key, aligned)


def _syncfs():
    """libc's syncfs(2) (Linux), or None."""
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    return fn


_SYNCFS = _syncfs()


def sync_previews(root: Path, rels: list[str]) -> None:
    """Make previews written with `durable=False` (root/<rel> for each rel) durable, their renames included:
    one syncfs(2) of the file system holding them on Linux (one flush for a whole batch), else an fsync of
    each file and of each folder they were renamed into."""
    if not rels:
        return
    root = Path(root)
    if _SYNCFS is not None:
        fd = os.open(root / rels[0], os.O_RDONLY)
        try:
            if _SYNCFS(fd) == 0:
                return
        finally:
            os.close(fd)
    for rel in rels:
        fd = os.open(root / rel, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in sorted({(root / rel).parent for rel in rels}):
        fsync_dir(folder)
