"""The PNG encoder of aligned faces and archives: what any decoder reads back is exactly the pixels, the file
is what the archive stores as it is, and the same pixels always give the same bytes."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from alignment.png import encode_png
from curation.datasets.png import storable_png


@pytest.mark.parametrize("shape", [(256, 256, 3), (64, 64), (4, 4, 3), (1, 7, 3), (512, 512, 3)])
def test_pixels_round_trip_through_pillow_and_opencv(shape):

    rng = np.random.default_rng(sum(shape))
    # Random noise, flat areas and ramps: every filter residue from -255 to 255 occurs.
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    ramp = (255 - np.arange(shape[1]) % 256).astype(np.uint8)
    a[: shape[0] // 2] = ramp[:, None] if a.ndim == 3 else ramp
    data = encode_png(a)
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == ("L" if a.ndim == 2 else "RGB")
        np.testing.assert_array_equal(np.asarray(im), a)
    back = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back if a.ndim == 2 else back[:, :, ::-1], a)
    assert encode_png(a.copy()) == data
    if shape[0] == shape[1]:
        assert storable_png(data, shape[0], "L" if a.ndim == 2 else "RGB") is data


def test_refuses_what_is_not_8_bit_rgb_or_grey():
    for bad in (np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.uint16), np.zeros(4, np.uint8)):
        with pytest.raises(ValueError):
            encode_png(bad)
