"""Aligned face crops rendered ahead of `ghosts freeze`: a content-addressed cache in the workspace.

Decoding a 1080 x 1350 JPEG costs more than packing a face, so a freeze that starts from the original photos
cannot be as cheap as a pack. The crop of an accepted face is therefore rendered when it is accepted (in the
background, see CropRenderer) and stored under `cache/crops/` with a key that names everything its bytes depend
on: the photo's content hash, the crop quad, the output side, the pixel limit and a digest of the code that
makes the pixels (decode, alignment, PNG encoder, and the numpy, OpenCV and Pillow versions). Freeze uses a
cached crop only when its key matches and the file passes the checks pack applies to a stored PNG (every chunk
CRC, the inflated size, the header's side and mode), hashing it in the same read; anything else is rendered
from the photo. A cached crop is the very bytes a render gives, so the archive is the same either way.

The cache is only an accelerator: deleting `cache/crops/` loses nothing, and a stale entry is never read
(a re-review that moves the quad, a new code version or a re-imported photo changes the key).

Filled by curation.datasets.prerender (in the background when faces are accepted); read by freeze.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation.catalog.imaging import load_rgb
from curation.catalog.store import TMP_PREFIX
from curation.datasets.format import encode_png
from curation.datasets.png import storable_png

log = logging.getLogger(__name__)

CROPS_DIR = Path("cache") / "crops"  # under the workspace root
# The modules whose code makes a crop's bytes (named, not imported: a freeze served from the cache never
# loads OpenCV).
_PIXEL_CODE = ("alignment.align", "alignment.png", "curation.catalog.imaging")
_PIXEL_LIBS = (
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "opencv-contrib-python",
    "pillow",
    "deflate",
)


@functools.cache
def pixel_code_digest() -> str:
    """sha256 of the source of the code that turns a photo and a quad into PNG bytes, and of the library
    versions it runs on: any change there gives every crop a new key (no stale crop is ever read)."""
    h = hashlib.sha256()
    for module in _PIXEL_CODE:
        h.update(Path(importlib.util.find_spec(module).origin).read_bytes())
    for dist in _PIXEL_LIBS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            h.update(f"{dist}={importlib.metadata.version(dist)};".encode())
    return h.hexdigest()


def crop_key(image_sha256: str, quad: np.ndarray, size: int, max_pixels: int | None) -> str:
    """The cache key of one crop: everything its bytes depend on (the quad's floats exactly, as hex)."""
    body = json.dumps(
        {
            "image": image_sha256,
            "quad": [float(v).hex() for v in np.asarray(quad, dtype=np.float64).ravel()],
            "size": int(size),
            "max_pixels": max_pixels,
            "code": pixel_code_digest(),
        },
        sort_keys=True,
    )
    return hashlib.sha256(body.encode("ascii")).hexdigest()


def crop_path(root: Path, key: str) -> Path:
    return root / CROPS_DIR / key[:2] / f"{key}.png"


def read_cached(path: Path, size: int) -> tuple[bytes, str, int] | None:
    """(PNG bytes, sha256, CRC-32) of a cached crop that passes pack's checks for a stored PNG: every chunk
    CRC, image data inflating to exactly size x size RGB rows, no chunk beyond the critical ones (the file
    must be what a render gives, byte for byte). None for a missing, unreadable or failing file."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if storable_png(data, size, "RGB") is not data:  # data itself: valid, and nothing to drop
        return None
    return data, hashlib.sha256(data).hexdigest(), zlib.crc32(data)


def store_crop(path: Path, png: bytes) -> None:
    """Put one crop in the cache: written under a temp name and renamed, so a reader sees all of it or
    nothing. Not fsynced: a crop lost in a crash is a miss, and a damaged one fails read_cached's checks
    (and a sync per crop would contend with the review server's catalog commits)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        tmp.write_bytes(png)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render_crop(rgb: np.ndarray, quad: np.ndarray, size: int) -> tuple[np.ndarray, bytes]:
    """The aligned face (pixels) and its PNG: what freeze stores and what the cache holds."""
    from alignment.align import align_face  # here, for start-up cost: OpenCV only when a crop is rendered

    face = np.asarray(align_face(rgb, quad, size=size), dtype=np.uint8)
    return face, encode_png(face)


@dataclass
class PhotoCrops:
    """The crops wanted from one photo: its path, its content hash and each face's quad."""

    path: Path
    image_sha256: str
    quads: list[np.ndarray]


def render_missing(
    root: Path,
    photos: list[PhotoCrops],
    sizes: list[int],
    max_pixels: int | None,
    between: Callable[[], None] | None = None,  # called before each photo decoded (the prerender yields)
) -> list[dict[str, int]]:
    """Render into the cache every crop of `photos`, at each of `sizes`, not there yet. A photo is decoded
    once, and only when one of its crops is missing at some size. A photo that cannot be read is logged and
    skipped: freeze will say what is wrong with it. Returns one line of counts per size: rendered, present,
    failed photos."""
    counts = {size: {"size": size, "rendered": 0, "present": 0, "failed": 0} for size in sizes}
    for photo in photos:
        missing = []  # (size, key, quad)
        for size in sizes:
            for quad in photo.quads:
                key = crop_key(photo.image_sha256, quad, size, max_pixels)
                if read_cached(crop_path(root, key), size) is None:
                    missing.append((size, key, quad))
                else:
                    counts[size]["present"] += 1
        if not missing:
            continue
        if between is not None:
            between()
        try:
            rgb = load_rgb(photo.path, max_pixels, writable=False)
        except Exception as e:  # noqa: BLE001 - any bad photo: skip it, freeze says why
            log.warning("crop cache: skipped %s (%s)", photo.path, e)
            for size in {size for size, _, _ in missing}:
                counts[size]["failed"] += 1
            continue
        failed = set()  # the sizes at which this photo failed (counted once per photo and size)
        for size, key, quad in missing:
            try:
                store_crop(crop_path(root, key), render_crop(rgb, quad, size)[1])
                counts[size]["rendered"] += 1
            except Exception as e:  # noqa: BLE001 - a bad quad, OpenCV, a full disk: the next crop still goes
                log.warning("crop cache: skipped a crop of %s at %d px (%s)", photo.path, size, e)
                failed.add(size)
        for size in failed:
            counts[size]["failed"] += 1
    return list(counts.values())


def clear_cache(root: Path) -> None:
    """Delete every cached crop. A takedown does: a crop is an image of a face, and its key names no photo
    (so the crops of one photo cannot be found); the prerender fills the cache again from what is left."""
    shutil.rmtree(root / CROPS_DIR, ignore_errors=True)
