"""`ghosts freeze`: accepted faces -> an immutable, byte-reproducible, crash-safe dataset version."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import func, select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DatasetItem, DatasetVersion, Face, Image
from curation.catalog.workspace import open_workspace
from curation.datasets.format import archive_name
from curation.datasets.freeze import freeze_dataset
from curation.datasets.reader import open_archive, read_manifest
from curation.datasets.verify import verify_archive
from curation.sources.ingest import ingest_paths
from flows.cli import main

REPO = Path(__file__).resolve().parents[2]

DECIDED = dt.datetime(2024, 10, 31, 12, 0, tzinfo=dt.UTC)


def xml_landmarks(faces_dir: Path) -> dict[str, list[np.ndarray]]:
    """The hand-checked 68-point landmarks shipped with the test photos, by file name."""
    out: dict[str, list[np.ndarray]] = {}
    for xml in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"):
        for image in ET.parse(faces_dir / xml).getroot().iter("image"):
            for box in image.iter("box"):
                parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
                out.setdefault(image.get("file"), []).append(
                    np.array([[float(p.get("x")), float(p.get("y"))] for p in parts])
                )
    return out


def add_faces(ws, faces_dir: Path, files: list[str], decision="accepted") -> list[int]:
    """Import `files` and give each the faces of the landmark files, as analysis would, with a decision."""
    from alignment.align import ffhq_quad

    marks = xml_landmarks(faces_dir)
    ingest_paths(ws, [faces_dir / f for f in files], progress=False)
    ids = []
    with ws.session() as s:
        for im in s.scalars(select(Image).where(Image.status == "new")):
            for k, lm in enumerate(marks.get(im.provenance["name"], [])):
                face = Face(
                    image_id=im.id,
                    index=k,
                    detector="hog",
                    landmarks=lm.tolist(),
                    quad=np.asarray(ffhq_quad(lm)).tolist(),
                    score=0.5 + k / 100,
                    decision=decision,
                    decided_at=DECIDED,
                    reviewer="tester",
                )
                s.add(face)
                s.flush()
                ids.append(face.id)
            im.status = "analyzed"
    return ids


PASCAL = ["2007_007763.jpg", "2008_001009.jpg", "2008_001322.jpg", "2008_002079.jpg"]


@pytest.fixture
def frozen_ws(workspace, faces_dir):
    add_faces(workspace, faces_dir, PASCAL)
    return workspace


def test_freeze_writes_a_verified_version_with_provenance(frozen_ws):
    ws = frozen_ws
    with ws.session() as s:
        faces = s.execute(select(Face, Image).join(Image).order_by(Image.sha256, Face.index)).all()
        faces[0][0].decision = "rejected"
        faces[1][0].deleted = True
        n_accepted = len(faces) - 2
    r = freeze_dataset(ws, "ghosts", resolution=64, progress=False)
    assert (r.version, r.count, r.resolution, r.created, r.parent_version) == (1, n_accepted, 64, True, None)
    assert r.path == ws.datasets_dir / "ghosts" / "v1" / "ghosts-v1-64.zip"
    rep = verify_archive(r.path)
    assert rep.ok, rep.faults
    assert rep.manifest == str(r.path.parent / "manifest.json")
    m = read_manifest(r.path.parent)
    assert (m["sha256"], m["count"], m["resolution"], m["version"], m["parent"]) == (
        r.sha256,
        n_accepted,
        64,
        1,
        None,
    )
    assert m["code_version"].startswith("0.1.0") and len(m["selection_digest"]) == 64
    with open_archive(r.path) as arc:
        prov = arc.provenance
        assert arc.labels is None and arc.manifest == m
        expected = [(im.sha256, f.index) for f, im in faces[2:]]
        assert [(p["image_sha256"], p["face_index"]) for p in prov] == expected
        p = prov[0]
        assert p["source_kind"] == "local" and p["original_path"].endswith(".jpg")
        assert len(p["landmarks"]) == 68 and len(p["quad"]) == 4 and p["manual"] is False
        assert (
            p["decision"] == "accepted"
            and p["reviewer"] == "tester"
            and p["decided_at"].startswith("2024-10-31")
        )
        assert p["quality"]["score"] == pytest.approx(0.5 + p["face_index"] / 100)
        assert "2024-10-31" in arc.card and f"{n_accepted} faces from {len(PASCAL)} photos" in arc.card
        assert all(im.size == (64, 64) for _, im, _ in arc)
    with ws.session() as s:
        row = s.scalars(select(DatasetVersion)).one()
        assert (row.name, row.version, row.sha256, row.count) == ("ghosts", 1, r.sha256, n_accepted)
        items = s.scalars(select(DatasetItem).order_by(DatasetItem.archive_name)).all()
        assert [it.face_id for it in items] == [f.id for f, _ in faces[2:]]
        assert items[-1].archive_name == archive_name(n_accepted - 1)


def test_refreeze_is_byte_identical_and_versions_are_immutable(frozen_ws, tmp_path):
    ws = frozen_ws
    # The same catalog elsewhere (a backup, a colleague's copy) freezes to the same bytes.
    ws.close()
    shutil.copytree(ws.root, tmp_path / "copy")
    r1 = freeze_dataset(ws, "ghosts", resolution=64, progress=False)
    copy = open_workspace(tmp_path / "copy")
    rc = freeze_dataset(copy, "ghosts", resolution=64, progress=False)
    assert (rc.version, rc.sha256) == (1, r1.sha256)
    assert rc.path.read_bytes() == r1.path.read_bytes()
    copy.close()
    # Same selection again: nothing new is written.
    mtime = r1.path.stat().st_mtime_ns
    again = freeze_dataset(ws, "ghosts", resolution=64, progress=False)
    assert (again.created, again.version, again.sha256) == (False, 1, r1.sha256)
    assert r1.path.stat().st_mtime_ns == mtime
    # Other settings or another selection make v2, whose parent is v1; v1 stays as it was.
    r2 = freeze_dataset(ws, "ghosts", resolution=32, progress=False)
    assert (r2.version, r2.parent_version, r2.resolution) == (2, 1, 32)
    assert read_manifest(r2.path)["parent"] == {"version": 1, "sha256": r1.sha256}
    with ws.session() as s:
        s.scalars(select(Face)).first().decision = "rejected"
    r3 = freeze_dataset(ws, "ghosts", resolution=32, progress=False)
    assert (r3.version, r3.count) == (3, r2.count - 1)
    assert verify_archive(r1.path).ok and r1.path.read_bytes() == rc.path.read_bytes()


def test_freeze_with_nothing_accepted_is_a_clear_error(workspace, faces_dir):
    add_faces(workspace, faces_dir, PASCAL[:1], decision="undecided")
    with pytest.raises(GhostsError, match="no accepted faces to freeze"):
        freeze_dataset(workspace, "ghosts", progress=False)
    r = CliRunner().invoke(main, ["freeze", "--name", "ghosts", "--data", str(workspace.root)])
    assert r.exit_code == 1 and "no accepted faces" in r.output
    with workspace.session() as s:
        assert s.scalar(select(func.count()).select_from(DatasetVersion)) == 0
    for bad in ("../up", "", "a b"):
        with pytest.raises(GhostsError, match="dataset name"):
            freeze_dataset(workspace, bad, progress=False)


def test_excluded_images_are_never_selected(frozen_ws):
    with frozen_ws.session() as s:
        im = s.scalars(select(Image).order_by(Image.sha256)).first()
        im.status = "excluded"
        gone = im.sha256
    r = freeze_dataset(frozen_ws, "ghosts", resolution=32, progress=False)
    with open_archive(r.path) as arc:
        assert gone not in {p["image_sha256"] for p in arc.provenance}


def test_source_tag_labels(frozen_ws):
    with frozen_ws.session() as s:
        for k, im in enumerate(s.scalars(select(Image).order_by(Image.sha256))):
            im.query = ["ghost", "halloween", None, "ghost"][k]
    r = freeze_dataset(frozen_ws, "tagged", resolution=32, labels="source-tag", progress=False)
    m = read_manifest(r.path)
    assert m["class_names"] == ["ghost", "halloween", "untagged"] and m["labels"] == "source-tag"
    with open_archive(r.path) as arc:
        for (name, _, label), p in zip(arc, arc.provenance):
            assert m["class_names"][label] == (p["query"] or "untagged") and p["label"] == label
        assert "0 = ghost, 1 = halloween, 2 = untagged" in arc.card
    assert verify_archive(r.path).ok


def test_manual_faces_and_the_mirror_check(workspace, faces_dir, tmp_path):
    """A flipped repost of a photo, its face cropped by hand: recorded as manual, and caught by --mirror-check."""
    from alignment.align import quad_from_points

    add_faces(workspace, faces_dir, ["2008_001322.jpg"])
    photo = PILImage.open(faces_dir / "2008_001322.jpg")
    flipped = tmp_path / "flipped.png"
    photo.transpose(PILImage.Transpose.FLIP_LEFT_RIGHT).save(flipped)
    ingest_paths(workspace, [flipped], progress=False)
    lm = xml_landmarks(faces_dir)["2008_001322.jpg"][0]
    w = photo.width

    def mirror(p):
        return [w - p[0], p[1]]

    # Mirroring swaps the sides: the person's left eye appears where the right one was.
    points = {
        "eye_left": mirror(lm[42:48].mean(0)),
        "eye_right": mirror(lm[36:42].mean(0)),
        "mouth_left": mirror(lm[54]),
        "mouth_right": mirror(lm[48]),
    }
    with workspace.session() as s:
        im = s.scalars(select(Image).where(Image.status == "new")).one()
        manual = Face(
            image_id=im.id,
            index=0,
            detector="manual",
            manual=True,
            points=points,
            quad=np.asarray(quad_from_points(**points)).tolist(),
            decision="accepted",
            decided_at=DECIDED,
        )
        s.add(manual)
        s.flush()
        pair = {manual.id, 1}  # face 1: the first landmarked face of the original photo
    with pytest.raises(
        GhostsError, match=r"mirror check: 1 mirrored or duplicate face pair.*\n  mirrored: face"
    ) as e:
        freeze_dataset(workspace, "m", resolution=64, mirror_check=True, progress=False)
    assert {int(x) for x in re.findall(r"face (\d+) ", str(e.value))} == pair
    assert not list((workspace.datasets_dir / "m").rglob("*.zip")) and not list(
        (workspace.datasets_dir / "m").rglob(".tmp-*")
    )
    r = freeze_dataset(workspace, "m", resolution=64, progress=False)
    with open_archive(r.path) as arc:
        manual = [p for p in arc.provenance if p["manual"]]
        assert len(manual) == 1 and manual[0]["points"]["eye_left"] == points["eye_left"]


def test_mirror_check_passes_distinct_faces(frozen_ws):
    r = freeze_dataset(frozen_ws, "ok", resolution=64, mirror_check=True, progress=False)
    assert read_manifest(r.path)["mirror_check"]["pairs"] == 0
    assert "mirror images or duplicates" in open_archive(r.path).card


def test_kill_9_during_freeze_leaves_no_archive_and_no_row(workspace, faces_dir):
    add_faces(workspace, faces_dir, PASCAL + ["2008_002470.jpg", "2008_002506.jpg", "2008_004176.jpg"])
    ws_dir = workspace.root
    workspace.close()
    code = (
        "import sys\nfrom curation.catalog.workspace import open_workspace\nfrom curation.datasets.freeze import freeze_dataset\n"
        "freeze_dataset(open_workspace(sys.argv[1]), 'k', resolution=512, workers=1, progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(ws_dir)], cwd=REPO)
    vdir = ws_dir / "datasets" / "k" / "v1"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # The version is written in a hidden staging folder (datasets/k/.tmp-v1.<pid>/), zip in a temp file.
            tmp = list((ws_dir / "datasets" / "k").glob(".tmp-v1.*/.tmp-*"))
            if tmp and tmp[0].stat().st_size > 0:  # some faces are already in the temp zip
                break
            time.sleep(0.005)
        assert proc.poll() is None, "freeze ended before it could be killed: give it more faces"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not list((ws_dir / "datasets").rglob("*.zip")) and not vdir.exists()
    ws = open_workspace(ws_dir)
    with ws.session() as s:
        assert s.scalar(select(func.count()).select_from(DatasetVersion)) == 0
        assert s.scalar(select(func.count()).select_from(DatasetItem)) == 0
    r = freeze_dataset(
        ws, "k", resolution=32, progress=False
    )  # the next freeze takes v1 and clears the debris
    assert r.version == 1 and verify_archive(r.path).ok
    assert not list(vdir.glob(".tmp-*")) and not list(vdir.parent.glob(".tmp-*"))
    ws.close()


def test_cli_freeze_json(frozen_ws):
    r = CliRunner().invoke(
        main, ["freeze", "--name", "cli", "--resolution", "32", "--json", "--data", str(frozen_ws.root)]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["version"] == 1 and out["created"] and verify_archive(out["path"]).ok
    r = CliRunner().invoke(
        main, ["freeze", "--name", "cli", "--resolution", "32", "--data", str(frozen_ws.root)]
    )
    assert r.exit_code == 0 and "already holds exactly this selection" in r.stdout
    r = CliRunner().invoke(
        main, ["freeze", "--name", "cli", "--resolution", "48", "--data", str(frozen_ws.root)]
    )
    assert r.exit_code == 2 and "power of two" in r.output


def test_mirror_pairs_tells_mirrored_from_duplicate(faces_dir):
    from curation.datasets.freeze import face_hashes, mirror_pairs
    from tests.curation.test_archive import photo_crops

    a, b, c = photo_crops(faces_dir, 3, size=128, seed=3)
    hashes = [face_hashes(x) for x in (a, b, np.ascontiguousarray(a[:, ::-1]), c, a.copy())]
    assert mirror_pairs(hashes) == [(0, 2, "mirrored"), (0, 4, "duplicate"), (2, 4, "mirrored")]
    assert mirror_pairs(hashes[:2]) == [] and mirror_pairs(hashes[:1]) == []


@pytest.mark.parametrize("size", [8, 64, 128, 256, 1024])
def test_face_hashes_are_imagehash_phash_of_the_face_and_its_mirror(faces_dir, size):
    """The mirror check's hashes, computed with one shrink for both, are bit for bit imagehash's pHash of the
    face and of its mirror image (the mirror's from a mirrored RGB face, as before), at every archive side."""
    import imagehash
    from PIL import Image, ImageOps

    from curation.datasets.freeze import MIRROR_HASH_SIZE, face_hashes
    from tests.curation.test_archive import photo_crops

    rng = np.random.default_rng(size)
    faces = [
        *photo_crops(faces_dir, 3, size=size, seed=size),
        rng.integers(0, 256, (size, size, 3), np.uint8),
    ]
    for face in faces:
        im = Image.fromarray(face)
        want = [
            imagehash.phash(x, hash_size=MIRROR_HASH_SIZE).hash.ravel() for x in (im, ImageOps.mirror(im))
        ]
        got = np.unpackbits(face_hashes(face).astype(">u8").view(np.uint8), axis=1).astype(bool)
        np.testing.assert_array_equal(got, np.stack(want))
