"""Projection targets from real photos: FFHQ alignment of the largest face, or a plain centre crop."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from curation.catalog.imaging import load_rgb
from training.errors import TrainingError
from training.latent import load_target
from training.latent.target import center_crop_resize

CRUISE = "Tom_Cruise_avp_2014_4.jpg"  # 565x800, one large frontal face


def test_no_align_is_a_centre_crop(faces_dir):
    rgb = load_rgb(faces_dir / CRUISE)
    got = load_target(faces_dir / CRUISE, 32, align=False)
    top = (800 - 565) // 2
    want = np.asarray(Image.fromarray(rgb[top : top + 565]).resize((32, 32), Image.LANCZOS))
    assert got.shape == (32, 32, 3) and got.dtype == np.uint8 and np.array_equal(got, want)
    assert np.array_equal(center_crop_resize(rgb[:40, :40], 40), rgb[:40, :40])


def test_align_finds_the_face(faces_dir):
    aligned = load_target(faces_dir / CRUISE, 64, align=True)
    assert aligned.shape == (64, 64, 3) and aligned.dtype == np.uint8
    # the aligned face fills the frame: it is not the centre crop of the whole portrait
    plain = load_target(faces_dir / CRUISE, 64, align=False)
    assert np.abs(aligned.astype(int) - plain).mean() > 10


def test_no_face_is_a_clear_error(faces_dir):
    with pytest.raises(TrainingError, match="no face found in dogs.jpg; use --no-align"):
        load_target(faces_dir / "dogs.jpg", 32, align=True)


def test_unreadable_or_missing_target(tmp_path):
    with pytest.raises(TrainingError, match="not found"):
        load_target(tmp_path / "me.jpg", 32)
    (tmp_path / "me.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TrainingError, match="cannot read target photo"):
        load_target(tmp_path / "me.jpg", 32)
