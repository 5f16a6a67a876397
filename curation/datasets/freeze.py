"""Freezing the reviewed selection into a new, immutable dataset version.

`freeze_dataset` aligns every accepted face from its stored crop quad (no re-detection) and writes
`datasets/NAME/vN/NAME-vN-RES.zip` with its `manifest.json`, then records the version in the catalog.

Reproducible: faces are taken in a fixed order (source image sha256, then face index), the archive writer is
deterministic, and nothing in the zip depends on when or where it was built (the card's date is the time of
the newest review decision in the selection), so the same selection and settings give the same bytes.

Crash-safe: the zip is written to a temp file in the version folder and renamed when complete; the manifest
follows, and the catalog row comes last. A version folder without a catalog row was never a version (an
interrupted freeze); the next freeze of that name removes it and writes the version again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session
from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.imaging import decode_image, load_rgb
from curation.catalog.schema import DatasetItem, DatasetVersion, Face, Image, utcnow
from curation.catalog.store import atomic_write_text, fsync_dir
from curation.datasets.card import CardFacts, render_card
from curation.datasets.crops import crop_key, crop_path, read_cached, render_crop
from curation.datasets.format import FORMAT, MANIFEST, archive_name, json_line
from curation.datasets.pack import check_resolution, ordered_map
from curation.datasets.writer import ArchiveInfo, ArchiveWriter

log = logging.getLogger(__name__)

LABEL_MODES = ("none", "source-tag")
UNTAGGED = "untagged"  # the class of images no tag found (imports), under --labels source-tag
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# The mirror check hashes aligned faces with a 256-bit pHash: the common 64-bit one puts distinct aligned faces
# (which share their layout) as close as 8 bits apart, while at 256 bits they stay >80 bits apart and a
# flipped repost of the same face lands within ~12 (measured on the test photos).
MIRROR_HASH_SIZE = 16  # pHash side: 16 x 16 = 256 bits
MIRROR_DISTANCE = 40  # bits of 256 at or under which two faces count as the same face
REMOVAL_HOW = (
    "Ask the maintainer of this dataset, naming the account, the post URL or the image (its sha256 is in "
    "provenance.jsonl); they run `ghosts takedown`, which excludes the images from every later selection."
)


@dataclass
class FreezeResult:
    name: str
    version: int
    path: Path
    sha256: str
    count: int
    resolution: int
    created: bool  # False when the latest version already held exactly this selection
    dataset_id: int
    parent_version: int | None = None
    mirror_pairs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # caps exceeded (share_warnings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "path": str(self.path),
            "sha256": self.sha256,
            "count": self.count,
            "resolution": self.resolution,
            "created": self.created,
            "dataset_id": self.dataset_id,
            "parent_version": self.parent_version,
            "warnings": self.warnings,
        }


# --- versions: shared with takedown ------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise GhostsError(
            f"dataset name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


@contextlib.contextmanager
def dataset_lock(ws, name: str) -> Iterator[None]:
    """One writer per dataset name at a time (freeze or takedown); released by the OS even on kill -9."""
    folder = ws.datasets_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as fh:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one writer is the user's job
            recover_versions(ws, name)
            yield
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GhostsError(
                f"another freeze or takedown of dataset {name!r} is running; try again when it ends"
            ) from None
        try:
            recover_versions(ws, name)  # what a writer killed before us left
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def latest_version(session: Session, name: str) -> DatasetVersion | None:
    return session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.name == name)
        .order_by(DatasetVersion.version.desc())
        .limit(1)
    ).first()


STAGING = ".tmp-v"  # datasets/NAME/.tmp-vN.<pid>/: a version being written; renamed to vN after its commit


@contextlib.contextmanager
def new_version_dir(ws, name: str, version: int) -> Iterator[Path]:
    """A hidden staging folder for version `version` (`datasets/NAME/.tmp-vN.<pid>`), removed again if the
    block fails. `commit_version` records the version and then renames the folder to `vN`, so nothing that
    looks like a version (a `vN` folder with an archive that passes verify) exists before its catalog row does.
    Use under `dataset_lock`, with `version` taken from the catalog."""
    vdir = ws.datasets_dir / name / f"v{version}"
    if vdir.exists():
        # No catalog row names it (the caller took `version` from the catalog): debris of an older ghosts.
        shutil.rmtree(vdir)
    stage = ws.datasets_dir / name / f"{STAGING}{version}.{os.getpid()}"
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if stage.exists():  # the block ended without commit_version: nothing was recorded
        shutil.rmtree(stage, ignore_errors=True)


def recover_versions(ws, name: str) -> list[int]:
    """Settle the staging folders of `name` a killed freeze or takedown left (under `dataset_lock`): one whose
    version the catalog recorded is renamed into place (the kill came between the commit and the rename);
    any other is removed. Returns the versions put in place."""
    folder = ws.datasets_dir / name
    done: list[int] = []
    for stage in sorted(folder.glob(f"{STAGING}*")) if folder.is_dir() else []:
        m = re.fullmatch(re.escape(STAGING) + r"(\d+)\.\d+", stage.name)
        version = int(m.group(1)) if m else None
        with ws.session() as s:
            row = (
                s.scalars(
                    select(DatasetVersion).where(
                        DatasetVersion.name == name, DatasetVersion.version == version
                    )
                ).first()
                if version is not None
                else None
            )
        final = folder / f"v{version}"
        if row is not None and not final.exists() and (stage / Path(row.path).name).is_file():
            os.replace(stage, final)
            fsync_dir(folder)
            done.append(version)
        else:
            shutil.rmtree(stage, ignore_errors=True)
    return done


def code_version() -> str:
    """The installed ghosts version, plus the git commit when the code runs from a checkout."""
    try:
        version = importlib.metadata.version("ghosts")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    repo = Path(__file__).resolve().parents[1]
    if (repo / ".git").exists():
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            if out.returncode == 0 and out.stdout.strip():
                version += "+g" + out.stdout.strip()
    return version


def selection_digest(records: list[dict[str, Any]], resolution: int, labels: str) -> str:
    """sha256 of everything that decides the archive's content: the face records and the settings."""
    body = json_line({"format": FORMAT, "resolution": resolution, "labels": labels, "records": records})
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def commit_version(
    ws,
    *,
    name: str,
    version: int,
    info: ArchiveInfo,
    labels: str,
    class_names: list[str] | None,
    parent: DatasetVersion | None,
    digest: str,
    items: list[tuple[int | None, int | None]],  # (face_id, image_id) per archived image, in index order
    extra: dict[str, Any] | None = None,
) -> DatasetVersion:
    """Write manifest.json beside the finished zip in its staging folder, record the version and its items in
    the catalog, then rename the staging folder to `vN` (see new_version_dir). The row's path is the final
    one: use `ws.abspath(row.path)` afterwards, not `info.path`."""
    stage = info.path.parent
    final = ws.datasets_dir / name / f"v{version}"
    manifest = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "archive": info.path.name,
        "sha256": info.sha256,
        "size_bytes": info.size_bytes,
        "count": info.count,
        "resolution": info.resolution,
        "mode": info.mode,
        "labels": labels,
        "class_names": class_names,
        "parent": {"version": parent.version, "sha256": parent.sha256} if parent else None,
        "selection_digest": digest,
        "code_version": code_version(),
        "created_at": utcnow().isoformat(),
        **(extra or {}),
    }
    atomic_write_text(info.path.parent / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    with ws.session() as s:
        row = DatasetVersion(
            name=name,
            version=version,
            resolution=info.resolution,
            path=ws.relpath(final / info.path.name),
            sha256=info.sha256,
            count=info.count,
            parent_id=parent.id if parent else None,
            selection_digest=digest,
            labels=labels,
            manifest=manifest,
            code_version=manifest["code_version"],
        )
        s.add(row)
        s.flush()
        for i, (face_id, image_id) in enumerate(items):
            s.add(
                DatasetItem(
                    dataset_id=row.id, face_id=face_id, image_id=image_id, archive_name=archive_name(i)
                )
            )
    if stage != final:
        os.replace(stage, final)  # a kill before this line: recover_versions finishes it under the lock
        fsync_dir(final.parent)
    return row


# --- selection ----------------------------------------------------------------------------------------------


def selected_faces(session: Session) -> list[tuple[Face, Image]]:
    """Accepted, live faces of images still in the store and not taken down, in archive order."""
    rows = session.execute(
        select(Face, Image)
        .join(Image, Face.image_id == Image.id)
        .where(
            Face.decision == "accepted",
            Face.deleted.is_(False),
            Image.status != "excluded",
            Image.path.is_not(None),
        )
        .order_by(Image.sha256, Face.index, Face.id)
    ).all()
    return [(f, im) for f, im in rows]


def face_quad(face: Face) -> np.ndarray:
    """The crop quad the reviewer saw: stored with the face, else recomputed from its landmarks or points."""
    # alignment.align imported below, for start-up cost: it loads OpenCV, which a freeze whose crops are all
    # cached and whose faces all have a stored quad never needs.
    if face.quad is not None:
        quad = np.asarray(face.quad, dtype=np.float64)
    elif face.landmarks is not None:
        from alignment.align import ffhq_quad

        quad = np.asarray(ffhq_quad(np.asarray(face.landmarks, dtype=np.float64)), dtype=np.float64)
    elif face.points is not None:
        from alignment.align import quad_from_points

        p = face.points
        quad = np.asarray(quad_from_points(p["eye_left"], p["eye_right"], p["mouth_left"], p["mouth_right"]))
    else:
        raise GhostsError(
            f"face {face.id} (image {face.image_id}) has no quad, landmarks or points to align from"
        )
    if quad.shape != (4, 2) or not np.isfinite(quad).all():
        raise GhostsError(f"face {face.id} (image {face.image_id}) has a malformed crop quad {face.quad!r}")
    return quad


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)  # the catalog stores UTC; SQLite hands it back naive
    return t.astimezone(dt.UTC).isoformat()


def _tags(prov: dict[str, Any], caption: str | None) -> list[str] | None:
    tags = prov.get("tags") or prov.get("hashtags")
    if tags is None and caption:
        tags = re.findall(r"#(\w+)", caption)
    return sorted({str(t).lstrip("#").lower() for t in tags}) if tags else None


def face_record(face: Face, image: Image, quad: np.ndarray) -> dict[str, Any]:
    """The provenance line of one archived face (the writer adds archive_name, png_sha256 and label)."""
    prov = dict(image.provenance or {})
    caption = prov.get("caption")
    rec: dict[str, Any] = {
        "image_sha256": image.sha256,
        "source_kind": image.source_kind,
        "query": image.query,
        "face_index": face.index,
        "detector": face.detector,
        "manual": bool(face.manual),
        "person": face.person_id,  # the workspace's person id (curation.analysis.identities), None: not grouped
        "landmarks": face.landmarks,
        "points": face.points,
        "quad": quad.tolist(),
        "quality": {
            "score": face.score,
            "det_score": face.det_score,
            "blur": face.blur,
            "roll": face.roll,
            "yaw": face.yaw,
            "eye_dist": face.eye_dist,
            "quad_size": face.quad_size,
            "padding": face.padding,
            "upscaled": bool(face.upscaled),
            "flagged": bool(face.flagged),
            "measures": face.quality,
        },
        "decision": face.decision,
        "reviewer": face.reviewer,
        "decided_at": _iso(face.decided_at),
        "review_reason": face.reason,
        "source": prov,  # everything the source recorded
    }
    if image.source_kind == "local":
        rec["original_path"] = prov.get("original_path") or image.source_ref
    else:
        rec.update(
            post_url=image.post_url,
            shortcode=image.shortcode,
            owner=image.owner,
            caption=caption,
            tags=_tags(prov, caption),
            taken_at=_iso(image.taken_at),
            source_ref=image.source_ref,
        )
    # Every value is a column's plain value or a JSON field as the catalog decoded it (lists, dicts, str,
    # numbers, None), so json_line(rec) is the line provenance.jsonl holds, with no JSON round trip here
    # (it was a third of planning a 1,000-face freeze).
    return rec


def class_names_of(records: list[dict[str, Any]], labels: str) -> list[str] | None:
    if labels == "none":
        return None
    return sorted({r.get("query") or UNTAGGED for r in records})


def card_facts(
    records: list[dict[str, Any]],
    *,
    title: str,
    date: str,
    resolution: int,
    mode: str,
    class_names: list[str] | None,
    history: list[str],
    mirror_checked: bool,
    caps: dict[str, float | None] | None = None,  # max_person_share / max_owner_share the freeze checked
) -> CardFacts:
    """The dataset card's numbers, from the provenance records alone (freeze and takedown both use it)."""
    sources: dict[str, int] = {}
    tags: dict[str, int] = {}
    for r in records:
        sources[r["source_kind"]] = sources.get(r["source_kind"], 0) + 1
        if r.get("query"):
            tags[r["query"]] = tags.get(r["query"], 0) + 1
    reviewers = {r.get("reviewer") for r in records if r.get("reviewer")}
    selection = [
        "faces accepted in human review"
        + (f" ({len(reviewers)} reviewers)" if len(reviewers) > 1 else "")
        + ", not deleted, from images not excluded by a takedown",
        (
            f"aligned with the FFHQ recipe to {resolution} px from each face's stored crop quad (from 68 dlib "
            "landmarks, or from eye and mouth points placed by hand for manual crops); no re-detection"
        ),
        "ordered by the sha256 of the source image, then the face's index in it",
    ]
    if class_names:
        selection.append("class label = the tag that found the image (`source-tag`)")
    if mirror_checked:
        selection.append("checked: no two faces are mirror images or duplicates of each other (pHash)")
    return CardFacts(
        title=title,
        date=date,
        count=len(records),
        resolution=resolution,
        mode=mode,
        class_names=class_names,
        sources=sources,
        tags=tags,
        owners=len({r["owner"] for r in records if r.get("owner")}),
        photos=len({r["image_sha256"] for r in records}),
        manual=sum(bool(r.get("manual")) for r in records),
        selection=selection,
        history=history,
        removal=REMOVAL_HOW,
        caps=caps,
        **share_facts(records),
    )


def _largest(records: list[dict[str, Any]], key: str) -> tuple[Any, int]:
    counts: dict[Any, int] = {}
    for r in records:
        if r.get(key) is not None:
            counts[r[key]] = counts.get(r[key], 0) + 1
    return max(counts.items(), key=lambda kv: kv[1], default=(None, 0))


def share_facts(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How many people the records hold and the largest person's and account's shares of them."""
    n = max(len(records), 1)
    grouped = any(r.get("person") is not None for r in records)
    return {
        "people": len({r["person"] for r in records if r.get("person") is not None}) if grouped else None,
        "largest_person_share": _largest(records, "person")[1] / n,
        "largest_owner_share": _largest(records, "owner")[1] / n,
    }


def share_warnings(
    records: list[dict[str, Any]], max_person_share: float | None, max_owner_share: float | None
) -> list[str]:
    """One line per cap exceeded: a person or an account holding more of the selection than the user allows."""
    out = []
    for key, cap, what in (("person", max_person_share, "person"), ("owner", max_owner_share, "account")):
        top, count = _largest(records, key)
        if cap is not None and records and count / len(records) > cap:
            out.append(
                f"one {what} ({key} {top}) has {count} of the {len(records)} faces "
                f"({100 * count / len(records):.1f}%), above the {100 * cap:.1f}% cap"
            )
    return out


# --- alignment workers and the mirror check ----------------------------------------------------------------


@dataclass(frozen=True)
class PhotoJob:
    """The faces freeze takes from one photo, with where their rendered crops may already be cached."""

    path: Path
    image_sha256: str
    quads: list[np.ndarray]
    size: int
    max_pixels: int | None
    hashes: bool  # compute the mirror check's pHashes
    cache: Path | None  # the workspace root whose crop cache to read (None: render everything)


def _align_photo(job: PhotoJob) -> list[tuple[bytes, str, int, np.ndarray | None]]:
    """Cut every selected face out of one photo: PNG bytes, their sha256 and CRC-32 (hashed here, on the
    worker thread: hashlib and zlib release the GIL) and, for the mirror check, its two pHashes. A crop the
    cache holds under its key, passing pack's checks, is taken from there; the photo is decoded (once) only
    when a crop is missing."""
    if not job.path.is_file():
        raise GhostsError(
            f"{job.path} is missing from the image store; re-import the image or reject its faces"
        )
    cached: list[tuple[bytes, str, int] | None] = [None] * len(job.quads)
    if job.cache is not None:
        for i, quad in enumerate(job.quads):
            key = crop_key(job.image_sha256, quad, job.size, job.max_pixels)
            cached[i] = read_cached(crop_path(job.cache, key), job.size)
    rgb = None if all(cached) else load_rgb(job.path, job.max_pixels, writable=False)
    out = []
    for quad, hit in zip(job.quads, cached):
        if hit is not None:
            png, digest, crc = hit
            face = decode_image(png, writable=False).rgb if job.hashes else None
        else:
            face, png = render_crop(rgb, quad, job.size)
            digest, crc = hashlib.sha256(png).hexdigest(), zlib.crc32(png)
        out.append((png, digest, crc, face_hashes(face) if job.hashes else None))
    return out


def face_hashes(face: np.ndarray, hash_size: int = MIRROR_HASH_SIZE) -> np.ndarray:
    """(2, hash_size**2 / 64) uint64: the pHash of an aligned face and of its mirror image, bit for bit
    imagehash.phash's (grey, Lanczos to 4 x hash_size, 2-D DCT-II, the top-left hash_size x hash_size
    coefficients above their median). The grey image is shrunk once: Pillow's Lanczos filter is symmetric, so
    the mirror's shrunk image is the shrunk image mirrored (tests/curation/test_freeze.py holds both
    hashes to imagehash's on mirrored faces), and a second shrink and an RGB mirror are saved."""
    import scipy.fftpack  # imported here for start-up cost: only the mirror check needs it

    side = 4 * hash_size
    small = np.asarray(
        PILImage.fromarray(face).convert("L").resize((side, side), PILImage.Resampling.LANCZOS)
    )

    def bits(pixels: np.ndarray) -> np.ndarray:
        low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)[:hash_size, :hash_size]
        return (low > np.median(low)).ravel()

    both = np.stack([bits(small), bits(small[:, ::-1])])
    return np.packbits(both, axis=1).view(">u8").astype(np.uint64)


def mirror_pairs(
    hashes: list[np.ndarray], distance: int = MIRROR_DISTANCE, block_elems: int = 1 << 22
) -> list[tuple[int, int, str]]:
    """Pairs (i, j, kind) of faces whose pHashes differ in at most `distance` bits: `mirrored` when one is
    the other flipped, `duplicate` when they are the same way round. Training with x-flips would count them
    twice."""
    if len(hashes) < 2:
        return []
    both = np.stack(hashes)  # (n, 2, words)
    h, m = both[:, 0], both[:, 1]
    n, words = h.shape
    block = max(1, block_elems // (n * words))  # bounds the (block, n, words) temporary to ~32 MB
    found: dict[tuple[int, int], str] = {}
    for kind, other in (("duplicate", h), ("mirrored", m)):
        for start in range(0, n, block):
            d = np.bitwise_count(h[start : start + block, None, :] ^ other[None, :, :]).sum(axis=2)
            for i, j in zip(*np.nonzero(d <= distance)):
                i, j = int(i) + start, int(j)
                if i != j:
                    found.setdefault((min(i, j), max(i, j)), kind)
    return sorted((i, j, kind) for (i, j), kind in found.items())


# --- freeze -------------------------------------------------------------------------------------------------


@dataclass
class FreezePlan:
    """What a freeze will write, read from the catalog under the dataset's lock: the selected faces' records,
    the alignment jobs (one per photo, its faces' quads), the parent version and the selection's digest."""

    name: str
    resolution: int
    labels: str
    mirror_check: bool
    mirror_distance: int
    records: list[dict[str, Any]]
    ids: list[tuple[int, int]]  # (face id, image id) per record
    jobs: list[PhotoJob]
    decided: list[dt.datetime]
    parent: DatasetVersion | None
    digest: str
    class_names: list[str] | None

    @property
    def version(self) -> int:
        return self.parent.version + 1 if self.parent else 1


def plan_freeze(
    ws,
    name: str,
    resolution: int,
    labels: str,
    mirror_check: bool,
    mirror_distance: int,
    use_cache: bool = True,
) -> FreezePlan:
    """Read the accepted faces and the latest version of `name` (hold `dataset_lock` around plan -> commit)."""
    with ws.session() as s:
        rows = selected_faces(s)
        if not rows:
            raise GhostsError(
                "no accepted faces to freeze: accept faces in review first (`ghosts review`), "
                "or check that their images were not excluded by a takedown"
            )
        quads = [face_quad(f) for f, _ in rows]
        records = [face_record(f, im, q) for (f, im), q in zip(rows, quads)]
        ids = [(f.id, im.id) for f, im in rows]
        decided = [f.decided_at for f, _ in rows if f.decided_at] or [im.ingested_at for _, im in rows]
        jobs: list[PhotoJob] = []
        last_image = None
        cache = ws.root if use_cache else None
        for (f, im), q in zip(rows, quads):
            if im.id != last_image:
                path = ws.abspath(im.path)
                jobs.append(
                    PhotoJob(path, im.sha256, [], resolution, ws.settings.max_pixels, mirror_check, cache)
                )
                last_image = im.id
            jobs[-1].quads.append(q)
        parent = latest_version(s, name)
    return FreezePlan(
        name,
        resolution,
        labels,
        mirror_check,
        mirror_distance,
        records,
        ids,
        jobs,
        decided,
        parent,
        selection_digest(records, resolution, labels),
        class_names_of(records, labels),
    )


def unchanged_version(ws, plan: FreezePlan) -> FreezeResult | None:
    """The latest version, when it already holds exactly this selection with these settings (and is on disk)."""
    parent = plan.parent
    if (
        parent is None
        or parent.selection_digest != plan.digest
        or parent.superseded_reason
        or not ws.abspath(parent.path).is_file()
    ):
        return None
    with ws.session() as s:
        grandparent = s.get(DatasetVersion, parent.parent_id) if parent.parent_id else None
    return FreezeResult(
        plan.name,
        parent.version,
        ws.abspath(parent.path),
        parent.sha256,
        parent.count,
        parent.resolution,
        False,
        parent.id,
        grandparent.version if grandparent else None,
    )


def write_version_archive(
    plan: FreezePlan,
    vdir: Path,
    workers: int | None,
    progress: bool,
    caps: dict[str, float | None] | None = None,
) -> ArchiveInfo:
    """Align every planned face (worker threads, in order) into the version's zip, with its card; refuses the
    selection when the mirror check finds mirrored or duplicate faces."""
    name, version, records = plan.name, plan.version, plan.records
    hashes: list[np.ndarray] = []
    with ArchiveWriter(vdir / f"{name}-v{version}-{plan.resolution}.zip") as writer:
        with tqdm(
            total=len(records), desc=f"freeze {name} v{version}", unit="face", disable=not progress
        ) as bar:
            for faces in ordered_map(_align_photo, plan.jobs, workers=workers, chunk=1):
                for png, digest, crc, h in faces:
                    rec = records[writer.count]
                    label = plan.class_names.index(rec.get("query") or UNTAGGED) if plan.class_names else None
                    writer.add(png, rec, label, sha256=digest, crc=crc)
                    if h is not None:
                        hashes.append(h)
                bar.update(len(faces))
        if plan.mirror_check and (pairs := mirror_pairs(hashes, plan.mirror_distance)):
            raise _mirror_error(pairs, records, plan.ids)
        parent = plan.parent
        history = [f"parent: v{parent.version} (sha256 {parent.sha256[:16]}...)"] if parent else []
        date = _iso(max(plan.decided))
        return writer.finish(
            lambda w: render_card(
                card_facts(
                    w.records,
                    title=f"{name} v{version}",
                    date=date,
                    resolution=plan.resolution,
                    mode=w.mode,
                    class_names=plan.class_names,
                    history=history,
                    mirror_checked=plan.mirror_check,
                    caps=caps,
                )
            )
        )


def freeze_dataset(
    ws,
    name: str,
    *,
    resolution: int = 256,  # output side in px (power of two); FFHQ itself is 1024
    labels: str = "none",  # "none" or "source-tag" (class = the tag that found the image)
    mirror_check: bool = False,  # refuse selections holding mirrored or duplicate faces
    mirror_distance: int = MIRROR_DISTANCE,  # 256-bit pHash distance at or under which faces are the same
    workers: int | None = None,  # alignment threads; None: one per available core
    progress: bool = True,
    max_person_share: float | None = None,  # warn when one person holds more of the selection than this
    max_owner_share: float | None = None,  # ... or one account
    use_cache: bool = True,  # take crops rendered ahead (curation.datasets.crops) when they pass the checks
) -> FreezeResult:
    """Freeze the accepted faces into version N+1 of `name` (or return the latest version when it already
    holds exactly this selection with these settings): plan -> write -> commit, under the dataset's lock."""
    check_name(name)
    check_resolution(resolution)
    if labels not in LABEL_MODES:
        raise GhostsError(f"--labels must be one of {', '.join(LABEL_MODES)}, got {labels!r}")

    with dataset_lock(ws, name):
        plan = plan_freeze(ws, name, resolution, labels, mirror_check, mirror_distance, use_cache)
        warnings = share_warnings(plan.records, max_person_share, max_owner_share)
        for w in warnings:
            log.warning("freeze %s: %s", name, w)
        if (unchanged := unchanged_version(ws, plan)) is not None:
            unchanged.warnings = warnings
            return unchanged
        caps = {"max_person_share": max_person_share, "max_owner_share": max_owner_share}
        with new_version_dir(ws, name, plan.version) as vdir:
            info = write_version_archive(plan, vdir, workers, progress, caps)
            extra = (
                {"mirror_check": {"distance": mirror_distance, "hash_bits": MIRROR_HASH_SIZE**2, "pairs": 0}}
                if mirror_check
                else {}
            )
            row = commit_version(
                ws,
                name=name,
                version=plan.version,
                info=info,
                labels=labels,
                class_names=plan.class_names,
                parent=plan.parent,
                digest=plan.digest,
                items=plan.ids,
                extra=extra,
            )
    parent = plan.parent
    return FreezeResult(
        name,
        plan.version,
        ws.abspath(row.path),
        info.sha256,
        info.count,
        info.resolution,
        True,
        row.id,
        parent.version if parent else None,
        warnings=warnings,
    )


def _mirror_error(
    pairs: list[tuple[int, int, str]],
    records: list[dict[str, Any]],
    ids: list[tuple[int, int]],
    shown: int = 10,
) -> GhostsError:
    lines = [
        f"  {kind}: face {ids[i][0]} ({records[i]['image_sha256'][:12]}) and face {ids[j][0]} "
        f"({records[j]['image_sha256'][:12]})"
        for i, j, kind in pairs[:shown]
    ]
    if len(pairs) > shown:
        lines.append(f"  ... and {len(pairs) - shown} more")
    return GhostsError(
        f"mirror check: {len(pairs)} mirrored or duplicate face pair(s); reject one face of each "
        "pair in review, then freeze again:\n" + "\n".join(lines)
    )
