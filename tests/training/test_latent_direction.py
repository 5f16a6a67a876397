"""Feature directions: loading latents, fitting (mean difference, logistic), saving, applying."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tests.training.test_latent import one_thread, tiny_generator  # noqa: F401 - one_thread is autouse
from training.errors import TrainingError
from training.latent import (
    Drawing,
    apply_direction,
    direction_grid,
    edit_ws,
    fit_direction,
    generate_images,
    load_direction,
    load_latents,
    save_direction,
)
from training.latent.seeds import sample_ws, seed_ws


@pytest.fixture(scope="module")
def G():
    return tiny_generator(seed=2)


def _write_npz(path, w):
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, w=w)
    path.write_bytes(buf.getvalue())


def test_load_latents_from_projections_and_seed_lists(G, tmp_path):
    pos = tmp_path / "glasses"
    _write_npz(pos / "alice" / "projected_w.npz", seed_ws(G, [1]).numpy())
    _write_npz(pos / "bob" / "projected_w.npz", seed_ws(G, [2]).numpy()[0, 0])  # a bare [w_dim] vector
    (pos / "more.txt").write_text("3-4\n")
    (pos / "notes.md").write_text("ignored\n")
    ws = load_latents(pos, G)
    assert ws.shape == (4, G.num_ws, G.w_dim)
    want = seed_ws(G, [1, 2, 3, 4])
    assert torch.allclose(ws, want[[0, 1, 2, 3]])  # sorted: alice, bob, more.txt
    assert torch.equal(load_latents(pos / "more.txt", G), seed_ws(G, [3, 4]))


def test_load_latents_errors(G, tmp_path):
    with pytest.raises(TrainingError, match="not found"):
        load_latents(tmp_path / "nope", G)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match="no latents in"):
        load_latents(tmp_path / "empty", G)
    _write_npz(tmp_path / "wrong" / "projected_w.npz", np.zeros((1, G.num_ws, G.w_dim + 1), np.float32))
    with pytest.raises(TrainingError, match="do not fit this network"):
        load_latents(tmp_path / "wrong", G)
    buf = io.BytesIO()
    np.savez(buf, z=np.zeros(3))
    (tmp_path / "nokey.npz").write_bytes(buf.getvalue())
    with pytest.raises(TrainingError, match="no array named 'w'"):
        load_latents(tmp_path / "nokey.npz", G)
    buf = io.BytesIO()
    np.savez(buf, w=np.array([{"a": 1}], dtype=object))
    (tmp_path / "pickled.npz").write_bytes(buf.getvalue())
    with pytest.raises(TrainingError, match="cannot read latents"):  # object arrays need pickle: refused
        load_latents(tmp_path / "pickled.npz", G)


def test_mean_direction_points_from_negative_to_positive_and_is_one_std_long(G):
    pos, neg = seed_ws(G, list(range(10))), seed_ws(G, list(range(10, 20)))
    d = torch.from_numpy(fit_direction(G, pos, neg, "mean"))
    assert d.shape == (G.num_ws, G.w_dim) and d.dtype == torch.float32
    assert torch.allclose(d, d[:1].expand_as(d))  # shared-w latents give a shared-w direction
    diff = pos.mean(0) - neg.mean(0)
    cos = float((diff.flatten() @ d.flatten()) / (diff.norm() * d.norm()))
    assert cos == pytest.approx(1, abs=1e-5)
    # strength 1 moves a latent one standard deviation of W along the direction
    unit = d / d.norm()
    spread = float((sample_ws(G, 10_000, seed=321) @ unit.sum(0)).std())
    assert float(d.norm()) == pytest.approx(spread, rel=1e-4)


def test_logistic_direction_finds_the_separating_axis(G):
    g = torch.Generator().manual_seed(0)
    axis = torch.randn(G.w_dim, generator=g)
    axis /= axis.norm()
    base = seed_ws(G, list(range(40)))
    shift = (2.0 * axis).expand(G.num_ws, -1)
    pos, neg = base[:20] + shift, base[20:] - shift
    d = torch.from_numpy(fit_direction(G, pos, neg, "logistic"))
    cos = float(d[0] @ axis / d[0].norm())
    assert cos > 0.8, cos
    with pytest.raises(TrainingError, match="too few"):
        fit_direction(G, pos[:1], neg, "logistic")


def test_identical_sets_give_a_clear_error(G):
    ws = seed_ws(G, [1, 2, 3])
    with pytest.raises(TrainingError, match="indistinguishable"):
        fit_direction(G, ws, ws.clone(), "mean")
    with pytest.raises(TrainingError, match="method"):
        fit_direction(G, ws, ws, "svm")


def test_save_and_load_round_trip(G, tmp_path):
    d = np.random.RandomState(0).randn(G.num_ws, G.w_dim).astype(np.float32)
    path = save_direction(d, tmp_path / "glasses.npy", info={"method": "mean"})
    assert np.array_equal(np.load(path, allow_pickle=False), d)
    assert '"method": "mean"' in (tmp_path / "glasses.json").read_text()
    assert torch.equal(load_direction(path, G), torch.from_numpy(d))
    np.save(tmp_path / "flat.npy", d[0])
    assert torch.equal(load_direction(tmp_path / "flat.npy", G), torch.from_numpy(d[0]).expand(G.num_ws, -1))
    np.save(tmp_path / "bad.npy", d[:, :3])
    with pytest.raises(TrainingError, match="does not fit this network"):
        load_direction(tmp_path / "bad.npy", G)
    d[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", d)
    with pytest.raises(TrainingError, match="NaN"):
        load_direction(tmp_path / "nan.npy", G)
    with pytest.raises(TrainingError, match="not found"):
        load_direction(tmp_path / "missing.npy", G)
    with pytest.raises(TrainingError, match=".npy"):
        save_direction(d, tmp_path / "x.npz")


def test_strength_zero_gives_exactly_the_original_pictures(G):
    seeds = [4, 8, 15]
    d = torch.from_numpy(fit_direction(G, seed_ws(G, [0, 1, 2]), seed_ws(G, [3, 5, 6])))
    for trunc in (1.0, 0.7):
        rows = apply_direction(G, seeds, d, [-3, 0, 2], drawing=Drawing(trunc))
        originals = generate_images(G, seeds, Drawing(trunc))
        assert all(np.array_equal(row[1], orig) for row, orig in zip(rows, originals))
        assert all(
            not np.array_equal(row[0], orig) and not np.array_equal(row[2], orig)
            for row, orig in zip(rows, originals)
        )
    grid = direction_grid(rows)
    assert grid.shape == (3 * 16, 3 * 16, 3)


def test_edit_limited_to_layers(G):
    ws = seed_ws(G, [1])
    d = torch.ones(G.num_ws, G.w_dim)
    edited = edit_ws(ws, d, 2.0, layers=[0, 1])
    assert torch.allclose(edited[0, :2], ws[0, :2] + 2) and torch.equal(edited[0, 2:], ws[0, 2:])
    with pytest.raises(TrainingError, match="layer 9"):
        apply_direction(G, [1], d, [1.0], layers=[9])
