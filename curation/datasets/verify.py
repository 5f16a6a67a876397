"""The archive verifier (`ghosts verify`): every problem found becomes a line in the report."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from curation.datasets.format import (
    CARD,
    DATASET_JSON,
    DEFAULT_MAX_ARCHIVE_BYTES,
    IMAGE_NAME_RE,
    MAX_CLASSES,
    MAX_LISTED_FAULTS,
    MAX_RESOLUTION,
    META_MEMBERS,
    MIN_RESOLUTION,
    PROVENANCE,
    ArchiveError,
    archive_name,
    is_power_of_two,
    png_header,
    sha256_file,
    unsafe_member_reason,
)
from curation.datasets.labels import is_label_pair
from curation.datasets.reader import find_manifest, read_manifest


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
        if not (is_label_pair(entry) and 0 <= entry[1] < MAX_CLASSES):
            rep.fault(
                f'{DATASET_JSON}: each label must be ["NNNNN/imgNNNNNNNN.png", class in 0..{MAX_CLASSES - 1}], '
                f"found {entry!r}"
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
