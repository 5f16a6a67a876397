"""How good is a face for the dataset: size, framing, sharpness, pose, and one score that sorts them.

Every measure works from the crop quad (so a face cropped by hand is measured the same way); landmarks, when
there are any, add the eye distance and a yaw estimate. docs/alignment.md explains each measure.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from alignment.align import align_face, quad_side

# Where a measure becomes a flag, and the default dataset side (one definition, shared with the review and
# `ghosts status`, which recompute flags in SQL under the workspace's target size): re-exported.
from curation.catalog.thresholds import (  # noqa: F401
    BLUR_FLAG,
    DEFAULT_TARGET_SIZE,
    PADDING_FLAG,
    TARGET_SIZE_SETTING,
    YAW_FLAG,
)

PREVIEW_SIZE = 256  # the review page's preview size; the blur measure is taken on it
# The one flag vocabulary: what the analysis writes, the review filters by and the docs explain.
FLAGS = ("upscaled", "padded", "blurry", "profile")


@dataclass
class Quality:
    quad_size: float  # side of the crop square in source pixels
    eye_dist: float | None  # distance between the eye centres in source pixels (None: not known)
    padding: float  # fraction of the crop square outside the photo (made up by reflection and blur)
    blur: float  # variance of the Laplacian over the centre of the grey 256-px preview (higher: sharper)
    roll: float  # in-plane rotation of the face in the photo, degrees (positive: clockwise on screen)
    yaw: float | None  # rough left-right turn of the head from the landmarks, degrees (None: no landmarks)
    upscale: float  # target size / quad size: how much the face is enlarged at the target size
    upscaled: bool  # the crop square is smaller than the target size
    target_size: int  # output size the size measures refer to
    det_score: float | None  # detector confidence (None: cropped by hand)
    factors: dict[str, float] = field(default_factory=dict)  # the parts of the score
    flags: list[str] = field(default_factory=list)  # reasons to look twice
    score: float = 0.0  # combined quality, 0..1, higher is better

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flagged"] = self.flagged
        return d


def padding_fraction(quad, width: int, height: int) -> float:
    """Fraction of the quad's area outside a width x height photo (which covers [-0.5, width - 0.5] with pixel
    centres at integers)."""
    poly = [tuple(p) for p in np.asarray(quad, dtype=np.float64).reshape(4, 2)]
    area = _area(poly)
    if area <= 0:
        return 1.0
    lo_x, lo_y, hi_x, hi_y = -0.5, -0.5, width - 0.5, height - 0.5
    # Sutherland-Hodgman: clip the quad by each edge of the photo in turn.
    for inside, cut in (
        (lambda p: p[0] >= lo_x, lambda a, b: _cut_x(a, b, lo_x)),
        (lambda p: p[0] <= hi_x, lambda a, b: _cut_x(a, b, hi_x)),
        (lambda p: p[1] >= lo_y, lambda a, b: _cut_y(a, b, lo_y)),
        (lambda p: p[1] <= hi_y, lambda a, b: _cut_y(a, b, hi_y)),
    ):
        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cut(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cut(prev, cur))
        poly = out
        if not poly:
            return 1.0
    return float(min(max(1.0 - _area(poly) / area, 0.0), 1.0))


def _area(poly) -> float:
    return 0.5 * abs(sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(poly, poly[1:] + poly[:1])))


def _cut_x(a, b, x):
    t = (x - a[0]) / (b[0] - a[0])
    return (x, a[1] + t * (b[1] - a[1]))


def _cut_y(a, b, y):
    t = (y - a[1]) / (b[1] - a[1])
    return (a[0] + t * (b[0] - a[0]), y)


def blur_measure(preview: np.ndarray, *, centre: float = 0.5) -> float:
    """Variance of the Laplacian of the grey preview's central region (`centre` of its side: the face, not the
    background, which may be out of focus on purpose). Compare values only between previews of one size."""
    g = cv2.cvtColor(np.asarray(preview, dtype=np.uint8), cv2.COLOR_RGB2GRAY)
    n = g.shape[0]
    a = round(n * (1 - centre) / 2)
    return float(cv2.Laplacian(g[a : n - a, a : n - a], cv2.CV_64F).var())


def quad_roll(quad) -> float:
    """The face's in-plane rotation in degrees, from the quad's horizontal axis (it follows the eyes,
    corrected by the eye-to-mouth direction). Positive: turned clockwise on screen."""
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    d = q[3] - q[0]
    return float(math.degrees(math.atan2(d[1], d[0])))


def yaw_estimate(landmarks68, quad) -> float:
    """Rough left-right head turn in degrees from the nose tip's position between the two sides of the jaw.

    In the face's own frame (roll removed), with dl and dr the distances from the nose tip (point 30) to the
    jaw outline at cheek height (points 2 and 14), r = (dl - dr) / (dl + dr) is about sin(yaw) for a head
    whose nose tip sits about as far in front of the turning axis as the cheeks are wide. Positive: the nose
    points to the image's right. Good to 10-15 degrees; meant for sorting out profiles, not for measuring.
    """
    lm = np.asarray(landmarks68, dtype=np.float64)
    a = math.radians(quad_roll(quad))
    axis = np.array([math.cos(a), math.sin(a)])
    x = lm @ axis
    dl, dr = x[30] - x[2], x[14] - x[30]
    if dl + dr <= 0:
        return 0.0
    r = (dl - dr) / (dl + dr)
    return float(math.degrees(math.asin(min(max(r, -1.0), 1.0))))


def face_flags(
    side: float | None,
    padding: float | None,
    blur: float | None,
    yaw: float | None,
    *,
    target_size: int = DEFAULT_TARGET_SIZE,
    blur_flag: float = BLUR_FLAG,
    padding_flag: float = PADDING_FLAG,
    yaw_flag: float = YAW_FLAG,
) -> list[str]:
    """The flags (names from FLAGS) of a face with these measures; unknown measures raise no flag. Roll is
    no flaw (alignment undoes it)."""
    flags = []
    if side is not None and side < target_size:
        flags.append("upscaled")
    if padding is not None and padding > padding_flag:
        flags.append("padded")
    if blur is not None and blur < blur_flag:
        flags.append("blurry")
    if yaw is not None and abs(yaw) > yaw_flag:
        flags.append("profile")
    return flags


def measure_face(
    rgb: np.ndarray,
    quad,
    *,
    landmarks=None,  # 68 x 2, when the face was detected
    points: dict[str, Any] | None = None,  # eye_left / eye_right / ..., when it was cropped by hand
    det_score: float | None = None,
    preview: np.ndarray | None = None,  # the PREVIEW_SIZE aligned face, when already made
    target_size: int = DEFAULT_TARGET_SIZE,  # the dataset's output size: smaller crops are enlarged, and flagged
    blur_half: float = 50.0,  # blur value at which the sharpness factor is 0.5
    blur_flag: float = BLUR_FLAG,
    padding_flag: float = PADDING_FLAG,
    yaw_flag: float = YAW_FLAG,
) -> Quality:
    """All quality measures of one face, its flags and its combined score."""
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    h, w = rgb.shape[:2]
    side = quad_side(q)
    if preview is None:
        preview = align_face(rgb, q, PREVIEW_SIZE)
    eye_dist = None
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        eye_dist = float(np.linalg.norm(lm[42:48].mean(axis=0) - lm[36:42].mean(axis=0)))
    elif points is not None:
        eye_dist = float(np.linalg.norm(np.subtract(points["eye_right"], points["eye_left"])))
    blur = blur_measure(preview)
    pad = padding_fraction(q, w, h)
    yaw = yaw_estimate(landmarks, q) if landmarks is not None else None
    upscale = target_size / side if side > 0 else math.inf

    factors = {
        "resolution": min(1.0, side / target_size) ** 0.5,  # 2x enlarged: 0.71, 4x: 0.5
        "framing": (1.0 - pad) ** 2,  # 10% made up: 0.81
        "sharpness": blur / (blur + blur_half),
        "pose": math.cos(math.radians(min(abs(yaw), 90.0))) if yaw is not None else 1.0,
        # HOG margins run from 0 (just found) to about 3: 0.5 at 0, 0.89 at 1.
        "detection": 0.5 + 0.5 * (1.0 - math.exp(-1.5 * max(det_score, 0.0)))
        if det_score is not None
        else 1.0,
    }
    score = float(np.prod(list(factors.values())))
    flags = face_flags(
        side,
        pad,
        blur,
        yaw,
        target_size=target_size,
        blur_flag=blur_flag,
        padding_flag=padding_flag,
        yaw_flag=yaw_flag,
    )
    return Quality(
        quad_size=side,
        eye_dist=eye_dist,
        padding=pad,
        blur=blur,
        roll=quad_roll(q),
        yaw=yaw,
        upscale=upscale,
        upscaled=side < target_size,
        target_size=int(target_size),
        det_score=det_score,
        factors={k: round(v, 4) for k, v in factors.items()},
        flags=flags,
        score=score,
    )
