"""The archive writer: deterministic, atomic (a temp file renamed into place), one PNG at a time."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from curation.catalog.store import TMP_PREFIX, fsync_dir, hold_temp_lock, set_umask_mode, sweep_temp_files
from curation.datasets.format import (
    CARD,
    DATASET_JSON,
    MIN_RESOLUTION,
    PROVENANCE,
    ArchiveError,
    archive_name,
    is_power_of_two,
    json_line,
    png_header,
    sha256_file,
    zipinfo,
)


@dataclass
class ArchiveInfo:
    path: Path
    sha256: str
    size_bytes: int
    count: int
    resolution: int
    mode: str
    labelled: bool


class ArchiveWriter:
    """Writes an archive to a temp file beside `path`; `finish` renames it into place, so `path` is either
    absent or complete. Use as a context manager: leaving the block without `finish` removes the temp file.

        with ArchiveWriter(out) as w:
            for png, record in items:
                w.add(png, record)
            info = w.finish(card_text)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A writer of the same archive killed before (kill -9 skips every cleanup) left its temp file here.
        sweep_temp_files(self.path.parent, name=self.path.name, locked=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + self.path.name + ".", dir=self.path.parent)
        hold_temp_lock(fd)  # while this process lives, no sweep takes the temp file for debris
        set_umask_mode(fd, self.path.parent)  # mkstemp makes 0600; the archive gets the user's umask
        self.tmp_path = Path(tmp)
        self._fh = os.fdopen(fd, "w+b")
        self._zip = zipfile.ZipFile(self._fh, "w", zipfile.ZIP_STORED, allowZip64=True)
        self._records: list[dict[str, Any]] = []
        self._labels: list[int | None] = []
        self.resolution: int | None = None
        self.mode: str | None = None
        self._done = False

    @property
    def count(self) -> int:
        return len(self._records)

    @property
    def records(self) -> list[dict[str, Any]]:
        return self._records

    def add(
        self,
        png: bytes,
        record: dict[str, Any] | None = None,
        label: int | None = None,
        *,
        sha256: str | None = None,  # the PNG's sha256 when the caller has it (computed on a worker thread)
    ) -> str:
        """Append one PNG with its provenance record; return its member name."""
        width, height, mode = png_header(png)
        name = archive_name(self.count)
        if width != height or not is_power_of_two(width) or width < MIN_RESOLUTION:
            raise ArchiveError(f"{name}: {width}x{height} is not square with a power-of-two side")
        if mode not in ("RGB", "L"):
            raise ArchiveError(f"{name}: PNG mode {mode}; the format takes 8-bit RGB or L")
        if self.resolution is None:
            self.resolution, self.mode = width, mode
        elif (width, mode) != (self.resolution, self.mode):
            raise ArchiveError(
                f"{name}: {width}px {mode} differs from the first image ({self.resolution}px {self.mode})"
            )
        if self._labels and (label is None) != (self._labels[0] is None):
            raise ArchiveError(f"{name}: either every image has a label or none has")
        self._zip.writestr(zipinfo(name), png)
        rec = dict(record or {})
        rec["archive_name"] = name
        rec["png_sha256"] = sha256 or hashlib.sha256(png).hexdigest()
        if label is not None:
            rec["label"] = int(label)
        self._records.append(rec)
        self._labels.append(label)
        return name

    def finish(self, card: str | Callable[[ArchiveWriter], str]) -> ArchiveInfo:
        """Write dataset.json, provenance.jsonl and the card, then move the archive into place."""
        if not self._records:
            raise ArchiveError("no images to archive")
        labels = None
        if self._labels[0] is not None:
            labels = [[r["archive_name"], int(lab)] for r, lab in zip(self._records, self._labels)]
        text = card(self) if callable(card) else card
        self._zip.writestr(zipinfo(DATASET_JSON), (json.dumps({"labels": labels}, indent=1) + "\n").encode())
        self._zip.writestr(zipinfo(PROVENANCE), "".join(json_line(r) + "\n" for r in self._records).encode())
        self._zip.writestr(zipinfo(CARD), text.encode("utf-8"))
        self._zip.close()
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        digest = sha256_file(self.tmp_path)
        size = self.tmp_path.stat().st_size
        os.replace(self.tmp_path, self.path)
        fsync_dir(self.path.parent)
        self._done = True
        return ArchiveInfo(
            self.path, digest, size, self.count, self.resolution, self.mode, labels is not None
        )

    def abort(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(Exception):
            self._zip.close()
        with contextlib.suppress(Exception):
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()  # a no-op after finish
