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
import zlib
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from curation.catalog.errors import GhostsError

if TYPE_CHECKING:
    import numpy as np

FORMAT = "ghosts-dataset/1"
DATASET_JSON = "dataset.json"
PROVENANCE = "provenance.jsonl"
CARD = "DATASET.md"
MANIFEST = "manifest.json"
META_MEMBERS = (DATASET_JSON, PROVENANCE, CARD)  # written in this order, after the images
# The earliest date a zip entry can hold; a fixed stamp keeps re-freezes byte-identical.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# PNGs are written here (one IDAT, every row filtered with the Average filter, zlib level 1): a third of the
# CPU time of Pillow's adaptive filtering at level 3 for files about 2% larger (aligned 256-px faces: 2.3 ms
# and 99 KB against 5.9 ms and 97 KB), and bytes that depend on zlib alone, not on an image library's version.
PNG_COMPRESS_LEVEL = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def encode_png(pixels: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of an HxWx3 (RGB) or HxW (L) uint8 array: 8-bit, not interlaced, no metadata or time chunks;
    every row Average-filtered (each byte minus the mean of its left and upper neighbours), one IDAT."""
    # numpy imported here, for start-up cost: `ghosts pack` of PNGs stored as they are never needs it.
    import numpy as np

    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"expected HxWx3 or HxW uint8 pixels, got {pixels.shape} {pixels.dtype}")
    h, w = pixels.shape[:2]
    bpp = 1 if pixels.ndim == 2 else 3
    x = np.ascontiguousarray(pixels).reshape(h, w * bpp).astype(np.int16)
    mean = np.zeros_like(x)
    mean[:, bpp:] = x[:, :-bpp]
    mean[1:] += x[:-1]
    rows = np.empty((h, w * bpp + 1), np.uint8)
    rows[:, 0] = 3  # filter type 3, Average
    rows[:, 1:] = x - (mean >> 1)  # modulo 256, as the format defines it
    header = struct.pack(">IIBBBBB", w, h, 8, 0 if bpp == 1 else 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), compress_level))
        + _png_chunk(b"IEND", b"")
    )


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
