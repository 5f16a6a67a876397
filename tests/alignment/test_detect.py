"""Detection and landmarks on the real test photos: recall, multi-face, negatives, rolled and rescaled faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from alignment import detect
from alignment.align import align_face, ffhq_quad, quad_side
from alignment.detect import detect_faces, detection_scale, face_roll
from alignment.faces import analyze_rgb
from alignment.models import face_detector
from tests.alignment.conftest import BALD, CRUISE
from tests.alignment.recipe import psnr


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _recall(truth, boxes_of) -> int:
    found = {name: boxes_of(name) for name in truth}
    return sum(any(_iou(t["box"], b) >= 0.4 for b in found[name]) for name, ts in truth.items() for t in ts)


def test_recall_at_least_hog_with_one_upsample(truth, photo):
    """On the 43 hand-checked PASCAL faces (37-109 px), our scale choice finds at least what dlib's HOG
    detector finds on the full photo upsampled once, with no false alarm."""
    hog = face_detector("hog")

    def baseline(name):
        return [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in hog(photo(name), 1)]

    found = {name: [d.box for d in detect_faces(photo(name))] for name in truth}
    ours = _recall(truth, lambda name: found[name])
    assert ours >= _recall(truth, baseline)
    assert ours == 43
    assert sum(len(v) for v in found.values()) == 43  # nothing else


def test_detection_scale_follows_the_photo_size():
    assert detection_scale(500, 375) == pytest.approx(2.31, abs=0.01)  # small faces need enlarging
    assert detection_scale(1000, 1000) == pytest.approx(1.0)
    assert detection_scale(1080, 1350) ** 2 * 1080 * 1350 == pytest.approx(
        0.686e6, rel=0.01
    )  # Instagram size
    assert detection_scale(4000, 3000) ** 2 * 12e6 == pytest.approx(0.6e6)  # 12 MP scanned at 0.6 MP
    assert detection_scale(100, 100) == 2.5  # capped
    # No jump in the scanned size as a photo grows past a megapixel.
    below, above = (detection_scale(s, s) ** 2 * s * s for s in (999, 1001))
    assert above == pytest.approx(below, rel=0.01)


def test_landmarks_are_in_photo_coordinates_at_any_size(photo, detections):
    """A 4x enlarged photo is scanned at a quarter of its size; landmarks still land on the face, at full
    resolution."""
    base = detections(CRUISE)[0].landmarks
    big = cv2.resize(photo(CRUISE), None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)  # 2260 x 3200
    faces = detect_faces(big)
    assert len(faces) == 1
    want = (base + 0.5) * 4 - 0.5
    err = np.abs(faces[0].landmarks - want).max(axis=1)
    assert np.median(err) < 0.02 * quad_side(ffhq_quad(want))
    x0, y0, x1, y1 = faces[0].box  # the box is around the same face, in the same coordinates
    assert np.hypot(*((x0 + x1) / 2 - want[:, 0].mean(), (y0 + y1) / 2 - want[:, 1].mean())) < 0.25 * (
        x1 - x0
    )


def test_one_crop_per_face_in_a_multi_face_photo(photo, detections):
    faces = detections(BALD)
    assert len(faces) >= 20
    boxes = np.array([f.box for f in faces])
    assert all(_iou(a, b) < 0.3 for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert list(boxes[:, 0]) == sorted(boxes[:, 0])  # left to right
    crops = [align_face(photo(BALD), ffhq_quad(f.landmarks), 64) for f in faces]
    assert len(crops) == len(faces)


def test_dogs_have_no_faces(photo):
    assert detect_faces(photo("dogs.jpg")) == []
    assert analyze_rgb(photo("dogs.jpg")) == []


def _canvas(rgb, angle, scale, shift, size=1200):
    """The photo turned by `angle` degrees (counter-clockwise on screen), scaled and shifted on a larger
    plain canvas; and the affine that took it there."""
    h, w = rgb.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += shift
    out = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_CUBIC, borderValue=(90, 120, 90))
    return out, m


@pytest.mark.parametrize(("angle", "scale", "shift"), [(20, 0.6, (300, 150)), (-20, 0.6, (100, 400))])
def test_alignment_is_equivariant(photo, angle, scale, shift):
    """The same face turned 20 degrees, at 0.6x, somewhere in a larger canvas, aligns to nearly the same
    image (the face itself; the background around it differs)."""
    rgb = photo(CRUISE)
    (face,) = analyze_rgb(rgb)
    canvas, m = _canvas(rgb, angle, scale, shift)
    (moved,) = analyze_rgb(canvas)
    want = face.quad @ m[:, :2].T + m[:, 2]
    assert np.abs(moved.quad - want).max() < 0.02 * quad_side(want)
    a, b = align_face(rgb, face.quad, 256), align_face(canvas, moved.quad, 256)
    assert psnr(a[64:192, 64:192], b[64:192, 64:192]) > 28


@pytest.mark.parametrize(
    ("angle", "names"),
    [
        (30, (CRUISE, "2008_001322.jpg")),
        (-30, (CRUISE, "2008_001322.jpg")),
        (60, (CRUISE,)),
        (-60, (CRUISE,)),
    ],
)
def test_rolled_faces_are_found_and_aligned_upright(photo, angle, names):
    """Rolled +-30 degrees, every face is found and its landmarks put it upright. At 60 degrees the upright
    pass finds nothing; the rotated retry passes find the face."""
    for name in names:
        rgb = photo(name)
        upright = analyze_rgb(rgb)
        size = int(1.5 * max(rgb.shape[:2]))
        canvas, m = _canvas(rgb, angle, 1.0, ((size - rgb.shape[1]) / 2, (size - rgb.shape[0]) / 2), size)
        found = analyze_rgb(canvas)
        assert len(found) == len(upright), (name, angle)
        for f in upright:
            want = f.quad @ m[:, :2].T + m[:, 2]
            best = min(found, key=lambda g: np.abs(g.quad - want).max())
            assert np.abs(best.quad - want).max() < 0.05 * quad_side(want), (name, angle)
            assert abs(face_roll(best.landmarks) - (face_roll(f.landmarks) - angle)) < 5
            if abs(angle) == 60:
                assert best.rotation != 0  # found by a rotated pass


def test_grey_photo(photo, detections):
    grey = cv2.cvtColor(photo(CRUISE), cv2.COLOR_RGB2GRAY)
    (face,) = detect_faces(grey)
    np.testing.assert_allclose(face.landmarks, detections(CRUISE)[0].landmarks, atol=3)


def test_cnn_detector_finds_the_face(photo):
    (face,) = detect_faces(photo(CRUISE), "cnn", pixels=0.25e6)  # a small scan: the CNN is slow on a CPU
    assert face.detector == "cnn" and face.score > 0.5
    assert abs(face_roll(face.landmarks)) < 15


def test_rotated_passes_run_only_where_they_can_find_a_face(photo, monkeypatch):
    """A photo without a face is scanned once, unless the upright scan saw a candidate as large as the faces
    the rotated passes can see; a face rolled 60 degrees gives one, and is found by them."""
    scans = []
    real = detect._scan
    monkeypatch.setattr(detect, "_scan", lambda *a: scans.append(a[2].shape) or real(*a))
    y, x = np.mgrid[0:1350, 0:1080]
    plain = np.dstack([(x * 255 // 1080), (y * 255 // 1350), np.full_like(x, 128)]).astype(np.uint8)
    assert detect_faces(plain) == [] and len(scans) == 1
    scans.clear()
    assert detect_faces(plain, retry_gate=None) == [] and len(scans) == 3  # always: upright and +-30 degrees
    rgb = photo(CRUISE)
    canvas, _ = _canvas(rgb, 60, 1.0, (300, 200))
    scans.clear()
    (face,) = detect_faces(canvas)
    assert len(scans) == 3 and face.rotation != 0
