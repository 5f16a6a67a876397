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
from curation.catalog.imaging import ImageRejected, load_rgb
from curation.catalog.schema import Face, Image, utcnow
from curation.review.media import NotFound

PREVIEW_SIZE = 256  # the grid's preview size
MIN_EYE_DIST = 4.0  # pixels: closer clicks are a slip, not a face
POINT_NAMES = ("eye_left", "eye_right", "mouth_left", "mouth_right")


class ManualCropError(GhostsError):
    pass


def _photo(ws, image_id: int) -> tuple[np.ndarray, Image]:
    with ws.session() as s:
        img = s.get(Image, image_id)
    if img is None or not img.path or img.status == "excluded":
        raise NotFound(f"image {image_id} is not in the store")
    try:
        return load_rgb(ws.abspath(img.path), ws.settings.max_pixels), img
    except ImageRejected as e:
        raise ManualCropError(f"image {image_id} cannot be decoded: {e.reason}") from None


def manual_quad(points: dict[str, Any], width: int, height: int) -> np.ndarray:
    """The FFHQ quad (4 x 2) from the four clicked points, after checking they make sense."""
    try:
        pts = {k: np.asarray(points[k], dtype=np.float64).reshape(2) for k in POINT_NAMES}
    except (KeyError, TypeError, ValueError):
        raise ManualCropError(f"a manual crop needs four points: {', '.join(POINT_NAMES)}") from None
    for k, p in pts.items():
        if not np.isfinite(p).all() or not (0 <= p[0] <= width and 0 <= p[1] <= height):
            raise ManualCropError(f"{k} {p.tolist()} lies outside the {width}x{height} photo")
    if np.linalg.norm(pts["eye_right"] - pts["eye_left"]) < MIN_EYE_DIST:
        raise ManualCropError("the two eye points are almost the same: click the centre of each eye")
    quad = np.asarray(quad_from_points(pts["eye_left"], pts["eye_right"], pts["mouth_left"], pts["mouth_right"]),
                      dtype=np.float64)
    if quad.shape != (4, 2) or not np.isfinite(quad).all():
        raise ManualCropError("these points give no usable crop: click eyes first, then mouth corners")
    return quad


def _aligned(rgb: np.ndarray, quad: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(align_face(rgb, quad, size=size), dtype=np.uint8)


def _jpeg(a: np.ndarray, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def manual_preview_jpeg(ws, image_id: int, points: dict[str, Any]) -> tuple[bytes, list[list[float]]]:
    """The aligned preview (JPEG bytes) and quad the points would give; nothing is saved."""
    rgb, _ = _photo(ws, image_id)
    quad = manual_quad(points, rgb.shape[1], rgb.shape[0])
    return _jpeg(_aligned(rgb, quad, PREVIEW_SIZE)), quad.round(2).tolist()


def add_manual_face(ws, image_id: int, points: dict[str, Any], reviewer: str) -> Face:
    """Save a face cropped by hand (detector 'manual', `manual` true, the points and quad kept), with its
    preview and the same quality measures and flags as a detected face; it starts undecided like any candidate."""
    rgb, _ = _photo(ws, image_id)
    quad = manual_quad(points, rgb.shape[1], rgb.shape[0])
    aligned = _aligned(rgb, quad, PREVIEW_SIZE)
    pts = {k: [float(v) for v in np.asarray(points[k], dtype=np.float64).reshape(2)] for k in POINT_NAMES}
    q = measure_face(rgb, quad, points=pts, preview=aligned)
    xs, ys = quad[:, 0], quad[:, 1]
    with ws.session() as s:
        index = (s.scalar(select(func.max(Face.index)).where(Face.image_id == image_id)) or 0) + 1
        face = Face(
            image_id=image_id, index=index, detector="manual", manual=True, points=pts, quad=quad.tolist(),
            box=[float(max(xs.min(), 0)), float(max(ys.min(), 0)), float(min(xs.max(), rgb.shape[1])),
                 float(min(ys.max(), rgb.shape[0]))],
            eye_dist=q.eye_dist, quad_size=q.quad_size, padding=q.padding, blur=q.blur, roll=q.roll, yaw=q.yaw,
            upscaled=q.upscaled, flagged=q.flagged, score=q.score, reviewer=reviewer, created_at=utcnow(),
            quality=q.as_dict() | {"source": "manual crop", "points_by": reviewer},
        )
        s.add(face)
        s.flush()
        face.preview_path = write_preview(ws, f"manual/{face.id}", rgb, quad, aligned=aligned)
    return face
