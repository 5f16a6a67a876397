"""Who is who in the workspace: a descriptor for every face, and the faces grouped into people.

- `describe_faces` computes the 128-D descriptor (alignment.identity) of every live face that has none yet,
  detected or cropped by hand: from the stored photo and the landmarks analysis found, or, for a face cropped
  by hand (points, no landmarks), from its aligned crop. It is the second phase of `ghosts analyze`, after
  every face is recorded (dlib's ResNet costs ~90 ms per face, as much as finding the faces: the faces do not
  wait for it), in worker processes with its own progress bar; a batch of photos' descriptors per
  transaction, so an interrupted run loses at most one batch, and a rerun (or `ghosts people`) picks up
  what is left.
- `cluster_workspace` groups the described faces into people incrementally (`cluster_people`): faces that
  already have a person keep it, new faces join the people they are close to or become new people. Person
  ids live in the `people` table, whose rows are never deleted, so an id is never given to someone else.
  Only faces without a person are ever given one, so a reviewer's merges and splits on the review page
  (curation.catalog.people) stand through every later run.
- `identity_counts`: how many people, and the largest person's and owner's shares of some faces (the freeze
  warning and the dataset card count the same from the provenance records, `ghosts status` in the catalog).
- `faces_like_photo`: the faces of the person in a photo someone sent, for `ghosts takedown --face`.

`ghosts analyze` runs both at its end (`update_identities`); `ghosts people` runs them on their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from alignment.align import align_face
from alignment.detect import detect_faces
from alignment.identity import (
    DESCRIPTOR_DIM,
    SAME_PERSON,
    People,
    cluster_people,
    crop_descriptor,
    face_descriptors,
    faces_like,
)
from alignment.models import face_recognizer
from alignment.pool import default_workers, run_jobs
from curation.analysis.batches import store_in_batches
from curation.catalog.errors import GhostsError
from curation.catalog.imaging import ImageRejected, load_rgb
from curation.catalog.people import merged_into, resolve_person
from curation.catalog.schema import Face, Image, Person, utcnow

log = logging.getLogger(__name__)

CROP_SIZE = 256  # aligned crop side for faces cropped by hand (within ~0.1 of a photo descriptor at 128+ px)


def to_bytes(vector: np.ndarray) -> bytes:
    v = np.asarray(vector, dtype="<f4").reshape(DESCRIPTOR_DIM)
    return v.tobytes()


def from_bytes(blob: bytes) -> np.ndarray:
    v = np.frombuffer(blob, dtype="<f4")
    if v.size != DESCRIPTOR_DIM:
        raise ValueError(f"a stored descriptor has {v.size} values, expected {DESCRIPTOR_DIM}")
    return v.astype(np.float32)


@dataclass
class IdentitySummary:
    described: int = 0  # faces given a descriptor in this run
    undescribed: int = 0  # faces still without one (photo missing or unreadable: a rerun tries again)
    clustered: int = 0  # faces given a person in this run
    new_people: int = 0
    people: int = 0  # people with at least one live face, after this run
    largest_share: float = 0.0
    describe_seconds: float = 0.0  # the descriptor phase's wall time

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


# --- descriptors ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DescribeJob:
    image_id: int
    path: str  # absolute path of the stored photo
    max_pixels: int | None
    faces: tuple  # (face id, landmarks or None, box, quad or None) of each face to describe


def _init_describer() -> None:
    """Worker set-up for the descriptor phase: single-threaded OpenCV, dlib's ResNet loaded once."""
    cv2.setNumThreads(1)
    face_recognizer()


def _describe_job(job: DescribeJob) -> dict[str, Any]:
    """The descriptors of one photo's faces (face id -> bytes); never raises (a failure is reported)."""
    out: dict[str, Any] = {"image_id": job.image_id, "blobs": {}, "error": None, "faces": len(job.faces)}
    try:
        rgb = load_rgb(job.path, job.max_pixels, writable=False)  # only read: one copy fewer
        marked = [(fid, lm, box) for fid, lm, box, _ in job.faces if lm]
        if marked:
            vectors = face_descriptors(rgb, [(np.asarray(lm, float), box) for _, lm, box in marked])
            out["blobs"] |= {fid: to_bytes(v) for (fid, _, _), v in zip(marked, vectors)}
        for fid, lm, _, quad in job.faces:
            if not lm and quad:
                out["blobs"][fid] = to_bytes(crop_descriptor(align_face(rgb, quad, CROP_SIZE)))
    except (OSError, ImageRejected, ValueError) as e:  # a photo gone or unreadable: a rerun retries
        out["error"] = str(e)
    except Exception as e:
        log.exception("describing the faces of image %s failed", job.image_id)
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def _describe_jobs(ws, image_ids: Iterable[int] | None) -> list[DescribeJob]:
    q = (
        select(Face.image_id, Image.path, Face.id, Face.landmarks, Face.box, Face.quad)
        .join(Image, Image.id == Face.image_id)
        .where(Face.descriptor.is_(None), Face.deleted.is_(False), Image.path.is_not(None))
        .order_by(Face.image_id, Face.id)
    )
    with ws.session() as s:
        rows = s.execute(q).all()
    wanted = None if image_ids is None else {int(i) for i in image_ids}
    by_image: dict[int, tuple[str, list]] = {}
    for image_id, path, fid, landmarks, box, quad in rows:
        if wanted is None or image_id in wanted:
            by_image.setdefault(image_id, (path, []))[1].append((fid, landmarks, box, quad))
    return [
        DescribeJob(image_id, str(ws.abspath(path)), ws.settings.max_pixels, tuple(faces))
        for image_id, (path, faces) in by_image.items()
    ]


def describe_faces(
    ws,
    *,
    image_ids: Iterable[int] | None = None,
    progress: bool = False,
    workers: int = 1,  # worker processes (1: in this process)
    batch_size: int = 64,  # photos whose descriptors are stored per transaction ...
    batch_seconds: float = 2.0,  # ... or fewer, when this long has passed since the last one
) -> tuple[int, int]:
    """Give every live face without a descriptor one; returns (described, left without one).

    The photos are read again (the descriptor phase runs after the faces are recorded), in `workers`
    processes, with a progress bar of its own (photos, rate, time left); their descriptors are stored a batch
    of photos per transaction, so an interrupted run loses at most one batch and a rerun does what is left."""
    jobs = _describe_jobs(ws, image_ids)
    workers = min(max(int(workers), 1), max(len(jobs), 1))
    described = left = 0

    def store(batch: list[dict[str, Any]]) -> None:
        nonlocal described, left
        with ws.session() as s:
            for outcome in batch:
                if outcome["error"]:
                    log.warning(
                        "cannot describe the faces of image %s: %s", outcome["image_id"], outcome["error"]
                    )
                for fid, blob in outcome["blobs"].items():
                    # A face deleted or described meanwhile (a takedown, another run) is left as it is.
                    described += s.execute(
                        update(Face)
                        .where(Face.id == fid, Face.descriptor.is_(None), Face.deleted.is_(False))
                        .values(descriptor=blob)
                    ).rowcount
                left += outcome["faces"] - len(outcome["blobs"])

    def crashed(job: DescribeJob) -> dict[str, Any]:
        return {"image_id": job.image_id, "blobs": {}, "error": "crashed its worker", "faces": len(job.faces)}

    store_in_batches(
        run_jobs(_describe_job, jobs, workers, crashed, initializer=_init_describer),
        store,
        total=len(jobs),
        desc="describe",
        progress=progress,
        postfix=lambda: {"faces": described},
        batch_size=batch_size,
        batch_seconds=batch_seconds,
    )
    return described, left


# --- people --------------------------------------------------------------------------------------------------


def load_people(session) -> tuple[People, dict[int, np.ndarray]]:
    """The stored grouping of live faces, and every live face's descriptor (face id -> vector)."""
    rows = session.execute(
        select(Face.id, Face.person_id, Face.descriptor).where(Face.deleted.is_(False))
    ).all()
    next_id = (session.scalar(select(func.max(Person.id))) or 0) + 1
    people = People({fid: int(p) for fid, p, _ in rows if p is not None}, next_id)
    return people, {fid: from_bytes(d) for fid, _, d in rows if d is not None}


def save_people(session, people: People) -> int:
    """Store a grouping: new person rows first, then the person of every face that has none yet. Returns
    faces changed.

    Only faces without a person are written: a face that has one keeps it, whatever this grouping says, so
    a reviewer's merge or split made while the grouping was computed (the review page runs beside analysis)
    is never written over. A face put with a person merged away meanwhile goes to the person it was merged
    into (`merged_into`)."""
    merged = merged_into(session)
    wanted = {fid: resolve_person(merged, pid) for fid, pid in people.faces.items()}
    known = set(session.scalars(select(Person.id)))
    now = utcnow()
    for pid in sorted(set(wanted.values()) - known):
        session.add(Person(id=pid, created_at=now))
    session.flush()
    current = dict(session.execute(select(Face.id, Face.person_id)).all())
    changed = 0
    for fid, pid in wanted.items():
        if fid in current and current[fid] is None:
            done = session.execute(
                update(Face).where(Face.id == fid, Face.person_id.is_(None)).values(person_id=pid)
            )
            changed += done.rowcount
    return changed


def cluster_workspace(ws, *, threshold: float = SAME_PERSON) -> tuple[int, int]:
    """Give every described face without a person one; returns (faces clustered, new people). Two runs at
    once (the flows' parallel batches) may both pick the next person id: the later one starts over."""
    tries = 5
    while True:
        tries -= 1
        try:
            with ws.session() as s:
                people, descriptors = load_people(s)
                grouped = cluster_people(descriptors, people, threshold=threshold)
                clustered = save_people(s, grouped)
            return clustered, grouped.next_id - people.next_id
        except IntegrityError:
            if not tries:
                raise


def identity_counts(session, face_ids: Iterable[int] | None = None) -> dict[str, Any]:
    """People and shares among these faces (None: every live face): the number of people, the largest
    person's share of the faces that have a person, and the largest owner's share of all the faces (a face
    of an image without an owner counts as its own owner)."""
    q = select(Face.id, Face.person_id, Image.owner).join(Image, Image.id == Face.image_id)
    if face_ids is None:
        rows = session.execute(q.where(Face.deleted.is_(False))).all()
    else:
        ids = sorted({int(i) for i in face_ids})
        rows = []
        for start in range(0, len(ids), 500):
            rows += session.execute(q.where(Face.id.in_(ids[start : start + 500]))).all()
    persons: dict[int, int] = {}
    owners: dict[str, int] = {}
    for fid, pid, owner in rows:
        if pid is not None:
            persons[pid] = persons.get(pid, 0) + 1
        key = owner if owner else f"(no owner: face {fid})"
        owners[key] = owners.get(key, 0) + 1
    with_person = sum(persons.values())
    top_person = max(persons.items(), key=lambda kv: (kv[1], -kv[0]), default=(None, 0))
    top_owner = max(owners.items(), key=lambda kv: kv[1], default=(None, 0))
    return {
        "faces": len(rows),
        "with_person": with_person,
        "people": len(persons),
        "largest_person": top_person[0],
        "largest_person_faces": top_person[1],
        "largest_person_share": top_person[1] / with_person if with_person else 0.0,
        "largest_owner": top_owner[0] if top_owner[0] and not top_owner[0].startswith("(no owner") else None,
        "largest_owner_faces": top_owner[1],
        "largest_owner_share": top_owner[1] / len(rows) if rows else 0.0,
    }


def update_identities(
    ws, *, threshold: float = SAME_PERSON, progress: bool = False, workers: int | None = 1
) -> IdentitySummary:
    """Describe what is new (in `workers` processes; None: one per available core), then cluster it: the
    identity step of analysis (resumable, incremental)."""
    workers = default_workers() if workers is None else workers
    started = time.monotonic()
    described, left = describe_faces(ws, progress=progress, workers=workers)
    describe_seconds = time.monotonic() - started
    clustered, new_people = cluster_workspace(ws, threshold=threshold)
    with ws.session() as s:
        counts = identity_counts(s)
    return IdentitySummary(
        described=described,
        undescribed=left,
        clustered=clustered,
        new_people=new_people,
        people=counts["people"],
        largest_share=round(counts["largest_person_share"], 4),
        describe_seconds=round(describe_seconds, 2),
    )


# --- removal by face ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceMatch:
    face_id: int
    image_id: int
    image_sha256: str
    distance: float
    person_id: int | None
    decision: str
    others: int  # faces of other people in the same photo (a takedown removes the whole photo)


def photo_descriptor(ws, photo) -> np.ndarray:
    """The descriptor of the one face in a photo someone sent (`ghosts takedown --face`); a clear error when
    the photo shows no face or several."""
    try:
        rgb = load_rgb(photo, ws.settings.max_pixels)
    except ImageRejected as e:
        raise GhostsError(f"cannot read the face photo {photo}: {e.reason}") from None
    except OSError as e:
        raise GhostsError(f"cannot read the face photo {photo}: {e.strerror or e}") from None
    found = detect_faces(rgb, "hog")
    if not found:
        raise GhostsError(
            f"no face found in {photo}: give a photo where the person's face is clearly visible"
        )
    if len(found) > 1:
        raise GhostsError(f"{len(found)} faces found in {photo}: crop it to the one person to remove")
    return face_descriptors(rgb, found)[0]


def faces_like_photo(ws, photo, *, threshold: float = SAME_PERSON) -> list[FaceMatch]:
    """Every face in the catalog closer than `threshold` to the face in `photo`, nearest first."""
    if not 0 < threshold <= 2:
        raise GhostsError(f"the threshold must be in (0, 2], got {threshold}")
    query = photo_descriptor(ws, photo)
    with ws.session() as s:
        rows = s.execute(
            select(Face.id, Face.image_id, Face.descriptor, Face.person_id, Face.decision, Image.sha256)
            .join(Image, Image.id == Face.image_id)
            .where(Face.descriptor.is_not(None))
        ).all()
        matches = faces_like(query, {r.id: from_bytes(r.descriptor) for r in rows}, threshold=threshold)
        by_id = {r.id: r for r in rows}
        hit_images = {by_id[m.face].image_id for m in matches}
        per_image = (
            dict(
                s.execute(
                    select(Face.image_id, func.count())
                    .where(Face.image_id.in_(hit_images))
                    .group_by(Face.image_id)
                ).all()
            )
            if hit_images
            else {}
        )
    hits_per_image: dict[int, int] = {}
    for m in matches:
        hits_per_image[by_id[m.face].image_id] = hits_per_image.get(by_id[m.face].image_id, 0) + 1
    return [
        FaceMatch(
            face_id=m.face,
            image_id=by_id[m.face].image_id,
            image_sha256=by_id[m.face].sha256,
            distance=round(m.distance, 4),
            person_id=by_id[m.face].person_id,
            decision=by_id[m.face].decision,
            others=per_image[by_id[m.face].image_id] - hits_per_image[by_id[m.face].image_id],
        )
        for m in matches
    ]
