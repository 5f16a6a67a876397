"""Which files of a folder are images: the one list of extensions and the one folder walk, shared by import
(`ghosts import`) and packing (`ghosts pack`). Light on purpose: no catalog, so a command that only reads a
folder starts fast."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from curation.catalog.errors import GhostsError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".jfif"}


def collect_files(paths: Iterable[str | os.PathLike], recursive: bool = False) -> tuple[list[Path], int]:
    """Files to import, sorted: named files as given, and image files found in named folders.

    Returns (files, skipped) where skipped counts folder entries without an image extension.
    """
    files: list[Path] = []
    skipped = 0
    for p in map(Path, paths):
        if not p.exists():
            raise GhostsError(f"no such file or folder: {p}")
        if p.is_file():
            files.append(p)
            continue
        entries = p.rglob("*") if recursive else p.iterdir()
        for f in sorted(entries):
            if not f.is_file() or f.name.startswith("."):
                continue
            if f.suffix.lower() in IMAGE_EXTS:
                files.append(f)
            else:
                skipped += 1
    return files, skipped
