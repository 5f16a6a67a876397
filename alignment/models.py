"""dlib's models, located inside the face-recognition-models package and loaded once per thread.

Nothing is downloaded: the 68-point landmark model and the CNN face detector ship with the package. Its
`__init__` imports the removed `pkg_resources`, so the files are located without importing it.

Licences: dlib is under the Boost Software License; the 68-point model was trained on the iBUG 300-W data
set, whose terms exclude commercial use (see docs/alignment.md).
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import importlib.util
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from curation.catalog.errors import GhostsError

LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
RECOGNITION = "dlib_face_recognition_resnet_model_v1.dat"  # 128-D face descriptors (ResNet, see docs/responsible-use.md)
DETECTORS = ("hog", "cnn")

# dlib's detector and predictor objects are not safe to call from two threads at once (a shared HOG detector
# segfaults under a threaded task runner), so each thread gets its own copy.
_local = threading.local()


class ModelMissing(GhostsError):
    pass


def model_path(name: str) -> Path:
    """Path of one of face-recognition-models' files; a clear error when the package is missing."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissing(
            "the face-recognition-models package is not installed: "
            "pip install face-recognition-models (it holds dlib's landmark and CNN models)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise ModelMissing(f"dlib model {name} not found at {path}: reinstall face-recognition-models")
    return path


def _dlib():
    try:
        import dlib
    except ImportError as e:
        raise ModelMissing(f"dlib is not installed ({e}): pip install dlib-bin") from None
    return dlib


def _load(kind: str):
    models = _local.__dict__.setdefault("models", {})
    if kind not in models:
        models[kind] = _build(kind)
        if threading.current_thread() is threading.main_thread():
            _keep_at_exit()
    return models[kind]


@functools.cache
def _keep_at_exit() -> None:
    atexit.register(_leave_main_thread_models)


def _leave_main_thread_models() -> None:
    """At interpreter exit (after the other atexit handlers that were registered later), give the main
    thread's models one more reference, so that the teardown of the modules does not free them. The landmark
    model is about 100 MB in many small blocks: freeing it took about 13 ms at the end of every `ghosts align`
    (35.7 ms from the last statement to the process's end with it, 22.6 ms without), for memory the operating
    system takes back at once anyway. A model of another thread, or one dropped before exit, is freed as
    usual."""

    import ctypes  # here: needed only at exit

    for model in _local.__dict__.get("models", {}).values():
        ctypes.pythonapi.Py_IncRef(ctypes.py_object(model))


def cache_dir() -> Path:
    """Where derived copies of models are kept: $XDG_CACHE_HOME/ghosts (default ~/.cache/ghosts)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ghosts"


def _hog_detector(dlib):
    """dlib's frontal face detector. dlib builds it from a compressed text copy compiled into the library,
    which takes about 0.3 s; saved once in dlib's own binary format (same filters, same results) it loads in
    about a millisecond. The copy is keyed by dlib's version and rebuilt when unreadable; where the cache
    cannot be written the built-in copy is used."""
    path = cache_dir() / f"dlib-{dlib.__version__}-frontal-face-detector.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except RuntimeError:
            pass  # truncated or foreign: rebuilt below
    det = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        det.save(str(tmp))
        os.replace(tmp, path)
    except OSError:
        pass
    return det


def _build(kind: str):
    dlib = _dlib()
    if kind == "hog":
        return _hog_detector(dlib)
    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_path(CNN_DETECTOR)))
    if kind == "landmarks":
        return dlib.shape_predictor(str(model_path(LANDMARKS_68)))
    if kind == "recognition":
        return dlib.face_recognition_model_v1(str(model_path(RECOGNITION)))
    raise ValueError(kind)


def face_detector(kind: str = "hog"):
    """dlib's HOG frontal face detector (`hog`) or its CNN "mmod" detector (`cnn`), cached per thread."""
    if kind not in DETECTORS:
        raise GhostsError(f"unknown face detector {kind!r}: choose one of {', '.join(DETECTORS)}")
    return _load(kind)


def landmark_predictor():
    """dlib's 68-point (iBUG 300-W) shape predictor, cached per thread (loading it takes about a second)."""
    return _load("landmarks")


def face_recognizer():
    """dlib's face recognition ResNet (128-D descriptors; the same person below about 0.6), cached per thread."""
    return _load("recognition")


class ModelNotLoaded(RuntimeError):
    """Raised by the stand-in for a model this process goes without (see `logged_hog_scans`)."""


class _Absent:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __call__(self, *args, **kwargs):
        raise ModelNotLoaded(f"the {self.kind} model is not loaded in this process")


def scan_key(img: np.ndarray, upsample: int, threshold: float) -> tuple:
    """What a HOG scan's answer depends on: the image's bytes (a 128-bit BLAKE2 digest), size and type, and
    the scan's arguments. dlib's scan is deterministic, so equal keys get equal answers."""
    a = np.ascontiguousarray(img)
    digest = hashlib.blake2b(a.data, digest_size=16).digest()
    return (digest, a.shape, a.dtype.str, int(upsample), float(threshold))


class LoggedScans:
    """dlib's HOG detector whose scans are logged (`log`: key -> boxes, scores, sub-detectors) and answered
    from `known` for an image already scanned there. Everything else is the detector's own."""

    def __init__(self, detector, known: dict[tuple, Any] | None = None) -> None:
        self._detector = detector
        self.known = dict(known or {})
        self.log: dict[tuple, Any] = {}
        self.answered = 0  # scans answered from `known`

    def __getattr__(self, name: str):
        return getattr(self._detector, name)

    def run(self, img, upsample: int = 0, threshold: float = 0.0):
        key = scan_key(img, upsample, threshold)
        if key in self.known:
            dlib = _dlib()
            boxes, scores, idx = self.known[key]
            self.answered += 1
            return dlib.rectangles([dlib.rectangle(*b) for b in boxes]), list(scores), list(idx)
        rects, scores, idx = self._detector.run(img, upsample, threshold)
        self.log[key] = (
            [(r.left(), r.top(), r.right(), r.bottom()) for r in rects],
            [float(x) for x in scores],
            [int(i) for i in idx],
        )
        return rects, scores, idx


@contextlib.contextmanager
def logged_hog_scans(
    known: dict[tuple, Any] | None = None, *, landmarks: bool = True
) -> Iterator[LoggedScans]:
    """Within the block this thread's HOG detector is a `LoggedScans` (answering `known` scans from it);
    with landmarks=False the landmark predictor is a stand-in that raises ModelNotLoaded when called, so
    detection runs up to the first face without the model loaded."""
    models = _local.__dict__.setdefault("models", {})
    saved = dict(models)
    scans = LoggedScans(face_detector("hog"), known)
    models["hog"] = scans
    if not landmarks:
        models["landmarks"] = _Absent("landmarks")
    try:
        yield scans
    finally:
        models.clear()
        models.update(saved)
