"""Fixtures for the alignment tests: the test photos, their hand-checked boxes and landmarks, and the
landmarks dlib finds on the photos used again and again (computed once per session)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

CRUISE = "Tom_Cruise_avp_2014_4.jpg"  # 565 x 800, one large face whose crop leaves the photo (padding)
BALD = "bald_guys.jpg"  # 1986 x 1545, a collage of ~24 faces, some at the photo's edge


def read_boxes(xml: Path) -> dict[str, list[dict]]:
    """dlib's imglab XML: per file, boxes [x0, y0, x1, y1] (exclusive ends) and the 68 landmarks if any."""
    out: dict[str, list[dict]] = {}
    for image in ET.parse(xml).getroot().iter("image"):
        for box in image.iter("box"):
            x0, y0 = float(box.get("left")), float(box.get("top"))
            parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
            out.setdefault(image.get("file"), []).append(
                {
                    "box": [x0, y0, x0 + float(box.get("width")), y0 + float(box.get("height"))],
                    "landmarks": np.array([[float(p.get("x")), float(p.get("y"))] for p in parts])
                    if parts
                    else None,
                }
            )
    return out


@pytest.fixture(scope="session")
def truth(faces_dir) -> dict[str, list[dict]]:
    """The 43 hand-checked face boxes of the 9 PASCAL photos (training.xml + testing.xml)."""
    out = read_boxes(faces_dir / "training.xml")
    out.update(read_boxes(faces_dir / "testing.xml"))
    assert sum(map(len, out.values())) == 43
    return out


@pytest.fixture(scope="session")
def xml_landmarks(faces_dir) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for file, boxes in read_boxes(faces_dir / name).items():
            out.setdefault(file, []).extend(b["landmarks"] for b in boxes)
    return out


@pytest.fixture(scope="session")
def photo(faces_dir):
    """photo(name) -> the decoded RGB pixels (cached)."""
    from curation.catalog.imaging import load_rgb

    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = load_rgb(faces_dir / name)
            cache[name].setflags(write=False)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def detections(photo):
    """detections(name) -> detect_faces on that photo (cached)."""
    from alignment.detect import detect_faces

    cache: dict[str, list] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = detect_faces(photo(name))
        return cache[name]

    return get
