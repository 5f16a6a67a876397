"""dlib's models, located inside the face-recognition-models package and loaded once per thread.

Nothing is downloaded: the 68-point landmark model and the CNN face detector ship with the package. Its
`__init__` imports the removed `pkg_resources`, so the files are located without importing it.

Licences: dlib is under the Boost Software License; the 68-point model was trained on the iBUG 300-W data
set, whose terms exclude commercial use (see docs/alignment.md).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path

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
    return models[kind]


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
