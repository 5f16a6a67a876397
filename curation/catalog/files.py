"""Which files of a folder are images: the one list of extensions and the one folder walk, shared by import
(`ghosts import`), packing (`ghosts pack`) and alignment (`ghosts align`). Light on purpose: no database, so a
command that only reads a folder starts fast."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path

from curation.catalog.errors import GhostsError

# File name extensions taken as images when a folder is walked (a file named on the command line is always tried).
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".mpo"}
)


def folder_images(
    folder: Path, recursive: bool = False, problems: list[dict[str, str]] | None = None
) -> tuple[list[Path], int]:
    """The image files of `folder` (sub-folders too when `recursive`), sorted, hidden files left out; and how
    many other files it holds. What cannot be walked (an unreadable sub-folder, a symlink loop, a broken link)
    is appended to `problems` as {"path", "reason"} instead of being passed over in silence; symlinked folders
    are not followed (a loop could never end)."""
    problems = [] if problems is None else problems
    files: list[Path] = []
    skipped = 0

    def unreadable(e: OSError) -> None:
        problems.append(
            {"path": str(e.filename or folder), "reason": f"cannot read folder: {e.strerror or e}"}
        )

    walk = (
        os.walk(folder, onerror=unreadable) if recursive else [(str(folder), [], _names(folder, unreadable))]
    )
    for top, dirs, names in walk:
        for d in dirs:
            link = Path(top, d)
            if link.is_symlink():
                why = _link_problem(link)
                if why:
                    problems.append({"path": str(link), "reason": why})
        for name in names:
            f = Path(top, name)
            if name.startswith("."):
                continue
            if not f.is_file():
                why = _link_problem(f) if f.is_symlink() else None
                if why:
                    problems.append({"path": str(f), "reason": why})
                continue
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
            else:
                skipped += 1
    return sorted(files), skipped


def _names(folder: Path, onerror) -> list[str]:
    try:
        return sorted(os.listdir(folder))
    except OSError as e:
        onerror(e)
        return []


def _link_problem(path: Path) -> str | None:
    """Why a symlink cannot be followed (a loop, a missing target), or None when it can."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop: the link leads back to itself"
        return f"broken symlink: {e.strerror or e} ({os.readlink(path)})"
    return None


def collect_files(
    paths: Iterable[str | os.PathLike], recursive: bool = False, problems: list[dict[str, str]] | None = None
) -> tuple[list[Path], int]:
    """Files to import, sorted: named files as given, and image files found in named folders.

    Returns (files, skipped) where skipped counts folder entries without an image extension. A named path that
    does not exist stops the batch (a typo); a named symlink loop or broken link, and whatever cannot be walked
    inside the folders, goes to `problems` (when given) and the batch goes on.
    """
    files: list[Path] = []
    skipped = 0
    for p in map(Path, paths):
        if not p.exists():
            why = _link_problem(p) if p.is_symlink() else None
            if why and problems is not None:
                problems.append({"path": str(p), "reason": why})
                continue
            raise GhostsError(f"{why}: {p}" if why else f"no such file or folder: {p}")
        if p.is_file():
            files.append(p)
            continue
        found, other = folder_images(p, recursive, problems)
        files += found
        skipped += other
    return files, skipped
