"""Analysis: every face of a photo detected, landmarked, framed, measured and previewed; and the same over
the catalog, in parallel, resumable, one bad image never stopping the batch.

`analyze_rgb` is the pure per-photo step. `analyze_workspace` runs it over every image still `new` (worker
processes, a progress bar) and records, per image and in one transaction, its faces and its new status:
`analyzed`, `no_face`, or `error` with the reason. A rerun picks up exactly what is left.
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from alignment.align import align_face, ffhq_quad
from alignment.detect import detect_faces
from alignment.pool import default_workers, run_jobs
from alignment.quality import PREVIEW_SIZE, Quality, measure_face

log = logging.getLogger(__name__)

PREVIEW_QUALITY = 90  # JPEG quality of the 256-px previews


@dataclass
class FaceResult:
    index: int  # order in the photo, left to right, from 0
    box: list[float]  # [x0, y0, x1, y1] source pixels
    landmarks: list[list[float]]  # 68 x [x, y]
    detector: str
    det_score: float
    quad: np.ndarray  # (4, 2) the FFHQ crop quad
    rotation: float  # degrees the photo was turned for the detector pass that found it
    quality: Quality
    preview: np.ndarray | None = field(default=None, repr=False)  # 256-px aligned face

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "box": self.box, "landmarks": self.landmarks, "detector": self.detector,
                "det_score": self.det_score, "quad": self.quad.tolist(), "rotation": self.rotation,
                "quality": self.quality.as_dict()}


def analyze_rgb(
    rgb: np.ndarray,
    detector: str = "hog",  # "hog" (fast) or "cnn" (dlib's mmod CNN: slower, finds more)
    *,
    target_size: int = 1024,  # dataset output size the size measures refer to
    keep_previews: bool = True,  # keep the 256-px aligned face on each result
) -> list[FaceResult]:
    """Faces of one photo (H x W x 3 uint8), left to right, each with its landmarks, quad and quality."""
    out = []
    for k, det in enumerate(detect_faces(rgb, detector)):
        quad = ffhq_quad(det.landmarks)
        preview = align_face(rgb, quad, PREVIEW_SIZE)
        quality = measure_face(rgb, quad, landmarks=det.landmarks, det_score=det.score, preview=preview,
                               target_size=target_size)
        out.append(FaceResult(index=k, box=[round(float(v), 2) for v in det.box],
                              landmarks=np.round(det.landmarks, 2).tolist(), detector=det.detector,
                              det_score=float(det.score), quad=quad, rotation=float(det.rotation),
                              quality=quality, preview=preview if keep_previews else None))
    return out


# --- previews --------------------------------------------------------------------------------------------------

_KEY = re.compile(r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")


def preview_relpath(key: str | int) -> str:
    """Where the preview for `key` lives, relative to the workspace: previews/<key>.jpg."""
    key = str(key)
    if not _KEY.match(key):
        raise ValueError(f"bad preview key {key!r}: letters, digits, '_', '-' and '/' only")
    return f"previews/{key}.jpg"


def encode_jpeg(rgb: np.ndarray, quality: int = PREVIEW_QUALITY) -> bytes:
    import io

    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def _save_preview(root: Path, tmp_dir: Path, key: str | int, aligned: np.ndarray) -> str:
    from curation.catalog.store import atomic_write_bytes

    rel = preview_relpath(key)
    atomic_write_bytes(root / rel, encode_jpeg(aligned), tmp_dir=tmp_dir)
    return rel


def write_preview(ws, key: str | int, rgb: np.ndarray, quad, *, aligned: np.ndarray | None = None) -> str:
    """Write the 256-px aligned preview of a face (JPEG, atomically) under the workspace's previews/ folder and
    return its path relative to the workspace. `aligned`: the preview when already made."""
    if aligned is None:
        aligned = align_face(rgb, quad, PREVIEW_SIZE)
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    return _save_preview(ws.root, ws.tmp_dir, key, aligned)


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
    from curation.catalog.errors import GhostsError
    from curation.catalog.imaging import ImageRejected, load_rgb

    out: dict[str, Any] = {"image_id": job.image_id, "faces": [], "reason": None}
    try:
        if not Path(job.path).is_file():
            return out | {"status": "error", "reason": "file missing from the image store"}
        try:
            rgb = load_rgb(job.path, job.max_pixels)
        except ImageRejected as e:
            return out | {"status": "error", "reason": f"cannot decode: {e.reason}"}
        faces = analyze_rgb(rgb, job.detector, target_size=job.target_size)
        rows = []
        for f in faces:
            key = f"faces/{job.sha256[:2]}/{job.sha256}_{f.index:02d}"
            rel = _save_preview(Path(job.root), Path(job.tmp_dir), key, f.preview)
            rows.append(f.as_dict() | {"preview_path": rel})
        return out | {"status": "analyzed" if rows else "no_face", "faces": rows}
    except GhostsError as e:
        return out | {"status": "error", "reason": str(e)}
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
    errors: list[dict[str, Any]] = field(default_factory=list)  # image id and reason, the first 100
    seconds: float = 0.0

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
    from sqlalchemy import func, select, update

    from curation.catalog.schema import Face, Image, utcnow

    now = utcnow()
    with ws.session() as s:
        claimed = s.execute(
            update(Image).where(Image.id == outcome["image_id"], Image.status == "new")
            .values(status=outcome["status"], analyzed_at=now, reject_reason=outcome["reason"])
        ).rowcount
        if not claimed:
            return False
        start = s.scalar(select(func.max(Face.index)).where(Face.image_id == outcome["image_id"]))
        start = 0 if start is None else start + 1  # after any face cropped by hand before the analysis
        for f in outcome["faces"]:
            q = f["quality"]
            s.add(Face(
                image_id=outcome["image_id"], index=start + f["index"], detector=f["detector"],
                det_score=f["det_score"], box=f["box"], landmarks=f["landmarks"], quad=f["quad"], manual=False,
                eye_dist=q["eye_dist"], quad_size=q["quad_size"], padding=q["padding"], blur=q["blur"],
                roll=q["roll"], yaw=q["yaw"], upscaled=q["upscaled"], flagged=q["flagged"], score=q["score"],
                quality=q | {"rotation": f["rotation"]}, preview_path=f["preview_path"], created_at=now,
            ))
    return True


def _jobs(ws, image_ids: Iterable[int] | None, detector: str, target_size: int) -> list[Job]:
    from sqlalchemy import select

    from curation.catalog.schema import Image

    q = select(Image.id, Image.path, Image.sha256).where(Image.status == "new", Image.path.is_not(None))
    ids = None if image_ids is None else sorted({int(i) for i in image_ids})
    rows = []
    with ws.session() as s:
        if ids is None:
            rows = s.execute(q.order_by(Image.id)).all()
        else:
            for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
                rows += s.execute(q.where(Image.id.in_(ids[start:start + 500])).order_by(Image.id)).all()
    ws.tmp_dir.mkdir(parents=True, exist_ok=True)
    return [Job(image_id=i, path=str(ws.abspath(p)), sha256=h, root=str(ws.root), tmp_dir=str(ws.tmp_dir),
                max_pixels=ws.settings.max_pixels, detector=detector, target_size=target_size)
            for i, p, h in rows]


def _check(detector: str, target_size: int) -> None:
    from alignment.models import DETECTORS, face_detector, landmark_predictor
    from curation.catalog.errors import GhostsError

    if detector not in DETECTORS:
        raise GhostsError(f"unknown face detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    if not 8 <= int(target_size) <= 8192:
        raise GhostsError(f"target size {target_size} is out of range (8..8192)")
    face_detector(detector)  # a missing model is one clear error up front, not one per image
    landmark_predictor()


def _crashed(job: Job) -> dict[str, Any]:
    return {"image_id": job.image_id, "status": "error", "faces": [],
            "reason": "analysis crashed its worker process (out of memory?)"}


def analyze_workspace(
    ws,
    *,
    workers: int | None = None,  # worker processes; None: one per available core; 1: in this process
    detector: str = "hog",
    target_size: int = 1024,  # dataset output size: faces with smaller crops are flagged as upscaled
    progress: bool = True,
    image_ids: Iterable[int] | None = None,  # only these (those still `new`); None: every `new` image
) -> AnalyzeSummary:
    """Detect, landmark, align, measure and preview the faces of every image not analysed yet."""
    from tqdm import tqdm

    _check(detector, target_size)
    started = time.monotonic()
    jobs = _jobs(ws, image_ids, detector, target_size)
    workers = default_workers() if workers is None else max(int(workers), 1)
    workers = min(workers, max(len(jobs), 1))
    summary = AnalyzeSummary()
    outcomes = run_jobs(_run_job, jobs, workers, _crashed)
    with tqdm(total=len(jobs), unit="img", desc="analyze", disable=not progress or not jobs) as bar:
        for outcome in outcomes:
            summary.add(outcome, record_outcome(ws, outcome))
            bar.update(1)
            bar.set_postfix(faces=summary.faces, errors=summary.error, refresh=False)
    summary.seconds = round(time.monotonic() - started, 2)
    return summary


def analyze_images(ws, image_ids: Iterable[int], detector: str = "hog", *, target_size: int = 1024,
                   progress: bool = False) -> dict[str, Any]:
    """Analyse a batch of images in this process (the flows' task unit; they fan batches out themselves)."""
    return analyze_workspace(ws, workers=1, detector=detector, target_size=target_size, progress=progress,
                             image_ids=list(image_ids)).as_dict()
