"""Which files of a folder are images: the one list of extensions and the one folder walk, shared by import
(`ghosts import`), packing (`ghosts pack`) and alignment (`ghosts align`). Light on purpose: no database, so a
command that only reads a folder starts fast."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from curation.catalog.errors import GhostsError

# File name extensions taken as images when a folder is walked (a file named on the command line is always tried).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"})


def folder_images(folder: Path, recursive: bool = False) -> tuple[list[Path], int]:
    """The image files of `folder` (sub-folders too when `recursive`), sorted, hidden files left out; and how
    many other files it holds."""
    files: list[Path] = []
    skipped = 0
    entries = folder.rglob("*") if recursive else folder.iterdir()
    for f in sorted(entries):
        if not f.is_file() or f.name.startswith("."):
            continue
        if f.suffix.lower() in IMAGE_SUFFIXES:
            files.append(f)
        else:
            skipped += 1
    return files, skipped


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
        found, other = folder_images(p, recursive)
        files += found
        skipped += other
    return files, skipped
