"""Analysis over a real workspace: faces recorded with their measures and previews, resumable, robust."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

import alignment.preview as preview_mod
import curation.analysis.analyze as analyze_mod
from alignment.align import ffhq_quad
from alignment.faces import analyze_rgb
from alignment.preview import preview_relpath, save_preview, write_preview
from curation.analysis.analyze import analyze_images, analyze_workspace
from curation.catalog.schema import Face, Image
from curation.sources.ingest import ingest_paths
from tests.alignment.conftest import CRUISE


def _by_name(ws) -> dict[str, Image]:
    with ws.session() as s:
        return {i.provenance["name"]: i for i in s.scalars(select(Image))}


def _faces(ws, image_id=None) -> list[Face]:
    q = select(Face).order_by(Face.image_id, Face.index)
    if image_id is not None:
        q = q.where(Face.image_id == image_id)
    with ws.session() as s:
        return list(s.scalars(q))


def _link(faces_dir, tmp_path, names) -> list:
    d = tmp_path / "photos"
    d.mkdir(exist_ok=True)
    for n in names:
        os.symlink(faces_dir / n, d / n)
    return [d / n for n in names]


def test_every_test_photo(workspace, faces_dir, photo):
    ingest_paths(workspace, [faces_dir], progress=False)
    summary = analyze_workspace(workspace, workers=1, target_size=1024, progress=False)
    assert (summary.images, summary.analyzed, summary.no_face, summary.error) == (12, 11, 1, 0)
    assert summary.faces >= 43 + 1 + 20 and summary.flagged == summary.faces  # all smaller than 1024 px
    images = _by_name(workspace)
    assert images["dogs.jpg"].status == "no_face" and images["dogs.jpg"].analyzed_at is not None
    assert all(i.status == "analyzed" for n, i in images.items() if n != "dogs.jpg")

    (face,) = _faces(workspace, images[CRUISE].id)
    assert face.detector == "hog" and face.det_score > 0.5 and face.index == 0 and not face.manual
    assert np.asarray(face.landmarks).shape == (68, 2) and np.asarray(face.box).shape == (4,)
    np.testing.assert_allclose(face.quad, ffhq_quad(np.asarray(face.landmarks)), atol=1e-6)
    assert face.quad_size > 600 and face.eye_dist > 100 and 0.1 < face.padding < 0.3
    assert face.upscaled and face.flagged and 0 < face.score < 1 and face.blur > 100
    assert abs(face.roll) < 10 and abs(face.yaw) < 15
    assert set(face.quality) >= {"factors", "flags", "score", "rotation", "blur", "padding", "upscale"}
    preview = workspace.abspath(face.preview_path)
    with PILImage.open(preview) as im:
        assert im.format == "JPEG" and im.size == (256, 256)
    # The preview is the aligned face itself (JPEG-close to aligning it again).
    again = analyze_rgb(photo(CRUISE))[0].preview.astype(int)
    assert np.abs(np.asarray(PILImage.open(preview), dtype=int) - again).mean() < 3

    # Resumable: nothing is left to do, and nothing is written twice.
    n = len(_faces(workspace))
    assert analyze_workspace(workspace, workers=1, progress=False).images == 0
    assert len(_faces(workspace)) == n


def test_bad_images_never_stop_the_batch(workspace, faces_dir, tmp_path):
    ingest_paths(
        workspace, _link(faces_dir, tmp_path, [CRUISE, "dogs.jpg", "2008_001322.jpg"]), progress=False
    )
    images = _by_name(workspace)
    workspace.abspath(images[CRUISE].path).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    workspace.abspath(images["dogs.jpg"].path).unlink()
    summary = analyze_workspace(workspace, workers=1, progress=False)
    assert (summary.images, summary.analyzed, summary.error) == (3, 1, 2)
    images = _by_name(workspace)
    assert images[CRUISE].status == "error" and images[CRUISE].reject_reason.startswith("cannot decode")
    assert images["dogs.jpg"].status == "error" and "missing" in images["dogs.jpg"].reject_reason
    assert images["2008_001322.jpg"].status == "analyzed" and len(_faces(workspace)) == 3
    assert {e["image_id"] for e in summary.errors} == {images[CRUISE].id, images["dogs.jpg"].id}


def test_a_rerun_does_only_what_is_missing(workspace, faces_dir, tmp_path):
    ingest_paths(
        workspace, _link(faces_dir, tmp_path, [CRUISE, "2008_001322.jpg", "2009_004587.jpg"]), progress=False
    )
    images = _by_name(workspace)
    first = analyze_images(workspace, [images[CRUISE].id, 999_999])  # the flows' batch entry point
    assert first["images"] == 1 and first["faces"] == 1
    rest = analyze_workspace(workspace, workers=1, progress=False)
    assert rest.images == 2 and rest.faces == 5
    assert [f.image_id for f in _faces(workspace)].count(images[CRUISE].id) == 1


def test_faces_cropped_by_hand_keep_their_place(workspace, faces_dir, tmp_path):
    ingest_paths(workspace, _link(faces_dir, tmp_path, ["2008_001322.jpg"]), progress=False)
    (image,) = _by_name(workspace).values()
    with workspace.session() as s:
        s.add(
            Face(
                image_id=image.id,
                index=0,
                detector="manual",
                manual=True,
                quad=[[0, 0], [0, 9], [9, 9], [9, 0]],
            )
        )
    analyze_workspace(workspace, workers=1, progress=False)
    faces = _faces(workspace, image.id)
    assert [f.index for f in faces] == [0, 1, 2, 3] and faces[0].manual
    assert [f.detector for f in faces[1:]] == ["hog"] * 3


def test_worker_processes_give_the_same_faces(faces_dir, tmp_path):
    """Two worker processes, and this process alone, record the same faces."""
    from curation.catalog.workspace import init_workspace

    photos = _link(faces_dir, tmp_path, ["2009_004587.jpg", "2008_002506.jpg", "dogs.jpg"])
    rows = []
    for workers in (1, 2):
        ws = init_workspace(tmp_path / f"ws{workers}")
        try:
            ingest_paths(ws, photos, progress=False)
            summary = analyze_workspace(ws, workers=workers, progress=False)
            assert (summary.images, summary.no_face, summary.faces) == (3, 1, 5)
            with ws.session() as s:
                rows.append(
                    s.execute(
                        select(Image.sha256, Face.index, Face.quad, Face.score, Face.preview_path)
                        .join(Face)
                        .order_by(Image.sha256, Face.index)
                    ).all()
                )
        finally:
            ws.close()
    assert [r[:2] for r in rows[0]] == [r[:2] for r in rows[1]]
    for a, b in zip(*rows):
        np.testing.assert_allclose(a.quad, b.quad)
        assert a.score == pytest.approx(b.score)
        assert a.preview_path == b.preview_path


def test_unknown_detector_is_refused_before_anything_runs(workspace):
    from curation.catalog.errors import GhostsError

    with pytest.raises(GhostsError, match="unknown face detector 'dnn'"):
        analyze_workspace(workspace, detector="dnn", progress=False)


def test_write_preview(workspace, photo, detections):
    quad = ffhq_quad(detections(CRUISE)[0].landmarks)
    rel = write_preview(workspace, "manual/7", photo(CRUISE), quad)
    assert rel == "previews/manual/7.jpg" == preview_relpath(f"manual/{7}")
    with PILImage.open(workspace.abspath(rel)) as im:
        assert im.size == (256, 256)
    with pytest.raises(ValueError, match="bad preview key"):
        write_preview(workspace, "../escape", photo(CRUISE), quad)


PASCAL3 = ["2008_001009.jpg", "2008_001322.jpg", "2009_004587.jpg"]  # 2 + 3 + 2 faces


def test_previews_are_durable_before_the_catalog_names_them(workspace, faces_dir, tmp_path, monkeypatch):
    """Workers write previews without fsync; each batch is synced once, then recorded in one transaction."""
    ingest_paths(workspace, _link(faces_dir, tmp_path, PASCAL3), progress=False)
    events = []
    real_sync, real_record = analyze_mod.sync_previews, analyze_mod.record_outcomes

    def sync(root, rels):
        events.append(("sync", sorted(rels)))
        real_sync(root, rels)

    def record(ws, outcomes):
        rels = sorted(f["preview_path"] for o in outcomes for f in o["faces"])
        assert all(workspace.abspath(r).is_file() for r in rels)
        events.append(("record", rels, len(outcomes)))
        return real_record(ws, outcomes)

    monkeypatch.setattr(analyze_mod, "sync_previews", sync)
    monkeypatch.setattr(analyze_mod, "record_outcomes", record)
    summary = analyze_workspace(workspace, workers=1, progress=False, identities=False, batch_size=2)
    assert (summary.images, summary.analyzed, summary.faces) == (3, 3, 7)
    # Two batches (2 images, then 1), each synced just before it is recorded, with exactly its previews.
    assert [e[0] for e in events] == ["sync", "record", "sync", "record"]
    assert [e[2] for e in events[1::2]] == [2, 1]
    for (_, synced), (_, recorded, _) in zip(events[::2], events[1::2]):
        assert synced == recorded and recorded
    assert not list(workspace.tmp_dir.iterdir())  # no temp file left behind


def test_a_failed_sync_records_nothing_of_its_batch_and_a_rerun_finishes(
    workspace, faces_dir, tmp_path, monkeypatch
):
    ingest_paths(workspace, _link(faces_dir, tmp_path, PASCAL3), progress=False)
    calls = []
    real_sync = analyze_mod.sync_previews

    def failing(root, rels):
        calls.append(rels)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real_sync(root, rels)

    monkeypatch.setattr(analyze_mod, "sync_previews", failing)
    with pytest.raises(OSError):
        analyze_workspace(workspace, workers=1, progress=False, identities=False, batch_size=2)
    statuses = sorted(i.status for i in _by_name(workspace).values())
    assert statuses == ["analyzed", "analyzed", "new"]  # the unsynced batch is not in the catalog
    monkeypatch.undo()
    summary = analyze_workspace(workspace, workers=1, progress=False, identities=False)
    assert (summary.images, summary.analyzed) == (1, 1)
    assert len(_faces(workspace)) == 7


def test_sync_previews_without_syncfs_fsyncs_each_file_and_folder(workspace, monkeypatch):
    img = np.zeros((256, 256, 3), np.uint8)
    rels = [
        save_preview(workspace.root, workspace.tmp_dir, f"faces/a{k}/x", img, durable=False) for k in range(3)
    ]
    synced = []
    real_fsync = os.fsync

    def fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(preview_mod, "_SYNCFS", None)
    monkeypatch.setattr(os, "fsync", fsync)
    preview_mod.sync_previews(workspace.root, rels)
    files = {str(workspace.abspath(r)) for r in rels}
    assert files <= set(synced) and {str(workspace.abspath(r).parent) for r in rels} <= set(synced)


def test_the_progress_bar_shows_the_rate_and_the_time_left(workspace, faces_dir, tmp_path, capsys):
    ingest_paths(workspace, _link(faces_dir, tmp_path, PASCAL3), progress=False)
    analyze_workspace(workspace, workers=1, progress=True, identities=False)
    err = capsys.readouterr().err
    # e.g. "analyze: 100%|#####| 3/3 [00:02<00:00,  1.21img/s, errors=0, faces=7]"
    assert re.search(r"analyze: 100%.*3/3 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+img/s.*faces=7", err), err
