"""Latent tools on a tiny random generator: seeds, pictures, generation, morphs, style mixing, animations.

The helpers at the top (`tiny_generator`, `one_thread`) are shared by the other test_latent_* files.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from training.errors import TrainingError
from training.latent import (
    Drawing,
    generate_images,
    interpolate,
    lerp,
    make_grid,
    parse_floats,
    parse_seeds,
    save_grid,
    slerp,
    style_mix,
    write_animation,
    write_images,
    z_from_seed,
)
from training.latent.interpolate import interpolate_ws, path_times
from training.latent.mix import coarse_styles
from training.latent.seeds import parse_ints, read_seed_file, sample_ws, seed_ws
from training.networks import Generator

RES = 16


def tiny_generator(seed: int = 0, res: int = RES) -> Generator:
    """A random 16 px generator built in milliseconds, tuned to look like a trained one where it matters:
    outputs mostly inside [-1, 1], some noise strength, and a tracked mean w (so truncation does something)."""
    torch.manual_seed(seed)
    G = Generator(z_dim=16, w_dim=16, mapping_layers=2, img_resolution=res, channel_base=256, channel_max=16)
    with torch.no_grad():
        for block in G.synthesis.blocks:
            block.torgb.weight.mul_(0.3)
        for layer in G.synthesis.noise_layers():
            layer.noise_strength.fill_(0.1)
        G.mapping.w_avg.copy_(sample_ws(G, 1000).mean(0))
    return G.eval().requires_grad_(False)


@pytest.fixture(autouse=True)
def one_thread():
    # The CI machine has 2 shared cores; torch's thread pool fighting other processes is 30x slower.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def G():
    return tiny_generator()


# ------------------------------------------------------------------------------------------- seeds


def test_parse_seeds_ranges_lists_and_errors():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_seeds(" 3, 17 42 ") == [3, 17, 42]
    assert parse_seeds("5,5") == [5, 5]
    assert parse_ints("0-2", "layer") == [0, 1, 2]
    for bad, msg in [
        ("3-1", "backwards"),
        ("a", "cannot read seed 'a'"),
        ("", "no seeds"),
        ("4294967296", "too large"),
    ]:
        with pytest.raises(TrainingError, match=msg):
            parse_seeds(bad)
    assert parse_floats("-3,0,1.5") == [-3.0, 0.0, 1.5]
    for bad in ("x", "", "nan"):
        with pytest.raises(TrainingError, match="strength"):
            parse_floats(bad, "strength")


def test_seed_file_allows_comments_and_lines(tmp_path):
    f = tmp_path / "glasses.txt"
    f.write_text("# faces with glasses\n3, 5\n10-12  # a run\n")
    assert read_seed_file(f) == [3, 5, 10, 11, 12]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(TrainingError, match="lists no seeds"):
        read_seed_file(tmp_path / "empty.txt")


def test_z_of_a_seed_is_the_reference_randomstate_draw():
    assert np.array_equal(z_from_seed(42, 16), np.random.RandomState(42).randn(1, 16))


# ----------------------------------------------------------------------------------------- generate


def test_same_seed_same_picture_whatever_else_is_generated(G):
    a = generate_images(G, [3, 5, 7])
    b = generate_images(G, [7, 3])
    assert a[0].shape == (RES, RES, 3) and a[0].dtype == np.uint8
    assert np.array_equal(a[0], b[1]) and np.array_equal(a[2], b[0])
    assert not np.array_equal(a[0], a[1])
    # a freshly loaded copy of the same weights gives the same pictures
    G2 = Generator(**G.init_kwargs)
    G2.load_state_dict(G.state_dict())
    assert np.array_equal(generate_images(G2.eval(), [3])[0], a[0])


def test_noise_modes_and_truncation(G):
    const = generate_images(G, [1], Drawing(noise_mode="const"))[0]
    assert np.array_equal(const, generate_images(G, [1], Drawing(noise_mode="const"))[0])
    r1, r2 = generate_images(G, [1, 1], Drawing(noise_mode="random"))
    assert not np.array_equal(r1, r2)
    assert not np.array_equal(generate_images(G, [1], Drawing(noise_mode="none"))[0], const)
    # psi 0 puts every seed on the mean w: one face
    a, b = generate_images(G, [1, 2], Drawing(truncation_psi=0.0))
    assert np.array_equal(a, b)
    with pytest.raises(TrainingError, match="noise mode"):
        generate_images(G, [1], Drawing(noise_mode="fresh"))


def test_write_images_and_grid(G, tmp_path):
    seeds = [0, 1, 2, 12]
    pics = generate_images(G, seeds)
    paths = write_images(pics, seeds, tmp_path / "out", grid=True)
    assert [p.name for p in paths] == [
        "seed0000.png",
        "seed0001.png",
        "seed0002.png",
        "seed0012.png",
        "grid.png",
    ]
    assert np.array_equal(np.asarray(Image.open(paths[3])), pics[3])
    grid = np.asarray(Image.open(paths[-1]))
    assert grid.shape == (2 * RES, 2 * RES, 3)
    assert np.array_equal(grid[RES:, RES:], pics[3]) and np.array_equal(grid[:RES, RES:], pics[1])
    assert not list((tmp_path / "out").glob(".tmp-*"))  # atomic writes leave no temp files


def test_make_grid_layout_and_blank_cells():
    a, b = np.full((2, 3, 3), 10, np.uint8), np.full((2, 3, 3), 200, np.uint8)
    g = make_grid([None, a, b], cols=2, pad=1, background=255)
    assert g.shape == (2 * 2 + 1, 2 * 3 + 1, 3)
    assert (g[:2, :3] == 255).all() and (g[:2, 4:] == 10).all() and (g[3:, :3] == 200).all()
    with pytest.raises(TrainingError, match="same size"):
        make_grid([a, np.zeros((4, 4, 3), np.uint8)])


# -------------------------------------------------------------------------------------- interpolate


def test_lerp_and_slerp_end_on_their_keys():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0])
    assert torch.allclose(lerp(a, b, 0.25), torch.tensor([2.25, 0.25]))
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b, atol=1e-6)
    mid = slerp(a, b, 0.5)
    assert torch.allclose(mid.norm(), torch.tensor(2.0))  # length interpolated linearly
    assert torch.allclose(mid / mid.norm(), torch.tensor([1.0, 1.0]) / 2**0.5)  # angle halved
    # nearly parallel keys fall back to the straight line instead of dividing by zero
    assert torch.isfinite(slerp(a, a * 2, 0.5)).all() and torch.allclose(slerp(a, a * 2, 0.5), a * 1.5)


def test_path_frame_counts():
    assert len(path_times(3, 4, loop=False)) == 9 and path_times(3, 4, loop=False)[-1] == (1, 1.0)
    assert len(path_times(3, 4, loop=True)) == 12 and path_times(3, 4, loop=True)[-1] == (2, 0.75)
    with pytest.raises(TrainingError, match="frames"):
        path_times(3, 0, loop=False)


@pytest.mark.parametrize("space", ["w", "z"])
def test_morph_starts_and_ends_on_the_seeds(G, space):
    seeds = [3, 17, 42]
    keys = generate_images(G, seeds)
    frames = interpolate(G, seeds, frames=4, space=space)
    assert len(frames) == 9
    assert np.array_equal(frames[0], keys[0]) and np.array_equal(frames[4], keys[1])
    assert np.array_equal(frames[-1], keys[2])
    assert not np.array_equal(frames[2], keys[0]) and not np.array_equal(frames[2], keys[1])
    looped = interpolate(G, seeds, frames=4, space=space, loop=True)
    assert len(looped) == 12 and np.array_equal(looped[8], keys[2]) and np.array_equal(looped[0], keys[0])


def test_w_morph_is_a_straight_line_and_z_morph_is_not(G):
    ws = interpolate_ws(G, [1, 2], frames=4, space="w")
    assert torch.allclose(ws[2], (ws[0] + ws[4]) / 2, atol=1e-6)
    wz = interpolate_ws(G, [1, 2], frames=4, space="z")
    assert torch.allclose(wz[0], ws[0]) and torch.allclose(wz[4], ws[4])
    assert not torch.allclose(wz[2], ws[2], atol=1e-3)
    with pytest.raises(TrainingError, match="two seeds"):
        interpolate_ws(G, [1], frames=4)


@pytest.mark.parametrize("space", ["w", "z"])
def test_morph_draws_as_the_drawing_says(G, space):
    # psi 0 maps every seed, and every point between them, to the mean w: each frame is generate's psi-0 face
    drawing = Drawing(truncation_psi=0.0)
    flat = generate_images(G, [3], drawing)[0]
    frames = interpolate(G, [3, 17], frames=2, space=space, drawing=drawing)
    assert all(np.array_equal(f, flat) for f in frames)
    assert not np.array_equal(interpolate(G, [3, 17], frames=2, space=space)[1], flat)


# ------------------------------------------------------------------------------------------- mixing


def cell_of(grid, r, c):
    return grid[r * RES : (r + 1) * RES, c * RES : (c + 1) * RES]


def test_style_mix_grid(G):
    rows, cols = [1, 2], [3, 4, 5]
    grid = style_mix(G, rows, cols, styles=[0, 1])
    assert grid.shape == (3 * RES, 4 * RES, 3)
    cell = lambda r, c: cell_of(grid, r, c)
    assert (cell(0, 0) == 0).all()
    col_pics, row_pics = generate_images(G, cols), generate_images(G, rows)
    assert all(np.array_equal(cell(0, c + 1), col_pics[c]) for c in range(3))
    assert all(np.array_equal(cell(r + 1, 0), row_pics[r]) for r in range(2))
    mixed = cell(1, 1)
    assert not np.array_equal(mixed, row_pics[0]) and not np.array_equal(mixed, col_pics[0])
    # taking every layer from the column seed gives the column seed's picture
    every = style_mix(G, rows, cols, styles=list(range(G.num_ws)))
    assert np.array_equal(every[RES : 2 * RES, RES : 2 * RES], col_pics[0])
    with pytest.raises(TrainingError, match="layers 0-5"):
        style_mix(G, rows, cols, styles=[0, 6])
    # the drawing reaches every cell: psi 0 gives the one mean face everywhere but the blank corner
    flat = style_mix(G, rows, cols, styles=[0, 1], drawing=Drawing(truncation_psi=0.0))
    mean_face = generate_images(G, [1], Drawing(truncation_psi=0.0))[0]
    assert all(np.array_equal(cell_of(flat, r, c), mean_face) for r in range(3) for c in range(4) if r or c)


def test_default_styles_are_the_coarse_layers(G):
    assert G.num_ws == 6 and coarse_styles(G) == [0, 1, 2, 3, 4]  # 4, 8 and 16 px
    big = Generator(z_dim=4, w_dim=4, mapping_layers=1, img_resolution=128, channel_base=256, channel_max=4)
    assert coarse_styles(big) == list(range(7))  # the reference 0-6: 4 to 32 px


def test_mapping_per_seed_matches_batched_mapping(G):
    ws = seed_ws(G, [4, 9])
    z = torch.from_numpy(np.concatenate([z_from_seed(4, 16), z_from_seed(9, 16)])).float()
    assert torch.allclose(ws, G.mapping(z, None), atol=1e-6)


# ---------------------------------------------------------------------------------------- animation


def _moving_frames(n=6, size=16):
    frames = []
    for i in range(n):
        f = np.zeros((size, size, 3), np.uint8)
        f[:, i * 2 : i * 2 + 3] = (255, 128, 0)
        frames.append(f)
    return frames


def test_gif_round_trip(tmp_path):
    frames = _moving_frames()
    path = write_animation(frames, tmp_path / "m.gif", fps=25)
    with Image.open(path) as im:
        assert im.n_frames == len(frames) and im.info.get("loop") == 0
        im.seek(3)
        assert np.abs(np.asarray(im.convert("RGB")).astype(int) - frames[3]).max() <= 8


def test_mp4_round_trip(tmp_path):
    import imageio_ffmpeg

    frames = _moving_frames(8, size=15)  # odd size: padded to even for H.264
    path = write_animation(frames, tmp_path / "m.mp4", fps=10)
    head = path.read_bytes()[:12]
    assert head[4:8] == b"ftyp"
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert tuple(meta["size"]) == (16, 16)
    assert sum(1 for _ in reader) == len(frames)


def test_animation_errors(tmp_path):
    with pytest.raises(TrainingError, match=r"\.gif or \.mp4"):
        write_animation(_moving_frames(), tmp_path / "m.avi")
    with pytest.raises(TrainingError, match="no frames"):
        write_animation([], tmp_path / "m.gif")
    assert not list(tmp_path.iterdir())


def test_save_grid_is_a_png(tmp_path):
    p = save_grid(_moving_frames(4), tmp_path / "g.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(p.read_bytes())).size == (32, 32)
