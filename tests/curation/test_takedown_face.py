"""`ghosts takedown --face PHOTO`: the matches are listed and confirmed, then that person's photos are
removed (a new dataset version without them) and no one else's. The collage of four men is cut into one
photo per face (in the test's temporary folder), so each man has six photos of his own."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select, update

from curation.analysis.analyze import analyze_workspace
from curation.catalog.schema import DatasetVersion, Face, Image
from curation.datasets.freeze import freeze_dataset
from curation.datasets.reader import open_archive
from curation.sources.ingest import ingest_paths
from flows.cli import main
from tests.alignment.conftest import BALD, CRUISE
from tests.alignment.test_identity import COLLAGE

HALF = 130  # half the side of each face's photo: the neighbours (about 300 px away) stay out


@pytest.fixture
def tiles_ws(workspace, faces_dir, tmp_path):
    collage = PILImage.open(faces_dir / BALD).convert("RGB")
    folder = tmp_path / "tiles"
    folder.mkdir()
    paths = []
    for name, centres in COLLAGE.items():
        for k, (x, y) in enumerate(centres):
            path = folder / f"{name}_{k}.png"
            collage.crop((x - HALF, y - HALF, x + HALF, y + HALF)).save(path)
            paths.append(path)
    ingest_paths(workspace, [*paths, faces_dir / CRUISE], progress=False)
    analyze_workspace(workspace, workers=1, progress=False)
    with workspace.session() as s:
        s.execute(update(Face).values(decision="accepted"))
    freeze_dataset(workspace, "people", resolution=32, progress=False)
    # The person asking sends another picture of himself: a wider crop of his first face.
    x, y = COLLAGE["statham"][0]
    query = tmp_path / "me.png"
    collage.crop((x - HALF - 40, y - HALF - 30, x + HALF + 20, y + HALF + 40)).save(query)
    return workspace, query


def _who(ws) -> dict[str, str]:
    with ws.session() as s:
        rows = s.execute(select(Image.sha256, Image.source_ref, Image.status)).all()
    return {sha: status for sha, _, status in rows}, {sha: (ref or "") for sha, ref, _ in rows}


def test_takedown_by_face_removes_that_person_only(tiles_ws):
    ws, query = tiles_ws
    with ws.session() as s:
        faces = s.execute(select(Face.id, Image.source_ref, Image.sha256).join(Image)).all()
    assert len(faces) == 25  # one face per photo
    statham = {sha for _, ref, sha in faces if "statham_" in ref}
    others = {sha for _, ref, sha in faces} - statham

    runner = CliRunner()
    args = ["takedown", "--face", str(query), "--reason", "he asked by mail", "--data", str(ws.root)]
    refused = runner.invoke(main, args, input="n\n")
    assert refused.exit_code != 0 and "nothing removed" in refused.output
    listed = [line for line in refused.output.splitlines() if line.startswith("  face ")]
    assert len(listed) == 6
    assert all(status == "analyzed" for status in _who(ws)[0].values())  # nothing happened yet

    done = runner.invoke(main, [*args, "--yes"])
    assert done.exit_code == 0, done.output
    status, _ = _who(ws)
    assert {sha for sha in status if status[sha] == "excluded"} == statham
    assert all(status[sha] == "analyzed" for sha in others)
    with ws.session() as s:
        gone = s.execute(
            select(Face.descriptor, Face.deleted).join(Image).where(Image.sha256.in_(statham))
        ).all()
    assert gone and all(d is None and deleted for d, deleted in gone)
    assert "new version people v2: 19 images (6 removed)" in done.output
    with ws.session() as s:
        path = s.scalar(select(Image.path).where(Image.sha256 == next(iter(others))))
    assert path is not None
    with ws.session() as s:
        latest = s.scalar(select(DatasetVersion.path).where(DatasetVersion.version == 2))
    with open_archive(ws.abspath(latest)) as arc:
        assert {r["image_sha256"] for r in arc.provenance} == others


def test_takedown_by_face_needs_a_photo_of_one_face(tiles_ws, faces_dir):
    ws, _ = tiles_ws
    result = CliRunner().invoke(
        main, ["takedown", "--face", str(faces_dir / BALD), "--yes", "--reason", "x", "--data", str(ws.root)]
    )
    assert result.exit_code != 0 and "crop it to the one person" in result.output
