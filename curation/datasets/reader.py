"""The one archive reader: `open_archive` (used by ghosts verify's callers, takedown and training alike) and the
manifest beside a version's zip."""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import numpy as np
from PIL import Image

from curation.datasets.format import (
    CARD,
    DATASET_JSON,
    IMAGE_NAME_RE,
    MANIFEST,
    MAX_CLASSES,
    MAX_RESOLUTION,
    PROVENANCE,
    ArchiveError,
    png_header,
    unsafe_member_reason,
)
from curation.datasets.labels import is_label_pair


def find_manifest(zip_path: str | os.PathLike) -> Path | None:
    """The manifest.json beside a zip that names it (how freeze lays out datasets/NAME/vN/), or None."""
    zip_path = Path(zip_path)
    cand = zip_path.parent / MANIFEST
    if cand.is_file():
        with contextlib.suppress(ValueError, OSError):
            if json.loads(cand.read_text()).get("archive") == zip_path.name:
                return cand
    return None


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a dataset version, given its folder (datasets/NAME/vN), its zip, or the manifest file."""
    path = Path(path)
    if path.is_dir():
        target = path / MANIFEST
    elif path.suffix == ".zip":
        target = find_manifest(path)
        if target is None:
            raise ArchiveError(f"no manifest.json naming {path.name} beside it in {path.parent}")
    else:
        target = path
    try:
        manifest = json.loads(target.read_text())
    except FileNotFoundError:
        raise ArchiveError(f"no manifest at {target}") from None
    except ValueError as e:
        raise ArchiveError(f"manifest {target} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise ArchiveError(f"{target} is not a dataset manifest (no sha256)")
    return manifest


class Archive:
    """A dataset archive opened for reading. Iterating yields `(name, image, label)` in index order.

    `image` is a PIL image, or an HxWxC uint8 array from `iter(as_array=True)`; `label` is an int or None.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self._zip = zipfile.ZipFile(self.path)
        except FileNotFoundError:
            raise ArchiveError(f"no such archive: {self.path}") from None
        except (zipfile.BadZipFile, OSError) as e:
            raise ArchiveError(
                f"{self.path} is not a readable zip archive (truncated or corrupt?): {e}"
            ) from None
        members = self._zip.namelist()
        for name in members:
            if why := unsafe_member_reason(name):
                self._zip.close()
                raise ArchiveError(f"{self.path}: refusing unsafe member name {name!r} ({why})")
        self.names: list[str] = sorted(n for n in members if IMAGE_NAME_RE.match(n))
        if not self.names:
            self._zip.close()
            raise ArchiveError(f"{self.path} holds no PNG images named NNNNN/imgNNNNNNNN.png")
        self._members = set(members)
        self._provenance: list[dict[str, Any]] | None = None
        self.labels: dict[str, int] | None = self._read_labels()
        manifest_path = find_manifest(self.path)
        self.manifest: dict[str, Any] | None = read_manifest(manifest_path) if manifest_path else None

    def _read_labels(self) -> dict[str, int] | None:
        if DATASET_JSON not in self._members:
            return None
        try:
            labels = json.loads(self._zip.read(DATASET_JSON)).get("labels")
        except (ValueError, AttributeError) as e:
            raise ArchiveError(f"{self.path}: dataset.json is not valid: {e}") from None
        if labels is None:
            return None
        table: dict[str, int] = {}
        for entry in labels if isinstance(labels, list) else [labels]:
            if not is_label_pair(entry):
                raise ArchiveError(
                    f'{self.path}: dataset.json labels must be ["name", class], found {entry!r}'
                )
            if not 0 <= entry[1] < MAX_CLASSES:
                raise ArchiveError(
                    f"{self.path}: dataset.json gives {entry[0]} class {entry[1]}, outside "
                    f"0..{MAX_CLASSES - 1}"
                )
            table[entry[0]] = entry[1]
        return table

    @property
    def count(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return self.count

    @property
    def resolution(self) -> int:
        with self._zip.open(self.names[0]) as fh:
            return png_header(fh.read(33))[0]

    @property
    def provenance(self) -> list[dict[str, Any]]:
        """The provenance records, one per image, in index order ([] when the archive carries none)."""
        if self._provenance is None:
            if PROVENANCE not in self._members:
                self._provenance = []
            else:
                text = self._zip.read(PROVENANCE).decode("utf-8")
                self._provenance = [json.loads(line) for line in text.splitlines() if line.strip()]
        return self._provenance

    @property
    def card(self) -> str | None:
        return self._zip.read(CARD).decode("utf-8") if CARD in self._members else None

    def read_bytes(self, name: str) -> bytes:
        return self._zip.read(name)

    def read_image(self, name: str) -> Image.Image:
        """Decode one member, after its PNG header's size is checked (a header claiming 30000 x 30000 pixels
        is refused before anything is allocated for it)."""
        with self._zip.open(name) as fh:
            head = fh.read(33)
        try:
            width, height, _ = png_header(head)
        except ValueError:
            raise ArchiveError(f"{self.path}: {name} is not a PNG file") from None
        if not (0 < width <= MAX_RESOLUTION and 0 < height <= MAX_RESOLUTION):
            raise ArchiveError(
                f"{self.path}: {name} claims {width}x{height} pixels, beyond {MAX_RESOLUTION}px"
            )
        im = Image.open(io.BytesIO(self._zip.read(name)))
        im.load()
        return im

    def iter(self, as_array: bool = False) -> Iterator[tuple[str, Any, int | None]]:
        for name in self.names:
            im = self.read_image(name)
            yield name, (np.asarray(im) if as_array else im), (self.labels or {}).get(name)

    def __iter__(self) -> Iterator[tuple[str, Image.Image, int | None]]:
        return self.iter()

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_archive(path: str | os.PathLike) -> Archive:
    """Open a dataset archive for reading (refuses zip-slip member names)."""
    return Archive(path)
