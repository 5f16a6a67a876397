"""The dataset archive format: what StyleGAN2-ADA's `ImageFolderDataset` reads unchanged.

An uncompressed zip of same-size, square, power-of-two PNGs named `00000/img00000000.png` (1000 per folder) and
a root `dataset.json` holding `{"labels": null}` or `{"labels": [[name, class], ...]}`. Beside them, files the
trainer ignores: `provenance.jsonl` (one JSON line per image: where the face came from, and the sha256 of its
PNG) and `DATASET.md` (the dataset card). This module holds the names, limits and the PNG/JSON helpers that the
writer, the reader and the verifier share.

Determinism: every member gets the same timestamp and permissions, members are written in a fixed order
(images by index, then dataset.json, provenance.jsonl, DATASET.md), JSON is written with sorted keys, and PNGs
are encoded with fixed settings and no metadata chunks. The same inputs therefore give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import zipfile
from pathlib import PurePosixPath
from typing import Any

from alignment.png import PNG_SIGNATURE, encode_png  # noqa: F401 - the archive's PNG encoder, re-exported
from curation.catalog.errors import GhostsError

FORMAT = "ghosts-dataset/1"
DATASET_JSON = "dataset.json"
PROVENANCE = "provenance.jsonl"
CARD = "DATASET.md"
MANIFEST = "manifest.json"
META_MEMBERS = (DATASET_JSON, PROVENANCE, CARD)  # written in this order, after the images
# The earliest date a zip entry can hold; a fixed stamp keeps re-freezes byte-identical.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
IMAGES_PER_FOLDER = 1000  # implied by the name scheme: the folder is the first 5 of 8 index digits
MIN_RESOLUTION = 4  # StyleGAN2's lowest synthesis block
MAX_RESOLUTION = 8192  # refuse bigger PNG headers before decoding them (decompression bombs)
DEFAULT_MAX_ARCHIVE_BYTES = 1 << 40  # 1 TiB: far above FFHQ at 1024 px (~90 GB), far below a zip bomb's claim
MAX_LISTED_FAULTS = 100
# Class labels are indices into a one-hot vector of max+1 entries: bounded before anything is sized by them
# (a label of 10**9 would ask training for terabytes). Far above any tag-labelled face dataset.
MAX_CLASSES = 1 << 16

IMAGE_NAME_RE = re.compile(r"^(\d{5})/img(\d{8})\.png$")


class ArchiveError(GhostsError):
    """An archive that cannot be written or read as a ghosts dataset archive."""


def archive_name(index: int) -> str:
    """The member name of image `index`: `00000/img00000000.png`, 1000 images per folder."""
    digits = f"{index:08d}"
    return f"{digits[:5]}/img{digits}.png"


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


# PNG colour types for 8-bit images; anything else (16-bit, alpha, palette) is outside the format.
_PNG_MODES = {(8, 0): "L", (8, 2): "RGB", (8, 4): "LA", (8, 6): "RGBA", (8, 3): "P"}


def png_header(data: bytes) -> tuple[int, int, str]:
    """(width, height, mode) from a PNG's IHDR chunk, without decoding pixels."""
    if len(data) < 33 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, _PNG_MODES.get((depth, colour), f"{depth}-bit colour type {colour}")


def json_line(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces, UTF-8): the same record always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def unsafe_member_reason(name: str) -> str | None:
    """Why a member name could escape the folder it is extracted to (zip-slip), or None when it is safe."""
    if not name or "\x00" in name:
        return "empty name or NUL byte"
    if "\\" in name:
        return "backslash in name"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in PurePosixPath(name).parts:
        return "'..' in path"
    return None


def zipinfo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # "Unix" everywhere, so the bytes do not depend on the OS that wrote them
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    return info
