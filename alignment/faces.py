"""Every face of one photo: detected, landmarked, framed (the FFHQ quad), measured and previewed.

`analyze_rgb` is the pure per-photo step (an array in, dataclasses out); curation.analysis runs it over the
workspace and stores what it finds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignment.align import align_face, ffhq_quad
from alignment.detect import detect_faces
from alignment.quality import PREVIEW_SIZE, Quality, measure_face


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
        return {
            "index": self.index,
            "box": self.box,
            "landmarks": self.landmarks,
            "detector": self.detector,
            "det_score": self.det_score,
            "quad": self.quad.tolist(),
            "rotation": self.rotation,
            "quality": self.quality.as_dict(),
        }


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
        quality = measure_face(
            rgb, quad, landmarks=det.landmarks, det_score=det.score, preview=preview, target_size=target_size
        )
        out.append(
            FaceResult(
                index=k,
                box=[round(float(v), 2) for v in det.box],
                landmarks=np.round(det.landmarks, 2).tolist(),
                detector=det.detector,
                det_score=float(det.score),
                quad=quad,
                rotation=float(det.rotation),
                quality=quality,
                preview=preview if keep_previews else None,
            )
        )
    return out
