"""Detection while the landmark model loads: HOG scans logged in a child without the model, answered from the
log in the worker, with the same faces and bytes as scans run there."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from alignment.detect import detect_faces
from alignment.files import FileJob, Prescan, align_file
from alignment.models import ModelNotLoaded, logged_hog_scans
from curation.catalog.imaging import load_rgb

PASCAL = "2008_001322.jpg"  # three faces
DOGS = "dogs.jpg"  # no face


def test_logged_scans_are_answered_from_the_log(faces_dir):
    rgb = load_rgb(faces_dir / PASCAL)
    with logged_hog_scans() as first:
        faces = detect_faces(rgb)
    assert first.log and first.answered == 0
    with logged_hog_scans(first.log) as again:
        replayed = detect_faces(rgb)
    assert again.answered == len(first.log) and again.log == {}  # no scan ran again
    assert len(replayed) == len(faces) == 3
    for a, b in zip(faces, replayed):
        assert (
            np.array_equal(a.box, b.box) and np.array_equal(a.landmarks, b.landmarks) and a.score == b.score
        )
    # Another image is scanned, not answered.
    with logged_hog_scans(first.log) as other:
        detect_faces(load_rgb(faces_dir / DOGS))
    assert other.answered == 0 and other.log


def test_without_the_model_detection_stops_at_the_first_face(faces_dir):
    rgb = load_rgb(faces_dir / PASCAL)
    with logged_hog_scans(landmarks=False) as scans, pytest.raises(ModelNotLoaded):
        detect_faces(rgb)
    assert len(scans.log) == 1  # the upright scan, then the first face needed landmarks
    assert len(detect_faces(rgb)) == 3  # the model is back after the block


def test_prescanned_jobs_write_the_same_faces(faces_dir, tmp_path):
    jobs = [
        FileJob(
            path=str(faces_dir / n), stem=n[:-4], out_dir=str(tmp_path / "plain"), size=64, detector="hog"
        )
        for n in (PASCAL, DOGS)
    ]
    (tmp_path / "plain").mkdir()
    (tmp_path / "pre").mkdir()
    found = Prescan(jobs).collect(finish=True)
    assert set(found) == {job.path for job in jobs}
    for job in jobs:
        plain = align_file(job)
        pre = align_file(dataclasses.replace(job, out_dir=str(tmp_path / "pre"), scans=found[job.path]))
        assert pre == plain
    written = {p.name: p.read_bytes() for p in (tmp_path / "plain").iterdir()}
    assert len(written) == 3 and written == {p.name: p.read_bytes() for p in (tmp_path / "pre").iterdir()}
