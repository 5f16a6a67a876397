"""`ghosts align` and `ghosts analyze` as a user runs them."""

from __future__ import annotations

import gc
import json
import os

import numpy as np
from click.testing import CliRunner
from PIL import Image as PILImage

from flows.cli import main
from tests.alignment.conftest import CRUISE


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_align_a_folder(faces_dir, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    for n in (CRUISE, "dogs.jpg", "2008_001322.jpg"):
        os.symlink(faces_dir / n, photos / n)
    (photos / "notes.txt").write_text("not a photo")  # folders: only image files are taken
    out = tmp_path / "out"
    r = _run("align", photos, "--out", out, "--size", "256", "--json")
    assert r.exit_code == 0, r.output
    # The heap is frozen for the interpreter's exit only: a process that runs the command goes on collecting.
    assert gc.get_freeze_count() == 0
    report = {os.path.basename(x["input"]): x for x in json.loads(r.output)}
    assert set(report) == {CRUISE, "dogs.jpg", "2008_001322.jpg"}
    assert [f["file"] for f in report["2008_001322.jpg"]["faces"]] == [
        f"2008_001322_0{k}.png" for k in (1, 2, 3)
    ]
    assert report["dogs.jpg"]["faces"] == [] and report["dogs.jpg"]["skipped"] == [
        {"face": None, "reason": "no face found"}
    ]
    assert report[CRUISE]["faces"][0]["file"] == "Tom_Cruise_avp_2014_4_01.png"
    assert "padded" in report[CRUISE]["faces"][0]["flags"]
    assert sorted(p.name for p in out.iterdir()) == [
        "2008_001322_01.png",
        "2008_001322_02.png",
        "2008_001322_03.png",
        "Tom_Cruise_avp_2014_4_01.png",
    ]
    with PILImage.open(out / "Tom_Cruise_avp_2014_4_01.png") as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (256, 256)


def test_align_grey_and_rgba_files_and_same_stems(faces_dir, tmp_path):
    src = PILImage.open(faces_dir / CRUISE)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    src.convert("L").save(tmp_path / "a" / "face.png")
    rgba = src.convert("RGBA")
    alpha = np.full((src.height, src.width), 255, np.uint8)
    alpha[:40] = 0  # a transparent strip: composited on white
    rgba.putalpha(PILImage.fromarray(alpha))
    rgba.save(tmp_path / "b" / "face.png")
    out = tmp_path / "out"
    r = _run("align", tmp_path / "a" / "face.png", tmp_path / "b" / "face.png", "--out", out, "--size", "64")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["face-2_01.png", "face_01.png"]
    grey = np.asarray(PILImage.open(out / "face_01.png"))
    assert grey.shape == (64, 64, 3) and (grey[..., 0] == grey[..., 2]).all()


def test_align_reports_bad_input(faces_dir, tmp_path):
    r = _run("align", tmp_path / "missing.jpg", "--out", tmp_path / "out")
    assert r.exit_code == 1 and "input not found" in r.output
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"nope")
    r = _run("align", junk, "--out", tmp_path / "out")
    assert (
        r.exit_code == 1
        and "none of the inputs could be read" in r.output
        and "cannot read the image" in r.output
    )
    r = _run("align", junk, faces_dir / "dogs.jpg", "--out", tmp_path / "out", "--json")
    assert r.exit_code == 0, r.output  # the batch ran: one photo read, without faces
    r = _run("align", faces_dir / "dogs.jpg", "--out", tmp_path / "out", "--size", "100")
    assert r.exit_code == 2 and "--size" in r.output


def test_analyze_command(workspace, faces_dir, tmp_path):
    r = _run("analyze", "--data", tmp_path / "nowhere")
    assert r.exit_code == 1 and "ghosts init" in r.output
    photos = tmp_path / "in"
    photos.mkdir()
    for n in ("dogs.jpg", "2009_004587.jpg"):
        os.symlink(faces_dir / n, photos / n)
    assert _run("import", photos, "--data", workspace.root).exit_code == 0
    r = _run("analyze", "--workers", "1", "--target-size", "256", "--json", "--data", workspace.root)
    assert r.exit_code == 0, r.output
    summary = json.loads(r.output)
    assert (summary["images"], summary["analyzed"], summary["no_face"], summary["faces"]) == (2, 1, 1, 2)
    r = _run("analyze", "--workers", "1", "--data", workspace.root)
    assert r.exit_code == 0 and "analysed 0 images" in r.output


def test_align_in_worker_processes_writes_the_same_files(faces_dir, tmp_path):
    """Two worker processes (largest photo first) write byte-identical faces, reported in input order, and
    leave no temp file behind."""
    names = ["2008_001322.jpg", "dogs.jpg", CRUISE]
    outs = {}
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        r = _run(
            "align",
            *(faces_dir / n for n in names),
            "--out",
            out,
            "--size",
            "64",
            "--workers",
            workers,
            "--json",
        )
        assert r.exit_code == 0, r.output
        assert [os.path.basename(x["input"]) for x in json.loads(r.output)] == names
        outs[workers] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert len(outs["1"]) == 4 and outs["1"] == outs["2"]


def test_align_without_json_writes_the_same_faces(faces_dir, tmp_path):
    """Without --json the quality measures are not taken (nothing shows them): the same files, the same
    summary line."""
    names = ["2008_001322.jpg", "dogs.jpg"]
    outs = {}
    for mode in ("--json", None):
        out = tmp_path / f"out{bool(mode)}"
        args = ["align", *(faces_dir / n for n in names), "--out", out, "--size", "64", "--workers", "1"]
        r = _run(*args, *([mode] if mode else []))
        assert r.exit_code == 0, r.output
        outs[mode] = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "3 faces from 2 photos written to" in r.output
    assert len(outs["--json"]) == 3 and outs["--json"] == outs[None]
