"""Detections and landmarks stay what they were before analysis was sped up (issue 19): the boxes and 68
landmarks dlib finds on every shared test photo and on 60 Instagram-sized photos of the analysis benchmark,
recorded from the code of that time in data/detect_baseline.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from alignment.detect import detect_faces
from benchmarks.analyze_bench import make_photo
from curation.catalog.imaging import load_rgb

BASELINE = json.loads((Path(__file__).parent / "data" / "detect_baseline.json").read_text())
# Coordinates are stored rounded to 0.01 px; a landmark may move by at most this much.
LANDMARK_TOLERANCE = 0.25


def _same(found, recorded, name: str) -> None:
    assert len(found) == len(recorded), f"{name}: {len(found)} faces, {len(recorded)} before"
    for d, r in zip(found, recorded):
        box, landmarks = np.asarray(r["box"]), np.asarray(r["landmarks"])
        assert np.abs(d.box - box).max() <= LANDMARK_TOLERANCE, name
        err = np.abs(d.landmarks - landmarks).max()
        assert err <= LANDMARK_TOLERANCE, f"{name}: a landmark moved {err:.2f} px"


def test_shared_photos_keep_their_faces_and_landmarks(faces_dir):
    assert sum(map(len, BASELINE["shared"].values())) == 68  # 43 PASCAL faces, Tom Cruise, 24 in bald_guys
    for name, recorded in BASELINE["shared"].items():
        _same(detect_faces(load_rgb(faces_dir / name)), recorded, name)


@pytest.fixture(scope="module")
def instagram(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("posts")
    for name in BASELINE["instagram"]:
        make_photo(int(name[4:9]), str(folder))
    return folder


def test_instagram_sized_photos_keep_their_faces_and_landmarks(instagram):
    assert len(BASELINE["instagram"]) == 60 and sum(map(len, BASELINE["instagram"].values())) == 85
    for name, recorded in BASELINE["instagram"].items():
        _same(detect_faces(load_rgb(instagram / name)), recorded, name)
