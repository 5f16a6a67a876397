"""The projection target: a photo -> a square picture at the generator's resolution.

With alignment (the default) the largest face is found and cropped with the same FFHQ alignment the training
set went through, so the projector looks for a face framed the way the network knows faces. Without it the
photo is centre-cropped to a square and resized, for pictures that are already aligned.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from curation.catalog.errors import GhostsError
from curation.catalog.imaging import load_rgb
from training.errors import TrainingError


def center_crop_resize(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    pic = Image.fromarray(rgb[top : top + s, left : left + s])
    if s != size:
        pic = pic.resize((size, size), Image.LANCZOS)
    return np.asarray(pic, dtype=np.uint8).copy()


def align_largest_face(rgb: np.ndarray, size: int, name: str) -> np.ndarray:
    """FFHQ-align the largest face in the photo to size x size, exactly as the training set was aligned."""
    from alignment.align import align_face, ffhq_quad, quad_side
    from alignment.detect import detect_faces

    quads = [ffhq_quad(face.landmarks) for face in detect_faces(rgb)]
    if not quads:
        raise TrainingError(f"no face found in {name}; use --no-align for an already aligned image")
    return align_face(rgb, max(quads, key=quad_side), size=size)


def load_target(path: Path | str, resolution: int, *, align: bool = True) -> np.ndarray:
    """The photo at `path` as a resolution x resolution x 3 uint8 target."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"target photo not found: {path}")
    try:
        rgb = load_rgb(path)
    except GhostsError as e:
        raise TrainingError(f"cannot read target photo {path}: {e}") from e
    if align:
        return align_largest_face(rgb, resolution, path.name)
    return center_crop_resize(rgb, resolution)
