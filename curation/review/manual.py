"""The manual crop: four clicks (eye centres, mouth corners) -> the FFHQ quad -> an aligned face, saved as a
manual face.

The quad comes from `alignment.align.quad_from_points`, the same FFHQ formula the detector's landmarks go
through, so a face cropped by hand is framed exactly like a detected one, and freeze aligns it the same way.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select

from alignment.align import align_face, quad_from_points
from alignment.preview import write_preview
from alignment.quality import measure_face
from curation.catalog.errors import GhostsError
from curation.catalog.flags import thresholds_for
from curation.catalog.imaging import ImageRejected, load_rgb
from curation.catalog.schema import Face, quality_columns, utcnow
from curation.review.decisions import WRITE_LOCK
from curation.review.media import photo_file

PREVIEW_SIZE = 256  # the grid's preview size
MIN_EYE_DIST = 4.0  # pixels: closer clicks are a slip, not a face
POINT_NAMES = ("eye_left", "eye_right", "mouth_left", "mouth_right")


class ManualCropError(GhostsError):
    pass


def _photo(ws, image_id: int) -> np.ndarray:
    path = photo_file(ws, image_id)  # the photo route's store check
    try:
        return load_rgb(path, ws.settings.max_pixels)
    except ImageRejected as e:
        raise ManualCropError(f"image {image_id} cannot be decoded: {e.reason}") from None


def order_points(points: dict[str, Any]) -> tuple[dict[str, np.ndarray], bool]:
    """The four clicks named by geometry, whatever order they came in: (points by name, whether any moved).

    The eye pair and the mouth pair are the split of the four points into two pairs whose midpoints lie
    furthest apart along the photo's vertical (faces in an upright photo are rolled less than 45 degrees); the
    eyes are the upper pair. Left and right are as seen on screen, across the eyes-to-mouth direction."""
    try:
        given = [np.asarray(points[k], dtype=np.float64).reshape(2) for k in POINT_NAMES]
    except (KeyError, TypeError, ValueError):
        raise ManualCropError(f"a manual crop needs four points: {', '.join(POINT_NAMES)}") from None
    if not all(np.isfinite(p).all() for p in given):
        raise ManualCropError("point coordinates must be finite pixel positions")
    best = None
    for a, b in ((0, 1), (0, 2), (0, 3)):
        c, d = [k for k in range(4) if k not in (a, b)]
        m1, m2 = (given[a] + given[b]) / 2, (given[c] + given[d]) / 2
        pairs = ((a, b), (c, d)) if m1[1] <= m2[1] else ((c, d), (a, b))
        down = abs(m2[1] - m1[1]) - abs(m2[0] - m1[0])  # vertical, not sideways, from one pair to the other
        if best is None or down > best[0]:
            best = (down, pairs)
    (e1, e2), (q1, q2) = best[1]
    eyes_mid = (given[e1] + given[e2]) / 2
    mouth_mid = (given[q1] + given[q2]) / 2
    down = mouth_mid - eyes_mid
    right = np.array([down[1], -down[0]])  # screen right, when `down` points down the face
    el, er = sorted((e1, e2), key=lambda k: float(given[k] @ right))
    ml, mr = sorted((q1, q2), key=lambda k: float(given[k] @ right))
    ordered = dict(zip(POINT_NAMES, (given[el], given[er], given[ml], given[mr]), strict=True))
    return ordered, (el, er, ml, mr) != (0, 1, 2, 3)


def manual_quad(points: dict[str, Any], width: int, height: int) -> np.ndarray:
    """The FFHQ quad (4 x 2) from the four clicked points, after checking they make sense (ManualCropError,
    a 422, when they do not)."""
    pts, _ = order_points(points)
    for k, p in pts.items():
        if not (0 <= p[0] <= width and 0 <= p[1] <= height):
            raise ManualCropError(f"{k} {p.round(1).tolist()} lies outside the {width}x{height} photo")
    eye_dist = float(np.linalg.norm(pts["eye_right"] - pts["eye_left"]))
    if eye_dist < MIN_EYE_DIST:
        raise ManualCropError("the two eye points are almost the same: click the centre of each eye")
    mouth = (pts["mouth_left"] + pts["mouth_right"]) / 2
    ev = (pts["eye_right"] - pts["eye_left"]) / eye_dist
    offset = mouth - pts["eye_left"]
    if abs(float(ev[0] * offset[1] - ev[1] * offset[0])) < 0.2 * eye_dist:
        raise ManualCropError(
            "the four points lie (almost) on one line: click both eye centres, then both "
            "mouth corners below them"
        )
    quad = np.asarray(
        quad_from_points(pts["eye_left"], pts["eye_right"], pts["mouth_left"], pts["mouth_right"]),
        dtype=np.float64,
    )
    if quad.shape != (4, 2) or not np.isfinite(quad).all():
        raise ManualCropError("these points give no usable crop: click eyes first, then mouth corners")
    return quad


def _aligned(rgb: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(align_face(rgb, quad, size=size), dtype=np.uint8)


def _jpeg(a: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def loupe_jpegs(ws, face_id: int, size: int) -> tuple[bytes, bytes]:
    """For the 100% loupe: the face aligned at `size` (the dataset side) and the photo region its quad covers,
    at the photo's own pixels (JPEG bytes each)."""
    with ws.session() as s:
        face = s.get(Face, face_id)
        if face is None or face.deleted or not face.quad:
            raise ManualCropError(f"face {face_id} has no crop to show")
        image_id, quad = face.image_id, np.asarray(face.quad, dtype=np.float64)
    rgb = _photo(ws, image_id)
    x0, y0 = np.floor(quad.min(0)).astype(int)
    x1, y1 = np.ceil(quad.max(0)).astype(int)
    h, w = rgb.shape[:2]
    region = rgb[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)]
    if region.size == 0:
        raise ManualCropError(f"face {face_id} lies outside its photo")
    return _jpeg(_aligned(rgb, quad, size), 92), _jpeg(np.ascontiguousarray(region), 92)


def manual_preview_jpeg(ws, image_id: int, points: dict[str, Any]) -> tuple[bytes, list[list[float]], bool]:
    """The aligned preview (JPEG bytes), the quad the points would give, and whether the points were renamed
    by geometry (clicked in another order); nothing is saved."""
    rgb = _photo(ws, image_id)
    quad = manual_quad(points, rgb.shape[1], rgb.shape[0])
    return _jpeg(_aligned(rgb, quad, PREVIEW_SIZE)), quad.round(2).tolist(), order_points(points)[1]


def add_manual_face(ws, image_id: int, points: dict[str, Any], reviewer: str) -> Face:
    """Save a face cropped by hand (detector 'manual', `manual` true, the points and quad kept), with its
    preview and the same quality measures and flags as a detected face; it starts undecided like any candidate."""
    rgb = _photo(ws, image_id)
    quad = manual_quad(points, rgb.shape[1], rgb.shape[0])
    aligned = _aligned(rgb, quad, PREVIEW_SIZE)
    pts = {k: [float(v) for v in p] for k, p in order_points(points)[0].items()}
    with ws.session() as s:
        target_size = thresholds_for(s).target_size  # the workspace's dataset side, as for detected faces
    quality = measure_face(rgb, quad, points=pts, preview=aligned, target_size=target_size).as_dict()
    xs, ys = quad[:, 0], quad[:, 1]
    with WRITE_LOCK, ws.session() as s:  # two saves at once never get the same index
        index = (s.scalar(select(func.max(Face.index)).where(Face.image_id == image_id)) or 0) + 1
        face = Face(
            image_id=image_id,
            index=index,
            detector="manual",
            manual=True,
            points=pts,
            quad=quad.tolist(),
            box=[
                float(max(xs.min(), 0)),
                float(max(ys.min(), 0)),
                float(min(xs.max(), rgb.shape[1])),
                float(min(ys.max(), rgb.shape[0])),
            ],
            **quality_columns(quality),
            reviewer=reviewer,
            created_at=utcnow(),
            quality=quality | {"source": "manual crop", "points_by": reviewer},
        )
        s.add(face)
        s.flush()
        face.preview_path = write_preview(ws, f"manual/{face.id}", rgb, quad, aligned=aligned)
    return face
