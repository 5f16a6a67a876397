"""The one ingest path every source uses: decode and normalise, dedupe, store atomically, then catalog.

Order matters for crash safety: the bytes are in the store (atomic rename) before the catalog row that
points at them is committed, so a kill at any moment leaves at worst an unreferenced file that the next run
reuses (same sha256, same path), never a row without its file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import imagehash
import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm

from curation.catalog.files import collect_files, special_kind
from curation.catalog.imaging import Decoded, ImageRejected, decode_image
from curation.catalog.schema import Image, NearDuplicate, utcnow
from curation.catalog.store import put_bytes, sha256_bytes

# The Image columns a photo's decode fills in: the curation.catalog.imaging.Decoded attributes of those names.
DECODED_COLUMNS = ("width", "height", "format", "mode", "conversion")


def decoded_columns(dec: Decoded) -> dict[str, Any]:
    """The DECODED_COLUMNS of a decoded photo, as Image(...) keywords."""
    return {k: getattr(dec, k) for k in DECODED_COLUMNS}


@dataclass
class IngestResult:
    status: str  # added | duplicate | rejected
    sha256: str
    image_id: int | None = None
    reason: str | None = None
    near_duplicates: list[int] = field(default_factory=list)
    conversion: str | None = None


@dataclass
class BringInCounts:
    """The counts each way of bringing images in keeps of its ingest results. A subclass holds `image_ids` and
    `rejected` as fields of its own, after its other counts (so that its field order, and its `as_dict`, stay)."""

    added: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    if TYPE_CHECKING:
        image_ids: list[int]
        rejected: list[dict[str, str]]

    def tally(self, result: IngestResult, label: str) -> str:
        """Count one result: an added image (its id, whether it has near duplicates), an exact duplicate, or a
        refusal (with `label` as its path); returns its status."""
        if result.status == "added":
            self.added += 1
            self.image_ids.append(result.image_id)
            self.near_duplicates += bool(result.near_duplicates)
        elif result.status == "duplicate":
            self.duplicates += 1
        else:
            self.rejected.append({"path": label, "reason": result.reason or "rejected"})
        return result.status

    def as_dict(self) -> dict[str, Any]:
        """Every count, in field order; not `image_ids` (the ids the next step works on, not a figure)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "image_ids"}


@dataclass
class ImportSummary(BringInCounts):
    converted: int = 0
    skipped: int = 0  # files in folders without an image extension (READMEs, XML, ...)
    rejected: list[dict[str, str]] = field(default_factory=list)
    image_ids: list[int] = field(default_factory=list)
    failed_before: list[dict[str, str]] = field(default_factory=list)  # duplicates whose analysis failed
    # Paths that could not be read at all (missing, unreadable, a symlink loop, a named pipe, an unreadable
    # sub-folder): not a verdict on an image, a fault of the item; the command exits non-zero when any is here.
    failed: list[dict[str, str]] = field(default_factory=list)

    def count(self, result: IngestResult, label: str) -> None:
        status = self.tally(result, label)
        if status == "added":
            self.converted += bool(result.conversion)
        elif status == "duplicate" and result.reason and "--retry-errors" in result.reason:
            self.failed_before.append({"path": label, "state": result.reason})


class Ingestor:
    """Ingests many images into one workspace, keeping the perceptual hashes it compares against in memory.

    The hash cache is topped up from the catalog before each image (only rows newer than the last one seen),
    so concurrent ingesters in other processes are still seen.
    """

    def __init__(self, ws):
        self.ws = ws
        self._ids = np.zeros(0, np.int64)
        self._hashes = np.zeros(0, np.uint64)
        self._max_id = 0

    def _refresh(self, session) -> None:
        rows = session.execute(
            select(Image.id, Image.phash)
            .where(Image.id > self._max_id, Image.phash.is_not(None))
            .order_by(Image.id)
        ).all()
        if rows:
            self._ids = np.concatenate([self._ids, np.array([r[0] for r in rows], np.int64)])
            self._hashes = np.concatenate([self._hashes, np.array([int(r[1], 16) for r in rows], np.uint64)])
        last = session.execute(select(Image.id).order_by(Image.id.desc()).limit(1)).scalar()
        self._max_id = max(self._max_id, last or 0)

    def _near(self, phash: str) -> list[tuple[int, int]]:
        if not len(self._hashes):
            return []
        x = np.bitwise_xor(self._hashes, np.uint64(int(phash, 16)))
        dist = np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(axis=1)
        hit = dist <= self.ws.settings.near_dup_distance
        return [(int(i), int(d)) for i, d in zip(self._ids[hit], dist[hit])]

    def add(
        self,
        data: bytes,
        *,
        name: str,
        source_kind: str,
        source_ref: str | None,
        provenance: dict[str, Any] | None = None,
        query: str | None = None,
        owner: str | None = None,
        shortcode: str | None = None,
        post_url: str | None = None,
        taken_at: dt.datetime | None = None,
        likes: int | None = None,
    ) -> IngestResult:
        digest = sha256_bytes(data)
        meta = {
            "source_kind": source_kind,
            "source_ref": source_ref,
            "query": query,
            "owner": owner,
            "shortcode": shortcode,
            "post_url": post_url,
            "taken_at": taken_at,
            "likes": likes,
            "provenance": {"name": name, **(provenance or {})},
            "size_bytes": len(data),
        }
        with self.ws.session() as s:
            known = s.execute(select(Image).where(Image.sha256 == digest)).scalar_one_or_none()
            if known is not None:
                if known.status in ("rejected", "excluded") and known.reject_reason:
                    # Refused before, or taken down: say why, every time the bytes come back.
                    return IngestResult("rejected", digest, known.id, known.reject_reason)
                return IngestResult("duplicate", digest, known.id, known_state(known))
        try:
            dec = decode_image(data, self.ws.settings.max_pixels)
        except ImageRejected as e:
            return self._insert(
                Image(sha256=digest, status="rejected", reject_reason=e.reason, **meta),
                IngestResult("rejected", digest, reason=e.reason),
            )
        phash = str(imagehash.phash(PILImage.fromarray(dec.rgb)))
        _, rel = put_bytes(self.ws, data, dec.ext)
        row = Image(sha256=digest, phash=phash, path=rel, status="new", **decoded_columns(dec), **meta)
        return self._insert(row, IngestResult("added", digest, conversion=dec.conversion), phash)

    def _insert(self, row: Image, result: IngestResult, phash: str | None = None) -> IngestResult:
        try:
            with self.ws.session() as s:
                if phash:
                    self._refresh(s)
                    near = self._near(phash)
                s.add(row)
                s.flush()
                if phash:
                    for other, dist in near:
                        s.add(NearDuplicate(image_id=row.id, other_id=other, distance=dist))
                    result.near_duplicates = [o for o, _ in near]
                result.image_id = row.id
        except IntegrityError:
            # Another process ingested the same bytes between our check and our insert.
            with self.ws.session() as s:
                known = s.execute(select(Image).where(Image.sha256 == result.sha256)).scalar_one()
                return IngestResult("duplicate", result.sha256, known.id)
        return result


def known_state(image: Image) -> str:
    """What a re-import of an image already in the catalog is told: its state, and how to retry a failure."""
    if image.status == "error":
        return (
            f"already in the catalog (image {image.id}), analysis failed: {image.reject_reason or 'error'}; "
            "`ghosts analyze --retry-errors` tries it again"
        )
    return f"already in the catalog (image {image.id}, {image.status})"


def ingest_bytes(ws, data: bytes, **kwargs) -> IngestResult:
    """Ingest one image's bytes (see Ingestor.add for the keyword arguments)."""
    return Ingestor(ws).add(data, **kwargs)


SNIFF_ABOVE = 16 << 20  # files larger than this are identified from their header before being read whole


class Unreadable(Exception):
    """A local file that cannot be read at all (the item failed; not a verdict on its contents)."""


def precheck_file(path, max_bytes: int, size: int | None = None, fh=None) -> str | None:
    """Why a local file is refused before it is read (None: read it): too large, or a large file whose header
    is no image format's (only the header is read, so a 1 GB non-image costs a few bytes, not a gigabyte).
    `size` and `fh` (an open binary file) spare a second look at the path when the caller has them."""
    size = path.stat().st_size if size is None else size
    if size > max_bytes:
        return f"too large: {size} bytes > the {max_bytes} byte limit (GHOSTS_MAX_FILE_BYTES)"
    if size > SNIFF_ABOVE:
        try:
            with contextlib.nullcontext(fh) if fh is not None else open(path, "rb") as f:
                start = f.tell()
                try:
                    with PILImage.open(f) as im:
                        im.format  # noqa: B018 - identified from the header alone
                finally:
                    f.seek(start)
        except PILImage.DecompressionBombError:
            return None  # an image: decode_image refuses it with the pixel limit's reason
        except (PILImage.UnidentifiedImageError, ValueError, SyntaxError):
            return f"not an image: {size} bytes whose header is no image format Pillow knows"
    return None


def read_local_file(path: Path, max_bytes: int) -> tuple[bytes | None, str | None, os.stat_result]:
    """(bytes, None, stat) of a regular file, or (None, refusal, stat) when precheck_file refuses it.

    Opened without blocking and checked on the open file, so a named pipe (or a file swapped for one after the
    folder was listed) is refused instead of hanging the batch. Raises Unreadable with the reason otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise Unreadable(f"cannot read file: {e.strerror or e}") from e
    with os.fdopen(fd, "rb") as fh:
        try:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise Unreadable(f"not a file or folder: {special_kind(st.st_mode)}")
            refusal = precheck_file(path, max_bytes, st.st_size, fh)
            if refusal:
                return None, refusal, st
            return fh.read(), None, st
        except OSError as e:
            raise Unreadable(f"cannot read file: {e.strerror or e}") from e


def ingest_paths(
    ws, paths: Iterable[str | os.PathLike], recursive: bool = False, progress: bool = True
) -> ImportSummary:
    """Import local files and folders. One bad item never stops the batch: a file that is not an acceptable
    image is refused with a reason (`rejected`), a path that cannot be read at all (missing, unreadable, a
    symlink loop, a named pipe, an unreadable sub-folder) is listed in `failed`, and the rest go on."""
    problems: list[dict[str, str]] = []  # named paths and folder entries that cannot be read
    files, skipped = collect_files(paths, recursive, problems)
    summary = ImportSummary(skipped=skipped, failed=problems)
    ingestor = Ingestor(ws)
    for f in tqdm(files, desc="import", unit="img", disable=not progress):
        label = str(f)
        try:
            data, refusal, st = read_local_file(f, ws.settings.max_file_bytes)
        except Unreadable as e:
            summary.failed.append({"path": label, "reason": str(e)})
            continue
        if refusal:
            summary.rejected.append({"path": label, "reason": refusal})
            continue
        result = ingestor.add(
            data,
            name=f.name,
            source_kind="local",
            source_ref=str(f.resolve()),
            provenance={
                "source": "local",
                "original_path": str(f.resolve()),
                "mtime": dt.datetime.fromtimestamp(st.st_mtime, dt.UTC).isoformat(),
                "imported_at": utcnow().isoformat(),
            },
        )
        summary.count(result, label)
    return summary
