"""Analysis over the workspace: every image still `new` goes through alignment's per-photo step, in worker
processes, resumable, one bad image never stopping the batch.

`analyze_workspace` runs `alignment.faces.analyze_rgb` over every image still `new` (worker processes, a
progress bar with the rate and the time left) and records, per image, its faces and its new status:
`analyzed`, `no_face`, or `error` with the reason. Then, unless turned off, a second phase with its own
progress bar describes the new faces (dlib's ResNet, as costly per face as finding them) and groups them into
people (`update_identities`); the faces never wait for their descriptors. Workers write previews with
temp + rename and no fsync; the parent makes each batch of them durable with one sync of the file system, then records the batch in one
transaction, so the catalog never names a preview a crash could lose (and an image a crash caught before its
batch was recorded is still `new`: the rerun does it again). A rerun picks up exactly what is left, and retries the images in
`error` whose cause may have passed (a store file missing for a moment, a preview that could not be written,
a worker that crashed); `retry_errors` retries every image in `error`, undecodable ones included.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select, update

from alignment.faces import analyze_rgb
from alignment.models import DETECTORS, face_detector, landmark_predictor
from alignment.pool import default_workers, run_jobs
from alignment.preview import save_preview, sync_previews
from alignment.quality import DEFAULT_TARGET_SIZE, TARGET_SIZE_SETTING
from curation.analysis.batches import store_in_batches
from curation.analysis.identities import update_identities
from curation.catalog.errors import GhostsError
from curation.catalog.imaging import ImageRejected, load_rgb
from curation.catalog.schema import Face, Image, get_setting, set_setting, utcnow

log = logging.getLogger(__name__)

# Reasons of an `error` whose cause can pass: a rerun tries these images again by itself.
MISSING = "file missing from the image store"
CRASHED = "analysis crashed its worker process"
FILE_FAULT = "cannot read or write a file"
TRANSIENT = (MISSING, CRASHED, FILE_FAULT)


# --- one image, in a worker ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    image_id: int
    path: str  # absolute path of the stored photo
    sha256: str
    root: str  # workspace root (previews are written there)
    tmp_dir: str
    max_pixels: int | None
    detector: str
    target_size: int


def _run_job(job: Job) -> dict[str, Any]:
    """Analyse one stored photo and write its previews; never raises (failures come back as status error)."""
    out: dict[str, Any] = {"image_id": job.image_id, "faces": [], "reason": None}
    try:
        if not Path(job.path).is_file():
            return out | {"status": "error", "reason": f"{MISSING} ({job.path}); a rerun tries it again"}
        try:
            rgb = load_rgb(job.path, job.max_pixels, writable=False)  # only read: one copy fewer
        except ImageRejected as e:
            return out | {"status": "error", "reason": f"cannot decode: {e.reason}"}
        faces = analyze_rgb(rgb, job.detector, target_size=job.target_size)
        rows = []
        for f in faces:
            key = f"faces/{job.sha256[:2]}/{job.sha256}_{f.index:02d}"
            rel = save_preview(Path(job.root), Path(job.tmp_dir), key, f.preview, durable=False)
            rows.append(f.as_dict() | {"preview_path": rel})
        return out | {"status": "analyzed" if rows else "no_face", "faces": rows}
    except GhostsError as e:
        return out | {"status": "error", "reason": str(e)}
    except OSError as e:  # a read-only previews/, a full disk, a file gone mid-read: may pass
        return out | {
            "status": "error",
            "reason": f"{FILE_FAULT}: {e.strerror or e}"
            + (f": {e.filename}" if e.filename else "")
            + "; a rerun tries it again",
        }
    except Exception as e:
        log.exception("analysis of image %s failed", job.image_id)
        return out | {"status": "error", "reason": f"analysis failed: {type(e).__name__}: {e}"}


# --- the catalog -----------------------------------------------------------------------------------------------------


@dataclass
class AnalyzeSummary:
    images: int = 0  # images analysed in this run
    analyzed: int = 0  # ... with at least one face
    no_face: int = 0
    error: int = 0
    faces: int = 0
    flagged: int = 0
    skipped: int = 0  # already analysed by someone else meanwhile
    retried: int = 0  # images in `error` tried again
    errors: list[dict[str, Any]] = field(default_factory=list)  # image id and reason, the first 100
    seconds: float = 0.0
    faces_seconds: float = 0.0  # the first phase (faces found and recorded); then the descriptors, if asked
    identities: dict[str, Any] | None = None  # the identity step's IdentitySummary; None when turned off

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def add(self, outcome: dict[str, Any], recorded: bool) -> None:
        if not recorded:
            self.skipped += 1
            return
        self.images += 1
        status = outcome["status"]
        setattr(self, status, getattr(self, status) + 1)
        self.faces += len(outcome["faces"])
        self.flagged += sum(1 for f in outcome["faces"] if f["quality"]["flagged"])
        if status == "error" and len(self.errors) < 100:
            self.errors.append({"image_id": outcome["image_id"], "reason": outcome["reason"]})


def record_outcome(ws, outcome: dict[str, Any]) -> bool:
    """Store one image's analysis: its faces and its status, in one transaction. False when the image was no
    longer `new` (another run got there first), in which case nothing is written."""
    return record_outcomes(ws, [outcome])[0]


def record_outcomes(ws, outcomes: list[dict[str, Any]]) -> list[bool]:
    """Store several images' analyses in one transaction (each as `record_outcome` would); its previews must
    already be durable (`sync_previews`)."""
    with ws.session() as s:
        return [_record(s, outcome) for outcome in outcomes]


def _record(s, outcome: dict[str, Any]) -> bool:
    now = utcnow()
    claimed = s.execute(
        update(Image)
        .where(Image.id == outcome["image_id"], Image.status == "new")
        .values(status=outcome["status"], analyzed_at=now, reject_reason=outcome["reason"])
    ).rowcount
    if not claimed:
        return False
    start = s.scalar(select(func.max(Face.index)).where(Face.image_id == outcome["image_id"]))
    start = 0 if start is None else start + 1  # after any face cropped by hand before the analysis
    for f in outcome["faces"]:
        q = f["quality"]
        s.add(
            Face(
                image_id=outcome["image_id"],
                index=start + f["index"],
                detector=f["detector"],
                det_score=f["det_score"],
                box=f["box"],
                landmarks=f["landmarks"],
                quad=f["quad"],
                manual=False,
                eye_dist=q["eye_dist"],
                quad_size=q["quad_size"],
                padding=q["padding"],
                blur=q["blur"],
                roll=q["roll"],
                yaw=q["yaw"],
                upscaled=q["upscaled"],
                flagged=q["flagged"],
                score=q["score"],
                quality=q | {"rotation": f["rotation"]},
                preview_path=f["preview_path"],
                created_at=now,
            )
        )
    return True


def requeue_errors(ws, image_ids: Iterable[int] | None = None, *, every: bool = False) -> int:
    """Put images in `error` back to `new` so this run analyses them again: those whose cause may have
    passed, or (`every`) all of them. Their reason is kept until the new outcome replaces it."""
    cond = Image.status == "error"
    if not every:
        cond = cond & or_(*(Image.reject_reason.startswith(t) for t in TRANSIENT))
    ids = None if image_ids is None else sorted({int(i) for i in image_ids})
    n = 0
    with ws.session() as s:
        if ids is None:
            n = s.execute(update(Image).where(cond, Image.path.is_not(None)).values(status="new")).rowcount
        else:
            for start in range(0, len(ids), 500):
                n += s.execute(
                    update(Image)
                    .where(cond, Image.path.is_not(None), Image.id.in_(ids[start : start + 500]))
                    .values(status="new")
                ).rowcount
    return n


def _jobs(ws, image_ids: Iterable[int] | None, detector: str, target_size: int) -> list[Job]:
    q = select(Image.id, Image.path, Image.sha256).where(Image.status == "new", Image.path.is_not(None))
    ids = None if image_ids is None else sorted({int(i) for i in image_ids})
    rows = []
    with ws.session() as s:
        if ids is None:
            rows = s.execute(q.order_by(Image.id)).all()
        else:
            for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                rows += s.execute(q.where(Image.id.in_(ids[start : start + 500])).order_by(Image.id)).all()
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    return [
        Job(
            image_id=i,
            path=str(ws.abspath(p)),
            sha256=h,
            root=str(ws.root),
            tmp_dir=str(ws.tmp_dir),
            max_pixels=ws.settings.max_pixels,
            detector=detector,
            target_size=target_size,
        )
        for i, p, h in rows
    ]


def workspace_target_size(ws, target_size: int | None = None) -> int:
    """The dataset side the flags refer to: `target_size` when given (and then kept as the workspace setting,
    so the review page and later runs follow it), else the workspace setting, else DEFAULT_TARGET_SIZE."""
    with ws.session() as s:
        if target_size is not None:
            _check_size(target_size)
            set_setting(s, TARGET_SIZE_SETTING, int(target_size))
            return int(target_size)
        size = get_setting(s, TARGET_SIZE_SETTING, DEFAULT_TARGET_SIZE)
    return int(size) if isinstance(size, int) and 8 <= size <= 8192 else DEFAULT_TARGET_SIZE


def _check_size(target_size: int) -> None:
    if not 8 <= int(target_size) <= 8192:
        raise GhostsError(f"target size {target_size} is out of range (8..8192)")


def _check(detector: str, target_size: int) -> None:
    if detector not in DETECTORS:
        raise GhostsError(f"unknown face detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    _check_size(target_size)
    face_detector(detector)  # a missing model is one clear error up front, not one per image
    landmark_predictor()


def _crashed(job: Job) -> dict[str, Any]:
    return {
        "image_id": job.image_id,
        "status": "error",
        "faces": [],
        "reason": f"{CRASHED} (out of memory?); a rerun tries it again",
    }


def analyze_workspace(
    ws,
    *,
    workers: int | None = None,  # worker processes; None: one per available core; 1: in this process
    detector: str = "hog",
    target_size: int
    | None = None,  # dataset side (smaller crops are flagged upscaled); None: workspace setting
    progress: bool = True,
    image_ids: Iterable[int] | None = None,  # only these (those still `new`); None: every `new` image
    retry_errors: bool = False,  # retry every image in `error` (by default only those whose cause may pass)
    identities: bool = True,  # then (a second phase) describe the new faces and group them into people
    # (curation.analysis.identities.update_identities)
    batch_size: int = 64,  # outcomes recorded per transaction (after one sync of their previews) ...
    batch_seconds: float = 2.0,  # ... or fewer, when this long has passed since the last batch
) -> AnalyzeSummary:
    """Detect, landmark, align, measure and preview the faces of every image not analysed yet.

    A given `target_size` becomes the workspace setting (see `workspace_target_size`)."""
    target_size = workspace_target_size(ws, target_size)
    _check(detector, target_size)
    started = time.monotonic()
    image_ids = None if image_ids is None else list(image_ids)
    retried = requeue_errors(ws, image_ids, every=retry_errors)
    # The faces first, without descriptors: they are recorded (and on the review page) at the rate of
    # detection; the descriptors are a second phase below.
    jobs = _jobs(ws, image_ids, detector, target_size)
    workers = default_workers() if workers is None else max(int(workers), 1)
    workers = min(workers, max(len(jobs), 1))
    summary = AnalyzeSummary(retried=retried)

    def store(batch: list[dict[str, Any]]) -> None:
        # Previews first (one sync for the batch), then the catalog rows naming them.
        sync_previews(ws.root, [f["preview_path"] for o in batch for f in o["faces"]])
        for outcome, recorded in zip(batch, record_outcomes(ws, batch)):
            summary.add(outcome, recorded)

    store_in_batches(
        run_jobs(_run_job, jobs, workers, _crashed),
        store,
        total=len(jobs),
        desc="analyze",
        progress=progress,
        postfix=lambda: {"faces": summary.faces, "errors": summary.error},
        batch_size=batch_size,
        batch_seconds=batch_seconds,
    )
    summary.faces_seconds = round(time.monotonic() - started, 2)
    if identities:
        summary.identities = update_identities(ws, progress=progress, workers=workers).as_dict()
    summary.seconds = round(time.monotonic() - started, 2)
    return summary


def analyze_images(
    ws,
    image_ids: Iterable[int],
    detector: str = "hog",
    *,
    target_size: int | None = None,  # None: the workspace setting
    progress: bool = False,
    identities: bool = True,  # False: the faces are grouped into people later, once for all the batches
) -> dict[str, Any]:
    """Analyse a batch of images in this process (the flows' task unit; they fan batches out themselves)."""
    return analyze_workspace(
        ws,
        workers=1,
        detector=detector,
        target_size=target_size,
        progress=progress,
        image_ids=list(image_ids),
        identities=identities,
    ).as_dict()
