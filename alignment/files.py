"""Aligning photo files without a workspace: the replacement for the well-known `align_images.py`.

Every face of every input becomes `<stem>_01.png`, `<stem>_02.png`, ... (left to right) in the output folder.
The report says, per input, which faces were written and what was skipped and why.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from alignment import png
from alignment.align import align_face, ffhq_quad
from alignment.detect import detect_faces
from alignment.models import face_detector, landmark_predictor, logged_hog_scans
from alignment.pool import (
    default_workers,
    die_with_parent,
    fork_is_safe,
    heap_frozen,
    opencv_threads_stopped,
    run_jobs,
)
from alignment.quality import measure_face
from curation.catalog.errors import GhostsError
from curation.catalog.files import folder_images
from curation.catalog.imaging import ImageRejected, load_rgb
from curation.catalog.store import TMP_PREFIX, fsync_dir

OUTPUT_SIZES = tuple(2**k for k in range(6, 11))  # 64 ... 1024


class AlignError(Exception):
    pass


def check_size(size: int) -> int:
    if int(size) not in OUTPUT_SIZES:
        raise GhostsError(
            f"output size {size} is not supported: use a power of two from 64 to 1024 "
            f"({', '.join(map(str, OUTPUT_SIZES))})"
        )
    return int(size)


def collect_inputs(paths: list[Path], recursive: bool = False) -> list[Path]:
    """The photos named by `paths`: files as given, folders' image files (sorted; with sub-folders when
    `recursive`). A path that does not exist is an error before anything is written."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += folder_images(p, recursive)[0]
        elif p.is_file():
            out.append(p)
        else:
            raise GhostsError(f"input not found: {p}")
    seen: set[Path] = set()
    unique = []
    for f in out:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    if not unique:
        raise GhostsError("no image files in " + ", ".join(map(str, paths)))
    return unique


def output_stems(inputs: list[Path]) -> list[str]:
    """`<stem>` per input, made unique (`photo`, `photo-2`, ...) when two inputs share a file stem."""
    used: dict[str, int] = {}
    stems = []
    for f in inputs:
        base = f.stem
        n = used.get(base.lower(), 0) + 1
        used[base.lower()] = n
        stems.append(base if n == 1 else f"{base}-{n}")
    return stems


@dataclass(frozen=True)
class FileJob:
    path: str
    stem: str
    out_dir: str
    size: int
    detector: str
    measure: bool = True  # quality score and flags in the report (`ghosts align` shows them only with --json)
    scans: dict | None = None  # HOG scans of this photo already run by the prescan (see Prescan)


def encode_png(rgb: np.ndarray) -> bytes:
    return png.encode_png(np.asarray(rgb, dtype=np.uint8))


def write_output(path: Path, data: bytes) -> None:
    """Write one output file atomically: a temp file beside it, renamed over it, so that no reader (and no
    interrupted run) ever sees a partial face. Not fsynced one by one: the folder is synced once at the end of
    the batch (a file-by-file fsync cost about a tenth of the whole run), and a rerun rewrites anything lost."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def align_file(job: FileJob) -> dict[str, Any]:
    """Detect and align every face of one photo into the output folder; never raises."""
    report: dict[str, Any] = {"input": job.path, "faces": [], "skipped": []}
    try:
        rgb = load_rgb(job.path, writable=False)  # only read: one copy fewer
    except ImageRejected as e:
        report["skipped"].append({"face": None, "reason": f"cannot read the image: {e.reason}"})
        return report
    except OSError as e:
        report["skipped"].append({"face": None, "reason": f"cannot read the image: {e}"})
        return report
    try:
        if job.scans:
            with logged_hog_scans(job.scans):
                faces = detect_faces(rgb, job.detector)
        else:
            faces = detect_faces(rgb, job.detector)
    except GhostsError as e:
        report["skipped"].append({"face": None, "reason": str(e)})
        return report
    except Exception as e:  # noqa: BLE001 - one bad photo must not stop the batch
        report["skipped"].append({"face": None, "reason": f"detection failed: {type(e).__name__}: {e}"})
        return report
    if not faces:
        report["skipped"].append({"face": None, "reason": "no face found"})
    for k, det in enumerate(faces, start=1):
        name = f"{job.stem}_{k:02d}.png"
        try:
            quad = ffhq_quad(det.landmarks)
            aligned = align_face(rgb, quad, job.size)
            quality = (
                measure_face(rgb, quad, landmarks=det.landmarks, det_score=det.score, target_size=job.size)
                if job.measure
                else None
            )
            write_output(Path(job.out_dir) / name, encode_png(aligned))
        except Exception as e:  # noqa: BLE001 - the other faces of the photo still get written
            report["skipped"].append({"face": k, "reason": f"{type(e).__name__}: {e}"})
            continue
        face = {
            "file": name,
            "box": [round(float(v), 1) for v in det.box],
            "quad": np.round(quad, 2).tolist(),
        }
        if quality is not None:
            face.update(score=round(quality.score, 4), flags=quality.flags)
        report["faces"].append(face)
    return report


def _prescan(jobs: list[FileJob], conn, parent_pid: int) -> None:
    """The prescan child: each photo's HOG scans up to the first face (the landmark model is not here), sent
    to the parent photo by photo."""
    die_with_parent(parent_pid)
    cv2.setNumThreads(1)
    with logged_hog_scans(landmarks=False) as scans:
        for job in jobs:
            scans.log = {}
            # ModelNotLoaded at the first face; any other failure is the worker's to report
            with contextlib.suppress(Exception):
                detect_faces(load_rgb(job.path, writable=False), job.detector)
            if scans.log:
                conn.send((job.path, scans.log))
    conn.close()


class Prescan:
    """Detection while the landmark model loads. Loading it takes about 0.4 s of one core and holds the GIL,
    and the workers are forked only after it (so that they share it); meanwhile a child forked before the load
    runs the HOG scans of `jobs` (the last photos of the schedule first), which need no landmarks until a face
    is found. `collect` ends the child and returns, per photo, the scans it finished; the worker aligning such
    a photo takes those scans' answers from the log instead of running them (same image bytes and arguments:
    the same answer, so the same faces and pixels)."""

    def __init__(self, jobs: list[FileJob]) -> None:
        ctx = multiprocessing.get_context("fork")
        self._conn, child_end = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=_prescan, args=(jobs, child_end, os.getpid()), daemon=True, name="align-prescan"
        )
        with opencv_threads_stopped(), heap_frozen():
            self._proc.start()
        child_end.close()

    def collect(self, *, finish: bool = False) -> dict[str, dict]:
        """{photo path: its logged scans}. The child is killed (what it had not sent is lost), or with
        finish=True left to scan every photo first."""
        if not finish:
            self._proc.kill()
        found: dict[str, dict] = {}
        with self._conn:
            try:
                while True:
                    path, log = self._conn.recv()
                    found[path] = log
            except (EOFError, OSError, pickle.UnpicklingError):
                pass  # the end, or a message cut short by the kill
        self._proc.join()
        return found


def _file_size(path: str) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _crashed(job: FileJob) -> dict[str, Any]:
    return {
        "input": job.path,
        "faces": [],
        "skipped": [{"face": None, "reason": "crashed its worker process"}],
    }


def align_files(
    inputs: list[Path],
    out_dir: Path,
    *,
    size: int = 1024,  # output side (a power of two, 64 to 1024)
    detector: str = "hog",
    workers: int | None = None,  # worker processes; None: one per available core; 1: in this process
    progress: bool = True,
    measure: bool = True,  # each face's quality score and flags in the report (about 1 ms per face)
) -> list[dict[str, Any]]:
    """Align every face of every input photo into `out_dir`; the per-input report, in input order."""
    size = check_size(size)
    workers = min(default_workers() if workers is None else max(int(workers), 1), max(len(inputs), 1))
    face_detector(detector)  # a missing model fails here, once, with its message
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        FileJob(path=str(p), stem=s, out_dir=str(out_dir), size=size, detector=detector, measure=measure)
        for p, s in zip(inputs, output_stems(inputs))
    ]
    order = {j.path: i for i, j in enumerate(jobs)}
    if workers > 1:
        # Largest files first, so that a big photo (a collage of 24 faces) does not start last and keep one
        # worker busy while the others wait; the report comes back in input order whatever the schedule.
        jobs.sort(key=lambda j: -_file_size(j.path))
    prescan = Prescan(jobs[::-1]) if workers > 1 and detector == "hog" and fork_is_safe() else None
    try:
        landmark_predictor()  # loaded once here: forked workers share it
    finally:
        found = prescan.collect() if prescan is not None else {}
    jobs = [dataclasses.replace(j, scans=found[j.path]) if j.path in found else j for j in jobs]
    # The workers are forked from this process, with the models already loaded (spawned workers would import
    # everything and load the 100 MB landmark model again: about 0.8 s before the first photo). The first
    # result is awaited before the progress bar exists, so that no thread of its runs when they fork.
    results = run_jobs(align_file, jobs, workers, _crashed, start="fork")
    reports: list[dict[str, Any]] = [next(results)]
    # Imported only now, for start-up cost: tqdm reads its version through importlib.metadata (about 20 ms),
    # which here runs while the workers align the first photos instead of before they start.
    from tqdm import tqdm

    with tqdm(total=len(jobs), initial=1, unit="img", desc="align", disable=not progress) as bar:
        for r in results:
            reports.append(r)
            bar.update(1)
    fsync_dir(out_dir)
    return sorted(reports, key=lambda r: order[r["input"]])
