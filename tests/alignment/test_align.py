"""FFHQ alignment: the quad formula, and align_face against the plain recipe (tests/alignment/recipe.py)."""

from __future__ import annotations

import time
import tracemalloc

import cv2
import numpy as np
import pytest

from alignment.align import align_face, ffhq_quad, quad_from_points, quad_side, recipe_geometry
from tests.alignment.conftest import BALD, CRUISE
from tests.alignment.recipe import psnr, recipe_align, recipe_quad

# --- the quad ----------------------------------------------------------------------------------------------------


def test_quad_from_points_on_an_upright_face():
    # eye_to_eye (20, 0), eye_to_mouth (0, 20): x = (20, 0) + (20, 0) scaled to max(2 * 20, 1.8 * 20) = 40,
    # y = (0, 40), centre = eyes + 0.1 * (0, 20) = (50, 52)
    q = quad_from_points((40, 50), (60, 50), (42, 70), (58, 70))
    assert q.dtype == np.float64 and q.shape == (4, 2)
    np.testing.assert_allclose(q, [[10, 12], [10, 92], [90, 92], [90, 12]])


def test_quad_follows_the_longer_of_the_two_distances():
    # A long face: 1.8 x eye-to-mouth (1.8 * 40 = 72) beats 2 x eye-to-eye (40).
    q = quad_from_points((40, 50), (60, 50), (45, 90), (55, 90))
    assert quad_side(q) == pytest.approx(144)


def test_quad_is_a_square_turned_with_the_face():
    pts = np.array([(40, 50), (60, 50), (42, 70), (58, 70)], dtype=np.float64)
    a = np.radians(25)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    turned = pts @ rot.T + (300, 200)
    q = quad_from_points(*turned)
    np.testing.assert_allclose(q, quad_from_points(*pts) @ rot.T + (300, 200), atol=1e-9)
    sides = [np.linalg.norm(q[i] - q[i - 1]) for i in range(4)]
    np.testing.assert_allclose(sides, sides[0])
    assert np.dot(q[1] - q[0], q[3] - q[0]) == pytest.approx(0, abs=1e-9)


def test_ffhq_quad_is_the_recipe_quad(xml_landmarks):
    """The implementation and the independently written oracle agree on every annotated face."""
    n = 0
    for faces in xml_landmarks.values():
        for lm in faces:
            np.testing.assert_allclose(ffhq_quad(lm), recipe_quad(lm)[0], atol=1e-9)
            n += 1
    assert n == 43


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="68 x 2"):
        ffhq_quad(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        quad_from_points((0, 0), (0, 0), (0, 0), (0, 0))
    rgb = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(ValueError, match="does not overlap"):
        align_face(rgb, quad_from_points((500, 500), (520, 500), (502, 520), (518, 520)), 64)
    with pytest.raises(ValueError, match="positive"):
        align_face(rgb, quad_from_points((40, 50), (60, 50), (42, 70), (58, 70)), 0)


# --- same pixels as the recipe -------------------------------------------------------------------------------------


def _face(detections, name: str, where: str) -> np.ndarray:
    """Landmarks of a detected face: the only one, one whose crop leaves the photo, or one inside it."""
    from alignment.quality import padding_fraction

    faces = detections(name)
    if where == "only":
        assert len(faces) == 1
        return faces[0].landmarks
    h, w = 1545, 1986
    for f in faces:
        quad = ffhq_quad(f.landmarks)
        padded = recipe_geometry(w, h, quad, 1024).pad is not None
        if (where == "edge" and padding_fraction(quad, w, h) > 0.02) or (
            where == "inside" and not padded and quad_side(quad) > 250
        ):
            return f.landmarks
    raise AssertionError(f"no {where} face in {name}")


CASES = [
    (CRUISE, "only"),  # large face, crop leaves the photo left and right: padding
    (BALD, "edge"),  # a face in the collage's corner: padding on two sides
    (BALD, "inside"),  # no padding
]


@pytest.mark.parametrize("size", [256, 1024])
@pytest.mark.parametrize(("name", "where"), CASES)
def test_same_pixels_as_the_recipe(photo, detections, name, where, size):
    rgb = photo(name)
    quad = ffhq_quad(_face(detections, name, where))
    geo = recipe_geometry(rgb.shape[1], rgb.shape[0], quad, size)
    assert (geo.pad is not None) == (where != "inside")
    ours = align_face(rgb, quad, size)
    assert ours.shape == (size, size, 3) and ours.dtype == np.uint8
    assert psnr(ours, recipe_align(rgb, quad, size)) >= 40.0


@pytest.mark.parametrize("size", [256, 1024])
def test_same_pixels_on_small_upscaled_faces(photo, xml_landmarks, size):
    """PASCAL faces (quads of 50-170 px) enlarged many times, from the hand-checked landmarks."""
    for name in ("2008_002506.jpg", "2008_007676.jpg"):
        lm = xml_landmarks[name][0]
        quad = ffhq_quad(lm)
        assert psnr(align_face(photo(name), quad, size), recipe_align(photo(name), quad, size)) >= 40.0


def test_same_pixels_when_the_recipe_shrinks_and_at_64(photo, detections):
    # 1.6x Cruise at 256: the quad is over 4x the output, so the recipe first shrinks the photo 2x.
    lm = _face(detections, CRUISE, "only")
    big = cv2.resize(photo(CRUISE), None, fx=1.6, fy=1.6, interpolation=cv2.INTER_CUBIC)
    quad = ffhq_quad((lm + 0.5) * 1.6 - 0.5)
    assert recipe_geometry(big.shape[1], big.shape[0], quad, 256).shrink == 2
    assert psnr(align_face(big, quad, 256), recipe_align(big, quad, 256)) >= 40.0
    quad = ffhq_quad(lm)  # 11x down to 64 px: shrink 5
    assert psnr(align_face(photo(CRUISE), quad, 64), recipe_align(photo(CRUISE), quad, 64)) >= 40.0


# --- bounded cost -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def worst_case(photo, detections):
    """Cruise enlarged 5.5x (4400 x 3108): a padded face whose quad (3917 px) is just under 4x 1024, the case
    where the recipe blurs a ~6000 x 5500 padded image (about 50 s and 2.2 GB on a 2-core machine)."""
    lm = _face(detections, CRUISE, "only")
    big = cv2.resize(photo(CRUISE), None, fx=5.5, fy=5.5, interpolation=cv2.INTER_LINEAR)
    quad = ffhq_quad((lm + 0.5) * 5.5 - 0.5)
    geo = recipe_geometry(big.shape[1], big.shape[0], quad, 1024)
    assert geo.shrink == 1 and geo.pad is not None and 3800 < geo.qsize < 4096
    return big, quad


def test_worst_case_padding_takes_under_a_second(worst_case):
    big, quad = worst_case
    cv2.setNumThreads(1)
    try:
        times = []
        for _ in range(2):
            t = time.perf_counter()
            out = align_face(big, quad, 1024)
            times.append(time.perf_counter() - t)
    finally:
        cv2.setNumThreads(-1)
    assert out.shape == (1024, 1024, 3)
    assert min(times) < 1.0, times


def test_worst_case_padding_needs_little_memory(worst_case):
    big, quad = worst_case
    tracemalloc.start()
    try:
        align_face(big, quad, 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 200e6, f"{peak / 1e6:.0f} MB"


def test_worst_case_shape_matches_the_recipe_at_256(photo, detections):
    """The same situation scaled to 256 px (quad just under 1024 px), where the recipe takes ~1.5 s."""
    lm = _face(detections, CRUISE, "only")
    big = cv2.resize(photo(CRUISE), None, fx=1.4, fy=1.4, interpolation=cv2.INTER_LINEAR)
    quad = ffhq_quad((lm + 0.5) * 1.4 - 0.5)
    geo = recipe_geometry(big.shape[1], big.shape[0], quad, 256)
    assert geo.pad is not None and 0.95 * 1024 < geo.qsize < 1024
    assert psnr(align_face(big, quad, 256), recipe_align(big, quad, 256)) >= 40.0


# --- inputs -----------------------------------------------------------------------------------------------------------


def test_grey_and_rgba_arrays(photo, detections):
    rgb = photo(CRUISE)
    quad = ffhq_quad(_face(detections, CRUISE, "only"))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    out = align_face(grey, quad, 128)
    assert out.shape == (128, 128, 3) and (out[..., 0] == out[..., 1]).all()
    np.testing.assert_array_equal(out, align_face(np.repeat(grey[..., None], 3, axis=2), quad, 128))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(align_face(rgba, quad, 128), align_face(rgb, quad, 128))
    with pytest.raises(TypeError, match="8-bit"):
        align_face(rgb.astype(np.float32), quad, 128)


def test_any_output_size(photo, detections):
    quad = ffhq_quad(_face(detections, CRUISE, "only"))
    for size in (32, 64, 100, 512):
        assert align_face(photo(CRUISE), quad, size).shape == (size, size, 3)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 17, 1000, 1001])
def test_padding_median_is_numpys_bit_for_bit(n):
    # The padding's median colour skips np.median's NaN check (an import of numpy.ma per worker); its values
    # must stay numpy's to the bit, or the padded faces change.
    from alignment.align import _channel_median

    rng = np.random.default_rng(n)
    for x in (
        (rng.random((n, 3)) * 255).astype(np.float32),
        np.round(rng.random((n, 3)) * 4).astype(np.float32),
    ):
        want = np.median(x, axis=0).astype(np.float32)
        got = _channel_median(x).astype(np.float32)
        assert got.tobytes() == want.tobytes()
