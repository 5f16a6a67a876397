"""The content-addressed image store and atomic file writes.

Every file the pipeline must not leave half-written goes through `atomic_writer`: the bytes land in a temp file
in the target folder, are fsynced, and only then renamed over the target, so a crash leaves the old file or the
new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

TMP_PREFIX = ".tmp-"


def current_umask() -> int:
    """The process's umask, read without changing it where the platform allows (os.umask sets it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    old = os.umask(0o022)
    os.umask(old)
    return old


def file_mode_for(folder: str | os.PathLike, private: bool = False) -> int:
    """The mode a new file in `folder` gets: what open() would give it under the user's umask (mkstemp
    always makes 0600), no more open than the folder itself (a 0700 folder such as sessions/ keeps its
    files 0600), and 0600 when `private`."""
    if private:
        return 0o600
    mode = 0o666 & ~current_umask()
    with contextlib.suppress(OSError):
        folder_bits = os.stat(folder).st_mode
        for who in (0o070, 0o007):  # group, others: no read/write for them unless they may enter the folder
            if not folder_bits & who & 0o111:
                mode &= ~who
    return mode


def set_umask_mode(fd: int, folder: str | os.PathLike, private: bool = False) -> None:
    """Give a file made by mkstemp (0600) the mode `file_mode_for(folder)`."""
    with contextlib.suppress(OSError):  # a file system without modes (FAT) keeps what it has
        os.fchmod(fd, file_mode_for(folder, private))


@contextlib.contextmanager
def atomic_writer(
    path: str | os.PathLike,
    mode: str = "wb",
    tmp_dir: str | os.PathLike | None = None,
    *,
    private: bool = False,
) -> Iterator[IO]:
    """Open a temp file (beside `path`, or in `tmp_dir` on the same filesystem); on success fsync it and
    rename it to `path`, on error remove it. The file gets the user's umask (see file_mode_for); `private`
    makes it 0600 (secrets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=tmp_dir or path.parent)
    set_umask_mode(fd, path.parent, private)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, tmp_dir: str | os.PathLike | None = None, *, private: bool = False
) -> None:
    with atomic_writer(path, "wb", tmp_dir, private=private) as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str, *, private: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), private=private)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (not every platform lets a folder be opened; then skip it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_relpath(sha256: str, ext: str) -> str:
    """`images/ab/<sha256>.<ext>`: two hex digits of fan-out keep folders small at 100k images."""
    return f"images/{sha256[:2]}/{sha256}.{ext.lstrip('.').lower()}"


def put_bytes(ws, data: bytes, ext: str) -> tuple[str, str]:
    """Store `data` once under its sha256; return (sha256, path relative to the workspace)."""
    digest = sha256_bytes(data)
    rel = store_relpath(digest, ext)
    target = ws.abspath(rel)
    if not target.exists() or target.stat().st_size != len(data):
        # The temp file lives in the workspace's tmp/ so the store itself never holds a partial file.
        ws.tmp_dir.mkdir(exist_ok=True)
        atomic_write_bytes(target, data, tmp_dir=ws.tmp_dir)
    return digest, rel


def hold_temp_lock(fd: int) -> None:
    """Mark a temp file as in use by this process for as long as `fd` is open (see sweep_temp_files)."""
    with contextlib.suppress(ImportError, OSError):
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _writer_gone(path: Path) -> bool:
    """True when no process holds the temp file's lock (its writer died); False when one does or we cannot
    tell."""
    try:
        import fcntl
    except ImportError:
        return False
    try:
        with open(path, "rb") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except OSError:
        return False


def sweep_temp_files(
    folder: Path, older_than_s: float = 3600.0, name: str | None = None, locked: bool = False
) -> int:
    """Remove temp files left by a killed writer (never referenced by the catalog): every `.tmp-*` under
    `folder`, or with `name` only the temp files of that one target directly in `folder` (for an output in a
    user's folder, such as `ghosts pack`'s, whose other files are none of ours).

    Only old ones: a young temp file may belong to a writer that is still running in another process. With
    `locked` (for writers that hold `hold_temp_lock` on their temp file), any age: a file whose lock can be
    taken has no writer left.
    """
    removed = 0
    now = time.time()
    if folder.exists():
        found = folder.glob(f"{TMP_PREFIX}{glob.escape(name)}.*") if name else folder.rglob(TMP_PREFIX + "*")
        for tmp in found:
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime >= older_than_s or (locked and _writer_gone(tmp)):
                    tmp.unlink()
                    removed += 1
    return removed
