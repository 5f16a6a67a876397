"""`ghosts pack`: a folder of prepared images -> a verified archive; clear errors naming the offending file."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from curation.catalog.errors import GhostsError
from curation.datasets.format import archive_name
from curation.datasets.pack import ordered_map, pack_folder
from curation.datasets.reader import open_archive
from curation.datasets.verify import verify_archive
from flows.cli import main
from tests.curation.test_archive import photo_crops


def run(*args):
    return CliRunner().invoke(main, list(map(str, args)), catch_exceptions=False)


@pytest.fixture
def folder(tmp_path, faces_dir):
    """Eight 64 px squares in the shapes users bring: PNG, JPEG with EXIF rotation, RGBA, palette, grey, nested."""
    d = tmp_path / "prepared"
    (d / "sub").mkdir(parents=True)
    crops = photo_crops(faces_dir, 8)
    for i in range(4):
        Image.fromarray(crops[i]).save(d / f"a{i}.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    Image.fromarray(crops[4]).save(d / "b_rotated.jpg", quality=95, exif=exif.tobytes())
    Image.fromarray(crops[5]).convert("RGBA").save(d / "c_rgba.png")
    Image.fromarray(crops[6]).convert("P", palette=Image.Palette.ADAPTIVE).save(d / "d_palette.png")
    Image.fromarray(crops[7]).convert("L").save(d / "sub" / "e_grey.png")
    (d / "README.txt").write_text("not an image")
    return d


def test_pack_folder_gives_a_verified_archive(folder, tmp_path, faces_dir):
    out = tmp_path / "out" / "faces.zip"
    r = pack_folder(folder, out, progress=False)
    assert (r.info.count, r.info.resolution, r.info.mode, r.resized, r.cropped) == (8, 64, "RGB", 0, 0)
    rep = verify_archive(out)
    assert rep.ok, rep.faults
    crops = photo_crops(faces_dir, 8)
    with open_archive(out) as arc:
        prov = arc.provenance
        assert [p["original_path"] for p in prov] == [
            "a0.png",
            "a1.png",
            "a2.png",
            "a3.png",
            "b_rotated.jpg",
            "c_rgba.png",
            "d_palette.png",
            "sub/e_grey.png",
        ]
        arrays = [a for _, a, _ in arc.iter(as_array=True)]
        for i in range(4):  # lossless sources come through exactly
            np.testing.assert_array_equal(arrays[i], crops[i])
        # The EXIF-rotated JPEG is stored upright: it matches the crop turned 90 degrees clockwise.
        turned = np.rot90(crops[4], k=-1).astype(float)
        assert np.abs(arrays[4] - turned).mean() < 6 < np.abs(arrays[4] - crops[4].astype(float)).mean()
        assert arrays[7].shape == (64, 64, 3) and (arrays[7][..., 0] == arrays[7][..., 2]).all()
        assert prov[7]["conversion"] == "L->RGB" and prov[4]["conversion"].startswith("EXIF orientation 6")
        assert "every image file under the folder `prepared`" in arc.card


def test_all_grey_folder_packs_as_L(tmp_path, faces_dir):
    d = tmp_path / "grey"
    d.mkdir()
    for i, a in enumerate(photo_crops(faces_dir, 3)):
        Image.fromarray(a).convert("L").save(d / f"{i}.png")
    out = tmp_path / "grey.zip"
    assert pack_folder(d, out, progress=False).info.mode == "L"
    rep = verify_archive(out)
    assert rep.ok and rep.mode == "L"


@pytest.mark.parametrize(
    "bad, message",
    [
        ((64, 48), "b.png is 64x48, not square"),
        ((48, 48), "b.png is 48x48: the side must be a power of two"),
        ((32, 32), "b.png is 32x32 but a.png is 64x64: all images must be the same size"),
    ],
)
def test_pack_errors_name_the_first_offending_file(tmp_path, bad, message):
    d = tmp_path / "in"
    d.mkdir()
    Image.new("RGB", (64, 64), "red").save(d / "a.png")
    Image.new("RGB", bad, "blue").save(d / "b.png")
    Image.new("RGB", (30, 20), "blue").save(d / "c.png")  # also wrong, but later
    with pytest.raises(GhostsError, match=message):
        pack_folder(d, tmp_path / "x.zip", progress=False)
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob(".tmp-*"))
    r = run("pack", d, "--out", tmp_path / "x.zip")
    assert r.exit_code == 1 and message.split(":")[0] in r.output


def test_resolution_resizes_and_center_crop_squares(tmp_path, faces_dir):
    d = tmp_path / "in"
    d.mkdir()
    crops = photo_crops(faces_dir, 3, size=96)
    Image.fromarray(crops[0]).save(d / "a.png")  # 96: not a power of two
    Image.fromarray(crops[1][:, :80]).save(d / "b.png")  # 96x80: not square
    Image.fromarray(crops[2]).resize((50, 50)).save(d / "c.png")
    with pytest.raises(GhostsError, match="b.png is 80x96, not square"):
        pack_folder(d, tmp_path / "x.zip", resolution=32, progress=False)
    r = pack_folder(d, tmp_path / "x.zip", resolution=32, center_crop=True, progress=False)
    assert (r.info.resolution, r.resized, r.cropped) == (32, 3, 1)
    assert verify_archive(r.info.path).ok
    with pytest.raises(GhostsError, match="power of two"):
        pack_folder(d, tmp_path / "y.zip", resolution=48, progress=False)


def test_labels_from_the_folders_dataset_json(tmp_path, faces_dir):
    d = tmp_path / "in"
    d.mkdir()
    for i, a in enumerate(photo_crops(faces_dir, 3)):
        Image.fromarray(a).save(d / f"{i}.png")
    (d / "dataset.json").write_text(json.dumps({"labels": [["2.png", 0], ["0.png", 1], ["1.png", 2]]}))
    out = tmp_path / "l.zip"
    assert pack_folder(d, out, progress=False).info.labelled
    with open_archive(out) as arc:
        assert [lab for _, _, lab in arc] == [1, 2, 0]
    assert verify_archive(out).ok
    (d / "dataset.json").write_text(json.dumps({"labels": [["0.png", 1]]}))
    with pytest.raises(GhostsError, match="no class label .* for 1.png"):
        pack_folder(d, tmp_path / "m.zip", progress=False)


def test_worker_count_does_not_change_the_bytes(folder, tmp_path):
    a = pack_folder(folder, tmp_path / "1" / "f.zip", workers=1, progress=False)
    b = pack_folder(folder, tmp_path / "3" / "f.zip", workers=3, progress=False)
    assert a.info.sha256 == b.info.sha256


def test_existing_output_and_unreadable_inputs(folder, tmp_path):
    out = tmp_path / "f.zip"
    pack_folder(folder, out, progress=False)
    with pytest.raises(GhostsError, match="exists; choose another name or pass --overwrite"):
        pack_folder(folder, out, progress=False)
    pack_folder(folder, out, overwrite=True, progress=False)
    (folder / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(GhostsError, match="zz_broken.png: cannot read as an image"):
        pack_folder(folder, tmp_path / "g.zip", progress=False)
    with pytest.raises(GhostsError, match="must be a .zip"):
        pack_folder(folder, tmp_path / "g.tar", progress=False)


def test_cli_pack_then_verify(folder, tmp_path):
    out = tmp_path / "cli.zip"
    r = run("pack", folder, "--out", out, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["count"] == 8
    r = run("verify", out)
    assert r.exit_code == 0 and "\nok: " in "\n" + r.stdout
    r = run("verify", out, "--json")
    assert r.exit_code == 0 and json.loads(r.output)["ok"] is True
    data = out.read_bytes()
    out.write_bytes(data[: len(data) - 100])
    r = run("verify", out)
    assert r.exit_code == 1 and "failed verification" in r.output
    r = run("verify", out, "--json")
    assert r.exit_code == 1 and json.loads(r.output)["faults"]


def test_ordered_map_keeps_order_and_raises_in_turn():
    def slow_square(x):
        time.sleep(0.01 * ((7 - x) % 3))  # finish out of order
        return x * x, threading.get_ident()

    out = list(ordered_map(slow_square, range(20), workers=3, chunk=2))
    assert [v for v, _ in out] == [x * x for x in range(20)]
    assert len({t for _, t in out}) > 1  # it really ran on several threads

    def fail_at_5(x):
        if x == 5:
            raise ValueError("five")
        return x

    results = ordered_map(fail_at_5, range(50), workers=2, chunk=1)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="five"):
        next(results)
    assert archive_name(5) == "00000/img00000005.png"


def test_align_then_pack_then_verify_on_the_test_photos(tmp_path, faces_dir):
    """The standalone path: `ghosts align` the shared photos, `ghosts pack` the crops, `ghosts verify` the zip."""
    import json as _json

    from click.testing import CliRunner

    from flows.cli import main

    runner = CliRunner()
    aligned, archive = tmp_path / "aligned", tmp_path / "faces.zip"
    r = runner.invoke(
        main,
        [
            "align",
            str(faces_dir / "Tom_Cruise_avp_2014_4.jpg"),
            str(faces_dir / "2008_001322.jpg"),
            str(faces_dir / "dogs.jpg"),
            "--out",
            str(aligned),
            "--size",
            "64",
            "--workers",
            "1",
        ],
    )
    assert r.exit_code == 0, r.output
    crops = sorted(aligned.glob("*.png"))
    assert len(crops) >= 2 and not list(aligned.glob("dogs_*"))
    r = runner.invoke(main, ["pack", str(aligned), "--out", str(archive)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["verify", str(archive), "--json"])
    assert r.exit_code == 0, r.output
    report = _json.loads(r.output)
    assert report["ok"] is True and report.get("count", len(crops)) == len(crops)
