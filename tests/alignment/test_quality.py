"""Quality measures: exact geometry where there is an exact answer, and the right order where there is not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from alignment.align import align_face, ffhq_quad, quad_from_points
from alignment.quality import blur_measure, measure_face, padding_fraction, quad_roll, yaw_estimate
from tests.alignment.conftest import BALD, CRUISE


def test_padding_fraction_is_the_area_outside():
    # The photo covers [-0.5, 99.5] x [-0.5, 99.5].
    inside = [[10, 10], [10, 50], [50, 50], [50, 10]]
    assert padding_fraction(inside, 100, 100) == 0.0
    half_out = [[-40.5, 10], [-40.5, 50], [39.5, 50], [39.5, 10]]
    assert padding_fraction(half_out, 100, 100) == pytest.approx(0.5)
    corner = [[-20.5, -20.5], [-20.5, 19.5], [19.5, 19.5], [19.5, -20.5]]  # a quarter of it inside
    assert padding_fraction(corner, 100, 100) == pytest.approx(0.75)
    diamond = [[49.5, -50.5], [-0.5, -0.5], [49.5, 49.5], [99.5, -0.5]]  # the top half outside
    assert padding_fraction(diamond, 100, 100) == pytest.approx(0.5)
    assert padding_fraction([[500, 500], [500, 600], [600, 600], [600, 500]], 100, 100) == 1.0


def test_roll_and_yaw_signs(photo, detections):
    rgb = photo(CRUISE)
    lm = detections(CRUISE)[0].landmarks
    quad = ffhq_quad(lm)
    assert abs(quad_roll(quad)) < 10 and abs(yaw_estimate(lm, quad)) < 15  # a frontal portrait
    # Mirrored, the roll and the yaw change sign.
    w = rgb.shape[1]
    mirrored = lm.copy()
    mirrored[:, 0] = w - 1 - mirrored[:, 0]
    mirrored = mirrored[_MIRROR]
    mq = ffhq_quad(mirrored)
    assert quad_roll(mq) == pytest.approx(-quad_roll(quad), abs=1e-6)
    assert yaw_estimate(mirrored, mq) == pytest.approx(-yaw_estimate(lm, quad), abs=1e-6)
    # Turned 90 degrees clockwise on screen, the roll is +90 more.
    q90 = quad_from_points(
        *[np.array([-p[1], p[0]]) for p in (lm[36:42].mean(0), lm[42:48].mean(0), lm[48], lm[54])]
    )
    assert quad_roll(q90) == pytest.approx(quad_roll(quad) + 90, abs=1e-6)


# iBUG 68-point indices swapped by a left-right mirror.
_MIRROR = np.array(
    list(range(16, -1, -1))
    + list(range(26, 16, -1))
    + [27, 28, 29, 30]
    + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46]
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


def test_turned_heads_have_a_larger_yaw(detections):
    """In the collage the same few people look in different directions: the yaw estimate spreads them out,
    and a face turned far enough is flagged as a profile."""
    yaws = [yaw_estimate(f.landmarks, ffhq_quad(f.landmarks)) for f in detections(BALD)]
    assert min(yaws) < -10 and max(yaws) > 10
    synthetic = detections(CRUISE)[0].landmarks.copy()
    synthetic[27:36, 0] += 120  # push the nose far to the right
    assert yaw_estimate(synthetic, ffhq_quad(detections(CRUISE)[0].landmarks)) > 30


def test_blur_measure_orders_sharpness(photo, detections):
    preview = align_face(photo(CRUISE), ffhq_quad(detections(CRUISE)[0].landmarks), 256)
    soft = cv2.GaussianBlur(preview, (0, 0), 2.0)
    assert blur_measure(preview) > 3 * blur_measure(soft)
    assert blur_measure(np.full((256, 256, 3), 128, np.uint8)) == 0.0


def test_measure_face_flags_and_score(photo, detections):
    rgb = photo(CRUISE)
    det = detections(CRUISE)[0]
    quad = ffhq_quad(det.landmarks)
    q = measure_face(rgb, quad, landmarks=det.landmarks, det_score=det.score, target_size=1024)
    assert q.quad_size == pytest.approx(np.linalg.norm(quad[3] - quad[0]))
    assert q.eye_dist == pytest.approx(
        np.linalg.norm(det.landmarks[42:48].mean(0) - det.landmarks[36:42].mean(0))
    )
    assert q.upscaled and "upscaled" in q.flags and q.flagged  # a ~700 px quad for a 1024 data set
    assert "padded" in q.flags and 0.1 < q.padding < 0.3  # the crop leaves the photo left and right
    assert 0 < q.score < 1
    assert q.upscale == pytest.approx(1024 / q.quad_size)
    small = measure_face(rgb, quad, landmarks=det.landmarks, det_score=det.score, target_size=256)
    assert not small.upscaled and small.score > q.score
    d = q.as_dict()
    assert d["flagged"] is True and set(d["factors"]) == {
        "resolution",
        "framing",
        "sharpness",
        "pose",
        "detection",
    }


def test_worse_copies_score_lower(photo, detections):
    rgb = photo(CRUISE)
    det = detections(CRUISE)[0]
    quad = ffhq_quad(det.landmarks)
    base = measure_face(rgb, quad, landmarks=det.landmarks, det_score=det.score, target_size=256)
    blurred = measure_face(
        cv2.GaussianBlur(rgb, (0, 0), 4.0),
        quad,
        landmarks=det.landmarks,
        det_score=det.score,
        target_size=256,
    )
    assert blurred.blur < base.blur and blurred.score < base.score
    assert "blurry" in blurred.flags
    # Half the photo cropped away: much more of the square is made up.
    cut = np.ascontiguousarray(rgb[:, : rgb.shape[1] // 2 + 60])
    padded = measure_face(cut, quad, landmarks=det.landmarks, det_score=det.score, target_size=256)
    assert padded.padding > base.padding + 0.2 and padded.score < base.score


def test_manual_face_from_points_only(photo, detections):
    """A face cropped by hand has four points and a quad, no landmarks: every measure but yaw."""
    lm = detections(CRUISE)[0].landmarks
    pts = {
        "eye_left": lm[36:42].mean(0),
        "eye_right": lm[42:48].mean(0),
        "mouth_left": lm[48],
        "mouth_right": lm[54],
    }
    quad = quad_from_points(*pts.values())
    q = measure_face(photo(CRUISE), quad, points=pts)
    assert q.yaw is None and q.det_score is None and q.eye_dist > 100
    assert q.factors["pose"] == 1.0 and q.factors["detection"] == 1.0 and 0 < q.score <= 1
