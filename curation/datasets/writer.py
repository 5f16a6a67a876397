"""The archive writer: deterministic, atomic (a temp file renamed into place), one PNG at a time.

The zip is written here rather than through `zipfile`: every member is stored (no compression) with a fixed
date and mode, so its local header is known before its data, and each member goes out in one write, its CRC
taken from the caller when it has one (computed on a worker thread) and the archive's sha256 updated as the
bytes go out (no second read of a file of gigabytes). The bytes are the ones `zipfile.ZipFile.writestr`
writes for the same members (tests/curation/test_pack_stored.py compares them), with zip64 records where a
size, an offset or the member count needs them, as `zipfile` writes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
import zlib
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
    ZIP_DATE,
    ArchiveError,
    archive_name,
    is_power_of_two,
    json_line,
    png_header,
)

# zipfile's limits: past them a member or the archive needs zip64 records (module constants, so that a test
# can lower them and check the zip64 layout with small files).
ZIP64_LIMIT = (1 << 31) - 1
ZIP_FILECOUNT_LIMIT = (1 << 16) - 1
_DOS_DATE = (ZIP_DATE[0] - 1980) << 9 | ZIP_DATE[1] << 5 | ZIP_DATE[2]
_DOS_TIME = ZIP_DATE[3] << 11 | ZIP_DATE[4] << 5 | ZIP_DATE[5] // 2
_MODE = 0o100644 << 16  # a regular file, rw-r--r-- (format.zipinfo's external attributes)
_UNIX = 3  # "made by" Unix everywhere, so the bytes do not depend on the OS that wrote them


@dataclass
class _Member:
    name: bytes
    flags: int
    crc: int
    size: int
    offset: int
    zip64: bool  # its local header carries a zip64 extra field


def _local_header(m: _Member) -> bytes:
    """The member's local file header as zipfile writes it once the data is in (sizes and CRC filled in)."""
    version, extra, size = 20, b"", m.size
    if m.zip64:
        extra = struct.pack("<HHQQ", 1, 16, m.size, m.size)
    if m.size > ZIP64_LIMIT:
        version, size = 45, 0xFFFFFFFF
    return (
        struct.pack(
            "<4sBBHHHHIIIHH",
            b"PK\x03\x04",
            version,
            0,
            m.flags,
            0,
            _DOS_TIME,
            _DOS_DATE,
            m.crc,
            size,
            size,
            len(m.name),
            len(extra),
        )
        + m.name
        + extra
    )


def _central_entry(m: _Member) -> bytes:
    fields: list[int] = []
    size = offset = None
    if m.size > ZIP64_LIMIT:
        fields += [m.size, m.size]
        size = 0xFFFFFFFF
    if m.offset > ZIP64_LIMIT:
        fields.append(m.offset)
        offset = 0xFFFFFFFF
    extra = struct.pack("<HH" + "Q" * len(fields), 1, 8 * len(fields), *fields) if fields else b""
    version = 45 if fields else 20
    return (
        struct.pack(
            "<4sBBBBHHHHIIIHHHHHII",
            b"PK\x01\x02",
            version,
            _UNIX,
            version,
            0,
            m.flags,
            0,
            _DOS_TIME,
            _DOS_DATE,
            m.crc,
            m.size if size is None else size,
            m.size if size is None else size,
            len(m.name),
            len(extra),
            0,
            0,
            0,
            _MODE,
            m.offset if offset is None else offset,
        )
        + m.name
        + extra
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
        self._fh = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()  # of every byte written, in order: the archive's sha256 at the end
        self._offset = 0
        self._members: list[_Member] = []
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
        crc: int | None = None,  # ... and its CRC-32
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
        self._write_member(name, png, crc)
        rec = dict(record or {})
        rec["archive_name"] = name
        rec["png_sha256"] = sha256 or hashlib.sha256(png).hexdigest()
        if label is not None:
            rec["label"] = int(label)
        self._records.append(rec)
        self._labels.append(label)
        return name

    def _write(self, data: bytes) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self._offset += len(data)

    def _write_member(self, name: str, data: bytes, crc: int | None = None) -> None:
        try:
            raw, flags = name.encode("ascii"), 0
        except UnicodeEncodeError:
            raw, flags = name.encode("utf-8"), 0x800
        # zipfile's rule: a member within 5% of the limit gets a zip64 local header.
        m = _Member(raw, flags, zlib.crc32(data) if crc is None else crc, len(data), self._offset, False)
        m.zip64 = len(data) * 1.05 > ZIP64_LIMIT
        self._write(_local_header(m))
        self._write(data)
        self._members.append(m)

    def _write_directory(self) -> None:
        start = self._offset
        for m in self._members:
            self._write(_central_entry(m))
        end, count, size = self._offset, len(self._members), self._offset - start
        if count > ZIP_FILECOUNT_LIMIT or start > ZIP64_LIMIT or size > ZIP64_LIMIT:
            self._write(
                struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, start)
            )
            self._write(struct.pack("<4sIQI", b"PK\x06\x07", 0, end, 1))
            count, size, start = min(count, 0xFFFF), min(size, 0xFFFFFFFF), min(start, 0xFFFFFFFF)
        self._write(struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, size, start, 0))

    def finish(self, card: str | Callable[[ArchiveWriter], str]) -> ArchiveInfo:
        """Write dataset.json, provenance.jsonl and the card, then move the archive into place."""
        if not self._records:
            raise ArchiveError("no images to archive")
        labels = None
        if self._labels[0] is not None:
            labels = [[r["archive_name"], int(lab)] for r, lab in zip(self._records, self._labels)]
        text = card(self) if callable(card) else card
        self._write_member(DATASET_JSON, (json.dumps({"labels": labels}, indent=1) + "\n").encode())
        self._write_member(PROVENANCE, "".join(json_line(r) + "\n" for r in self._records).encode())
        self._write_member(CARD, text.encode("utf-8"))
        self._write_directory()
        self._fh.flush()
        os.fsync(self._fh.fileno())  # once, for the whole archive, before it is renamed into place
        self._fh.close()
        digest, size = self._hash.hexdigest(), self._offset
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
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp_path.unlink()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.abort()  # a no-op after finish
