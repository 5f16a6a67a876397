"""Which files of a folder are images: the one list of extensions and the one folder walk, shared by import
(`ghosts import`), packing (`ghosts pack`) and alignment (`ghosts align`). Light on purpose: no database, so a
command that only reads a folder starts fast."""

from __future__ import annotations

import errno
import os
import stat
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
                if why is None and f.suffix.lower() in IMAGE_SUFFIXES:
                    why = _special_problem(f)  # a named pipe called x.jpg: never opened (it would block)
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


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_kind(mode: int) -> str:
    """What a file that is neither a regular file nor a folder is, in words."""
    return next((word for test, word in _SPECIAL_KINDS if test(mode)), "not a regular file")


def _special_problem(path: Path) -> str | None:
    """Why `path` is not read: it cannot be looked at, or it is neither a regular file nor a folder (None: it
    is one of those)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return f"not a file or folder: {special_kind(mode)}"


def _named_problem(path: Path) -> str | None:
    """Why a path named on the command line cannot be imported (None: it is a file or a folder)."""
    try:
        os.stat(path)
    except OSError as e:
        if os.path.islink(path):
            return _link_problem(path) or f"cannot follow the symlink: {e.strerror or e}"
        if e.errno == errno.ENOENT:
            return "no such file or folder"
        return f"cannot read: {e.strerror or e}"
    return _special_problem(path)


def collect_files(
    paths: Iterable[str | os.PathLike], recursive: bool = False, problems: list[dict[str, str]] | None = None
) -> tuple[list[Path], int]:
    """Files to import, sorted: named files as given, and image files found in named folders.

    Returns (files, skipped) where skipped counts folder entries without an image extension. With `problems`
    (a list), every named path that cannot be read (missing, a symlink loop or broken link, a named pipe or
    other special file) and whatever cannot be walked inside the folders is appended to it as
    {"path", "reason"} and the batch goes on; without it, the first such named path raises a GhostsError.
    """
    files: list[Path] = []
    skipped = 0
    for p in map(Path, paths):
        why = _named_problem(p)
        if why:
            if problems is None:
                raise GhostsError(f"{why}: {p}")
            problems.append({"path": str(p), "reason": why})
            continue
        if p.is_file():
            files.append(p)
            continue
        found, other = folder_images(p, recursive, problems)
        files += found
        skipped += other
    return files, skipped
