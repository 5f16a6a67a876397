"""The latent commands end to end through `ghosts`, on a checkpoint of a tiny generator in a tmp folder."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from flows.cli import main
from tests.training.test_latent import RES, one_thread, tiny_generator  # noqa: F401 - one_thread is autouse
from training.checkpoint import load_generator, save_snapshot
from training.latent import Drawing, generate_images


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    return save_snapshot(tmp_path_factory.mktemp("run") / "network-snapshot-000000", G=tiny_generator(seed=3))


def ghosts(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result


def test_generate_writes_one_png_per_seed_and_a_grid(snapshot, tmp_path):
    r = ghosts(
        "generate",
        "--network",
        snapshot.with_suffix(".json"),
        "--seeds",
        "0-3,9",
        "--trunc",
        "0.7",
        "--grid",
        "--outdir",
        tmp_path / "out",
    )
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "grid.png",
        "seed0000.png",
        "seed0001.png",
        "seed0002.png",
        "seed0003.png",
        "seed0009.png",
    ]
    want = generate_images(load_generator(snapshot), [9], Drawing(0.7))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "seed0009.png")), want)
    assert Image.open(tmp_path / "out" / "grid.png").size == (3 * RES, 2 * RES)


def test_interpolate_gif_and_mp4(snapshot, tmp_path):
    r = ghosts(
        "interpolate",
        "--network",
        snapshot,
        "--seeds",
        "3,17,42",
        "--frames",
        "3",
        "--loop",
        "--out",
        tmp_path / "morph.gif",
    )
    assert r.exit_code == 0, r.output
    with Image.open(tmp_path / "morph.gif") as im:
        assert im.size == (RES, RES) and im.n_frames == 9
    r = ghosts(
        "interpolate",
        "--network",
        snapshot,
        "--seeds",
        "3,17",
        "--frames",
        "4",
        "--space",
        "z",
        "--out",
        tmp_path / "morph.mp4",
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "morph.mp4").read_bytes()[4:8] == b"ftyp"


def test_style_mix_grid(snapshot, tmp_path):
    r = ghosts(
        "style-mix",
        "--network",
        snapshot,
        "--rows",
        "1,2,3",
        "--cols",
        "4,5",
        "--styles",
        "0-2",
        "--out",
        tmp_path / "mix.png",
    )
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "mix.png").size == (3 * RES, 4 * RES)


def test_direction_fit_and_apply(snapshot, tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "pos" / "seeds.txt").write_text("0-5\n")
    (tmp_path / "neg.txt").write_text("6-11\n")
    r = ghosts(
        "direction",
        "fit",
        "--network",
        snapshot,
        "--positive",
        tmp_path / "pos",
        "--negative",
        tmp_path / "neg.txt",
        "--out",
        tmp_path / "smile.npy",
    )
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "smile.npy", allow_pickle=False).shape[0] == 6
    r = ghosts(
        "direction",
        "apply",
        "--network",
        snapshot,
        "--seeds",
        "20,21",
        "--direction",
        tmp_path / "smile.npy",
        "--strengths",
        "-2,0,2",
        "--out",
        tmp_path / "grid.png",
    )
    assert r.exit_code == 0, r.output
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape == (2 * RES, 3 * RES, 3)
    originals = generate_images(load_generator(snapshot), [20, 21])
    assert np.array_equal(grid[:RES, RES : 2 * RES], originals[0])
    assert np.array_equal(grid[RES:, RES : 2 * RES], originals[1])


def test_project_no_align_writes_its_files(snapshot, tmp_path):
    target = generate_images(load_generator(snapshot), [7])[0]
    photo = np.kron(target, np.ones((4, 4, 1), np.uint8))  # 64 px, framed by 8 px bars left and right
    photo = np.pad(photo, ((0, 0), (8, 8), (0, 0)), constant_values=255)
    Image.fromarray(photo).save(tmp_path / "me.png")
    r = ghosts(
        "project",
        "--network",
        snapshot,
        "--target",
        tmp_path / "me.png",
        "--no-align",
        "--steps",
        "6",
        "--video",
        "gif",
        "--outdir",
        tmp_path / "proj",
    )
    assert r.exit_code == 0, r.output
    names = {p.name for p in (tmp_path / "proj").iterdir()}
    assert {"target.png", "proj.png", "projected_w.npz", "proj.gif"} <= names
    # centre-cropped (the bars go) and Lanczos-resized back to 16 px: close to the original picture
    got = np.asarray(Image.open(tmp_path / "proj" / "target.png")).astype(int)
    assert got.shape == (RES, RES, 3) and np.abs(got - target).max() <= 12
    with np.load(tmp_path / "proj" / "projected_w.npz", allow_pickle=False) as data:
        assert data["w"].shape == (1, 6, 16)


@pytest.mark.parametrize(
    "args, message",
    [
        (["generate", "--seeds", "1-x", "--outdir", "o"], "cannot read seed '1-x'"),
        (["generate", "--seeds", "1", "--trunc", "5", "--outdir", "o"], "--trunc 5.0 is out of range"),
        (["interpolate", "--seeds", "1,2", "--out", "m.avi"], "write a .gif or an .mp4"),
        (["interpolate", "--seeds", "1", "--out", "m.gif"], "at least two seeds"),
        (["style-mix", "--rows", "1", "--cols", "2", "--styles", "0-40", "--out", "m.png"], "layers 0-5"),
        (["project", "--target", "missing.jpg", "--outdir", "p"], "target photo not found"),
        (
            ["direction", "apply", "--seeds", "1", "--direction", "missing.npy", "--out", "g.png"],
            "direction not found",
        ),
        (["generate", "--seeds", "1", "--outdir", "o", "--class", "2"], "unconditional"),
    ],
)
def test_user_errors_exit_1_with_a_message(snapshot, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(
        main,
        [
            args[0],
            *(args[1:2] if args[0] == "direction" else []),
            "--network",
            str(snapshot),
            *(args[2:] if args[0] == "direction" else args[1:]),
        ],
    )
    assert r.exit_code == 1, r.output
    assert message in r.output


def test_missing_network_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(
        main,
        ["generate", "--network", str(tmp_path / "nope"), "--seeds", "1", "--outdir", str(tmp_path / "o")],
    )
    assert r.exit_code == 1 and "snapshot not found" in r.output


def test_project_aligns_a_real_photo_or_says_there_is_no_face(snapshot, faces_dir, tmp_path):
    r = ghosts(
        "project",
        "--network",
        snapshot,
        "--target",
        faces_dir / "Tom_Cruise_avp_2014_4.jpg",
        "--steps",
        "3",
        "--outdir",
        tmp_path / "proj",
    )
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "proj" / "target.png").size == (RES, RES)
    assert (tmp_path / "proj" / "proj.mp4").exists()
    r = CliRunner().invoke(
        main,
        [
            "project",
            "--network",
            str(snapshot),
            "--target",
            str(faces_dir / "dogs.jpg"),
            "--outdir",
            str(tmp_path / "dogs"),
        ],
    )
    assert r.exit_code == 1
    assert "no face found in dogs.jpg; use --no-align for an already aligned image" in r.output
    assert not (tmp_path / "dogs").exists()
