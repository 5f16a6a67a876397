"""The frozen dataset archive: a deterministic writer, a reader, and a verifier.

The format is what StyleGAN2-ADA's `ImageFolderDataset` reads unchanged: an uncompressed zip of same-size,
square, power-of-two PNGs named `00000/img00000000.png` (1000 per folder) and a root `dataset.json` holding
`{"labels": null}` or `{"labels": [[name, class], ...]}`. Beside them, files the trainer ignores:
`provenance.jsonl` (one JSON line per image: where the face came from, and the sha256 of its PNG) and
`DATASET.md` (the dataset card).

Determinism: every member gets the same timestamp and permissions, members are written in a fixed order
(images by index, then dataset.json, provenance.jsonl, DATASET.md), JSON is written with sorted keys, and PNGs
are encoded with fixed settings and no metadata chunks. The same inputs therefore give the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Self

import numpy as np
from PIL import Image
from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.store import TMP_PREFIX, fsync_dir

FORMAT = "ghosts-dataset/1"
DATASET_JSON = "dataset.json"
PROVENANCE = "provenance.jsonl"
CARD = "DATASET.md"
MANIFEST = "manifest.json"
META_MEMBERS = (DATASET_JSON, PROVENANCE, CARD)  # written in this order, after the images
# The earliest date a zip entry can hold; a fixed stamp keeps re-freezes byte-identical.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# zlib level 3 encodes ~3x faster than Pillow's default 6 for ~6% larger PNGs (docs/benchmarks.md#packing).
PNG_COMPRESS_LEVEL = 3
IMAGES_PER_FOLDER = 1000  # implied by the name scheme: the folder is the first 5 of 8 index digits
MIN_RESOLUTION = 4  # StyleGAN2's lowest synthesis block
MAX_RESOLUTION = 8192  # refuse bigger PNG headers before decoding them (decompression bombs)
DEFAULT_MAX_ARCHIVE_BYTES = 1 << 40  # 1 TiB: far above FFHQ at 1024 px (~90 GB), far below a zip bomb's claim
MAX_LISTED_FAULTS = 100

IMAGE_NAME_RE = re.compile(r"^(\d{5})/img(\d{8})\.png$")


class ArchiveError(GhostsError):
    """An archive that cannot be written or read as a ghosts dataset archive."""


# --- names, PNGs, JSON --------------------------------------------------------------------------------------


def archive_name(index: int) -> str:
    """The member name of image `index`: `00000/img00000000.png`, 1000 images per folder."""
    digits = f"{index:08d}"
    return f"{digits[:5]}/img{digits}.png"


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def encode_png(pixels: np.ndarray, compress_level: int = PNG_COMPRESS_LEVEL) -> bytes:
    """PNG bytes of an HxWx3 (RGB) or HxW (L) uint8 array: fixed zlib level, no metadata or time chunks."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"expected HxWx3 or HxW uint8 pixels, got {pixels.shape} {pixels.dtype}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(
        buf, "PNG", compress_level=compress_level, optimize=False
    )
    return buf.getvalue()


# PNG colour types for 8-bit images; anything else (16-bit, alpha, palette) is outside the format.
_PNG_MODES = {(8, 0): "L", (8, 2): "RGB", (8, 4): "LA", (8, 6): "RGBA", (8, 3): "P"}


def png_header(data: bytes) -> tuple[int, int, str]:
    """(width, height, mode) from a PNG's IHDR chunk, without decoding pixels."""
    if len(data) < 33 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
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


def _zipinfo(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # "Unix" everywhere, so the bytes do not depend on the OS that wrote them
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    return info


# --- the dataset card ---------------------------------------------------------------------------------------

RIGHTS_SCRAPED = (
    "Images from public social-media posts remain the work of their authors, who hold the copyright and the "
    "rights in their likeness. This dataset does not license them to anyone. It was assembled for research on "
    "generative models; whoever uses it is responsible for a lawful basis to do so where they are."
)
RIGHTS_LOCAL = (
    "Images were supplied by the person who built this dataset, who is responsible for having the right to use "
    "them and the consent of the people shown."
)
INTENDED_USE = (
    "Training and evaluating generative image models (StyleGAN2-ADA) for research and art, and studying "
    "small-data training."
)
OUT_OF_SCOPE = (
    "Identifying, tracking or profiling the people shown; face recognition; generating images meant to pass as "
    "a real, identifiable person; any use the image authors or the people shown have not agreed to where "
    "consent is required; redistribution of the images themselves."
)


@dataclass
class CardFacts:
    """What a dataset card says; `render_card` turns it into DATASET.md."""

    title: str
    date: str
    count: int
    resolution: int
    mode: str
    class_names: list[str] | None = None
    sources: dict[str, int] = field(default_factory=dict)  # source kind -> images
    tags: dict[str, int] = field(default_factory=dict)  # query tag -> images
    owners: int = 0  # distinct accounts (not named: the card travels further than the catalog)
    photos: int = 0  # distinct source photos
    manual: int = 0  # faces cropped by hand in review
    selection: list[str] = field(default_factory=list)  # the rules that chose the images
    history: list[str] = field(default_factory=list)  # parent version, removals
    removal: str = "Ask the maintainer of this dataset, naming the account, the post URL or the image."


def render_card(f: CardFacts) -> str:
    scraped = any(k != "local" for k in f.sources)
    lines = [
        f"# {f.title}",
        "",
        f"- Format: {FORMAT} (StyleGAN2-ADA image folder zip)",
        f"- Date: {f.date}",
        f"- Images: {f.count}" + (f" faces from {f.photos} photos" if f.photos else ""),
        f"- Resolution: {f.resolution} x {f.resolution} px, {f.mode}",
        "- Labels: "
        + (", ".join(f"{i} = {n}" for i, n in enumerate(f.class_names)) if f.class_names else "none"),
    ]
    if f.manual:
        lines.append(f"- Hand-cropped faces: {f.manual}")
    lines += ["", "## Sources", ""]
    lines += [f"- {kind}: {n} images" for kind, n in sorted(f.sources.items())] or ["- (not recorded)"]
    if f.tags:
        lines.append("- Tags: " + ", ".join(f"#{t} ({n})" for t, n in sorted(f.tags.items())))
    if f.owners:
        lines.append(f"- Accounts: {f.owners} distinct (listed per image in provenance.jsonl)")
    if f.selection:
        lines += ["", "## Selection", ""] + [f"- {rule}" for rule in f.selection]
    if f.history:
        lines += ["", "## History", ""] + [f"- {h}" for h in f.history]
    lines += [
        "",
        "## Rights",
        "",
        RIGHTS_SCRAPED if scraped else RIGHTS_LOCAL,
        "",
        "## Intended use",
        "",
        INTENDED_USE,
        "",
        "## Out of scope",
        "",
        OUT_OF_SCOPE,
        "",
        "## Removal",
        "",
        "Anyone shown in, or holding rights to, an image here can ask for its removal. " + f.removal,
        "Removed images are excluded from every later version, and a new version is published without them.",
        "",
        "## Files",
        "",
        "- `NNNNN/imgNNNNNNNN.png`: the images, in the order of provenance.jsonl",
        "- `dataset.json`: class labels for StyleGAN2-ADA (`null` when unlabelled)",
        (
            "- `provenance.jsonl`: one JSON line per image: source, post or file, face landmarks and crop, quality, "
            "review decision, and the sha256 of the PNG"
        ),
        "",
    ]
    return "\n".join(lines)


# --- writing ------------------------------------------------------------------------------------------------


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
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + self.path.name + ".", dir=self.path.parent)
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

    def add(self, png: bytes, record: dict[str, Any] | None = None, label: int | None = None) -> str:
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
        self._zip.writestr(_zipinfo(name), png)
        rec = dict(record or {})
        rec["archive_name"] = name
        rec["png_sha256"] = hashlib.sha256(png).hexdigest()
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
        self._zip.writestr(_zipinfo(DATASET_JSON), (json.dumps({"labels": labels}, indent=1) + "\n").encode())
        self._zip.writestr(_zipinfo(PROVENANCE), "".join(json_line(r) + "\n" for r in self._records).encode())
        self._zip.writestr(_zipinfo(CARD), text.encode("utf-8"))
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


# --- reading ------------------------------------------------------------------------------------------------


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
        return None if labels is None else {str(n): int(c) for n, c in labels}

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


# --- verifying ----------------------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    path: str
    ok: bool = False
    faults: list[str] = field(default_factory=list)
    count: int = 0
    resolution: int | None = None
    mode: str | None = None
    labelled: bool = False
    sha256: str | None = None
    size_bytes: int = 0
    manifest: str | None = None
    more_faults: int = 0  # faults found beyond the listed ones

    def fault(self, text: str) -> None:
        if len(self.faults) < MAX_LISTED_FAULTS:
            self.faults.append(text)
        else:
            self.more_faults += 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_archive(
    path: str | os.PathLike,
    *,
    manifest: str | os.PathLike | None = None,  # default: manifest.json beside the zip when it names it
    max_bytes: int = DEFAULT_MAX_ARCHIVE_BYTES,  # refuse archives whose members add up to more than this
    progress: bool = False,
) -> VerifyReport:
    """Check an archive against the format; every problem found becomes a line in `report.faults`."""
    path = Path(path)
    rep = VerifyReport(str(path))
    if not path.is_file():
        rep.fault(f"no such file: {path}")
        return rep
    rep.size_bytes = path.stat().st_size
    rep.sha256 = sha256_file(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        rep.fault(f"not a readable zip archive (truncated or corrupt): {e}")
        return rep
    with zf:
        if _check_members(zf, rep, max_bytes):
            images = _check_images(zf, rep, progress)
            labels = _check_dataset_json(zf, rep, images)
            _check_provenance(zf, rep, images, labels)
            if CARD not in zf.namelist():
                rep.fault(f"{CARD} (the dataset card) is missing")
    _check_manifest(path, rep, manifest)
    rep.ok = not rep.faults and not rep.more_faults
    return rep


def _check_members(zf: zipfile.ZipFile, rep: VerifyReport, max_bytes: int) -> bool:
    """Names, sizes and storage of the members; False when reading them further would be unsafe."""
    infos = zf.infolist()
    safe = True
    for info in infos:
        if why := unsafe_member_reason(info.filename):
            rep.fault(f"unsafe member name {info.filename!r} ({why}): refusing the archive (zip-slip)")
            safe = False
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        rep.fault(f"members expand to {total:,} bytes, beyond the limit of {max_bytes:,}")
        safe = False
    if not safe:
        return False
    seen: set[str] = set()
    for info in infos:
        name = info.filename
        if name in seen:
            rep.fault(f"duplicate member {name}")
        seen.add(name)
        if info.is_dir():
            continue
        if not IMAGE_NAME_RE.match(name) and name not in META_MEMBERS:
            rep.fault(
                f"unexpected member {name} (the format holds NNNNN/imgNNNNNNNN.png and {', '.join(META_MEMBERS)})"
            )
        if info.compress_type != zipfile.ZIP_STORED:
            rep.fault(
                f"{name} is compressed (method {info.compress_type}); the format stores members uncompressed"
            )
        elif info.compress_size != info.file_size:
            rep.fault(f"{name}: stored size {info.compress_size} differs from its size {info.file_size}")
        if info.header_offset + info.compress_size > rep.size_bytes:
            rep.fault(f"{name} extends past the end of the file (truncated archive)")
            return False
    return True


def _check_images(zf: zipfile.ZipFile, rep: VerifyReport, progress: bool) -> dict[str, str]:
    """Decode every image; return {name: sha256 of its bytes} for the images that could be read."""
    names = sorted(n for n in zf.namelist() if IMAGE_NAME_RE.match(n))
    if not names:
        rep.fault("no images named NNNNN/imgNNNNNNNN.png")
        return {}
    for expected, name in enumerate(names):
        folder, digits = IMAGE_NAME_RE.match(name).groups()
        if digits[:5] != folder:
            rep.fault(f"{name} is in folder {folder}, expected {digits[:5]}")
        if int(digits) != expected:
            rep.fault(
                f"image indices are not 0..{len(names) - 1} without gaps: {name} where {archive_name(expected)} belongs"
            )
            break
    digests: dict[str, str] = {}
    for name in tqdm(names, desc="verify", unit="img", disable=not progress):
        try:
            data = zf.read(name)  # checks the CRC-32
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as e:
            rep.fault(f"{name} cannot be read: {e}")
            continue
        digests[name] = hashlib.sha256(data).hexdigest()
        try:
            width, height, mode = png_header(data)
        except ValueError:
            rep.fault(f"{name} is not a PNG file")
            continue
        if width > MAX_RESOLUTION or height > MAX_RESOLUTION:
            rep.fault(f"{name} claims {width}x{height} pixels, beyond {MAX_RESOLUTION}px: not decoded")
            continue
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
        except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for damaged data; each is a fault
            rep.fault(f"{name} does not decode: {e}")
            continue
        if width != height or not is_power_of_two(width) or width < MIN_RESOLUTION:
            rep.fault(f"{name} is {width}x{height}: not square with a power-of-two side")
        if mode not in ("RGB", "L"):
            rep.fault(f"{name} has mode {mode}; the format takes 8-bit RGB or L")
        if rep.resolution is None:
            rep.resolution, rep.mode = width, mode
        elif (width, mode) != (rep.resolution, rep.mode):
            rep.fault(f"{name} is {width}px {mode}, unlike the first image ({rep.resolution}px {rep.mode})")
    rep.count = len(names)
    return digests


def _check_dataset_json(
    zf: zipfile.ZipFile, rep: VerifyReport, images: dict[str, str]
) -> dict[str, int] | None:
    if DATASET_JSON not in zf.namelist():
        rep.fault(f"{DATASET_JSON} is missing")
        return None
    try:
        doc = json.loads(zf.read(DATASET_JSON))
    except (ValueError, zipfile.BadZipFile) as e:
        rep.fault(f"{DATASET_JSON} is not valid JSON: {e}")
        return None
    if not isinstance(doc, dict) or "labels" not in doc:
        rep.fault(f'{DATASET_JSON} has no "labels" key')
        return None
    if doc["labels"] is None:
        return None
    labels: dict[str, int] = {}
    entries = doc["labels"] if isinstance(doc["labels"], list) else [None]
    for entry in entries:
        if not (
            isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[0], str)
            and isinstance(entry[1], int)
            and not isinstance(entry[1], bool)
            and entry[1] >= 0
        ):
            rep.fault(
                f'{DATASET_JSON}: each label must be ["NNNNN/imgNNNNNNNN.png", class >= 0], found {entry!r}'
            )
            return None
        name, cls = entry
        if name in labels:
            rep.fault(f"{DATASET_JSON}: {name} is labelled twice")
        elif name not in images and not IMAGE_NAME_RE.match(name):
            rep.fault(f"{DATASET_JSON}: label for {name}, which is not an image")
        labels[name] = cls
    names = sorted(n for n in zf.namelist() if IMAGE_NAME_RE.match(n))
    for name in (n for n in names if n not in labels):
        rep.fault(f"{DATASET_JSON}: {name} has no label")
    for name in (n for n in labels if n not in set(names)):
        rep.fault(f"{DATASET_JSON}: label for {name}, which is not in the archive")
    rep.labelled = True
    return labels


def _check_provenance(
    zf: zipfile.ZipFile, rep: VerifyReport, images: dict[str, str], labels: dict[str, int] | None
) -> None:
    if PROVENANCE not in zf.namelist():
        rep.fault(f"{PROVENANCE} is missing")
        return
    names = sorted(n for n in zf.namelist() if IMAGE_NAME_RE.match(n))
    try:
        text = zf.read(PROVENANCE).decode("utf-8")
    except (zipfile.BadZipFile, UnicodeDecodeError) as e:
        rep.fault(f"{PROVENANCE} cannot be read: {e}")
        return
    seen: dict[str, dict[str, Any]] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        try:
            rec = json.loads(line)
            name = rec["archive_name"]
        except (ValueError, KeyError, TypeError):
            rep.fault(f"{PROVENANCE} line {lineno} is not a JSON record with an archive_name")
            continue
        if name in seen:
            rep.fault(f"{PROVENANCE}: two lines for {name}")
        seen[name] = rec
    for name in names:
        rec = seen.get(name)
        if rec is None:
            rep.fault(f"{PROVENANCE}: no line for {name}")
            continue
        if name in images and rec.get("png_sha256") != images[name]:
            rep.fault(f"{name} was altered: its sha256 differs from its provenance line")
        if labels is not None and "label" in rec and labels.get(name) != rec["label"]:
            rep.fault(
                f"{name}: label {labels.get(name)} in {DATASET_JSON} but {rec['label']} in {PROVENANCE}"
            )
    for name in sorted(set(seen) - set(names)):
        rep.fault(f"{PROVENANCE}: line for {name}, which is not in the archive")


def _check_manifest(path: Path, rep: VerifyReport, manifest: str | os.PathLike | None) -> None:
    target = Path(manifest) if manifest is not None else find_manifest(path)
    if target is None:
        return
    rep.manifest = str(target)
    try:
        m = read_manifest(target)
    except ArchiveError as e:
        rep.fault(str(e))
        return
    if m.get("sha256") != rep.sha256:
        rep.fault(f"sha256 {rep.sha256} differs from the manifest's {m.get('sha256')} ({target})")
    if "count" in m and rep.count and m["count"] != rep.count:
        rep.fault(f"{rep.count} images, but the manifest says {m['count']}")
    if "resolution" in m and rep.resolution and m["resolution"] != rep.resolution:
        rep.fault(f"resolution {rep.resolution}, but the manifest says {m['resolution']}")
