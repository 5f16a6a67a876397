"""Projection: recovers a w the network itself made, lowers its loss, writes its files; both distances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.training.test_latent import RES, one_thread, tiny_generator  # noqa: F401 - one_thread is autouse
from training.errors import TrainingError
from training.latent import PixelStructuralDistance, load_vgg, project, save_projection, to_uint8
from training.latent.distance import ssim_map
from training.latent.project import learning_rate, noise_penalty, w_stats
from training.latent.seeds import seed_ws


@pytest.fixture(scope="module")
def G():
    return tiny_generator(seed=1)


@pytest.fixture(scope="module")
def known(G):
    """A target the network can draw exactly: seed 5's w with the network's constant noise."""
    w_true = seed_ws(G, [5])
    return w_true, to_uint8(G.synthesis(w_true, noise_mode="const"))[0]


def test_recovers_a_known_w(G, known):
    w_true, target = known
    w_avg, _ = w_stats(G)
    result = project(G, target, steps=100, optimize_noise=False)
    start = float((w_avg[0, 0] - w_true[0, 0]).norm())
    end = float((result.w[0] - w_true[0]).norm(dim=-1).max())
    assert result.w.shape == (1, G.num_ws, G.w_dim)
    assert end < 0.1 * start, (start, end)
    assert result.distances[-1] < 0.05 * result.distances[0]
    assert np.abs(result.image.astype(int) - target).mean() < 2  # the picture matches too


def test_loss_falls_in_expectation_with_noise_optimised(G, known):
    _, target = known
    result = project(G, target, steps=60)
    d = np.array(result.distances)
    blocks = d.reshape(6, 10).mean(1)
    assert (np.diff(blocks) <= 1e-6).all(), blocks
    assert d[-5:].mean() < 0.5 * d[:5].mean()
    assert len(result.losses) == 60 and all(t >= dd for t, dd in zip(result.losses, result.distances))
    # the noise images stay white: zero mean, unit variance, after every step
    assert len(result.noise) == len(G.synthesis.noise_layers())
    for n in result.noise:
        assert abs(float(n.mean())) < 1e-4 and abs(float(n.square().mean()) - 1) < 1e-3


def test_projection_is_deterministic_per_seed(G, known):
    _, target = known
    a = project(G, target, steps=8, w_avg_samples=500, seed=3)
    b = project(G, target, steps=8, w_avg_samples=500, seed=3)
    c = project(G, target, steps=8, w_avg_samples=500, seed=4)
    assert torch.equal(a.w, b.w) and a.losses == b.losses
    assert not torch.equal(a.w, c.w)


def test_files_are_written_as_stated(G, known, tmp_path):
    _, target = known
    result = project(G, target, steps=12, w_avg_samples=500, video_frames=5)
    assert len(result.frames) == 5  # every 3rd step of 12 (4 frames) and the final picture
    assert result.frames[0].shape == (RES, 2 * RES, 3)
    paths = save_projection(result, target, tmp_path / "proj", video="gif", options={"steps": 12})
    out = tmp_path / "proj"
    assert {p.name for p in out.iterdir()} == {
        "target.png",
        "proj.png",
        "projected_w.npz",
        "proj.gif",
        "loss.png",
        "projection.json",
    }
    assert paths["video"].name == "proj.gif"
    assert np.array_equal(np.asarray(Image.open(out / "target.png")), target)
    assert np.array_equal(np.asarray(Image.open(out / "proj.png")), result.image)
    with np.load(out / "projected_w.npz", allow_pickle=False) as data:
        assert data["w"].shape == (1, G.num_ws, G.w_dim) and data["w"].dtype == np.float32
        w = data["w"]
        assert np.array_equal(w, result.w.numpy())
        noise = [torch.from_numpy(data[k]) for k in sorted(data.files) if k.startswith("noise_")]
    # the saved latent and noise redraw proj.png exactly
    redrawn = G.synthesis(torch.from_numpy(w), noise_inputs=noise)
    assert np.array_equal(to_uint8(redrawn)[0], result.image)
    save_projection(result, target, tmp_path / "mp4")
    assert (tmp_path / "mp4" / "proj.mp4").read_bytes()[4:8] == b"ftyp"


def test_bad_targets_and_steps(G):
    with pytest.raises(TrainingError, match="16x16 RGB"):
        project(G, np.zeros((32, 32, 3), np.uint8), steps=2)
    with pytest.raises(TrainingError, match="steps"):
        project(G, np.zeros((RES, RES, 3), np.uint8), steps=0)


def test_schedule_and_noise_penalty():
    assert learning_rate(0.0, 0.1, 0.05, 0.25) == 0
    assert learning_rate(0.5, 0.1, 0.05, 0.25) == pytest.approx(0.1)
    assert learning_rate(0.99, 0.1, 0.05, 0.25) < 0.002
    g = torch.Generator().manual_seed(0)
    white = torch.randn(1, 1, 64, 64, generator=g)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 67, 67, generator=g), 4, stride=1)
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert float(noise_penalty([smooth])) > 100 * float(noise_penalty([white]))


def test_pixel_structural_distance():
    dist = PixelStructuralDistance()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    feats = dist.features(x)
    assert len(feats) == 3  # 32, 16, 8 px
    assert torch.allclose(dist.distance(x, feats), torch.zeros(2), atol=1e-6)
    near, far = x + 0.05 * torch.randn(x.shape, generator=g), torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    assert (dist.distance(near, feats) < dist.distance(far, feats)).all()
    assert torch.allclose(ssim_map((x + 1) / 2, (x + 1) / 2), torch.ones(1))


class _ReferenceLayoutVGG(torch.nn.Module):
    """A stand-in with the forward signature of the published LPIPS VGG16 TorchScript file."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

    def forward(
        self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False
    ) -> torch.Tensor:
        assert not resize_images and return_lpips
        f = self.conv(x / 255.0)
        return f.flatten(1) / torch.linalg.vector_norm(f.flatten(1), dim=1, keepdim=True)


class _PlainVGG(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x / 255.0))


@pytest.mark.parametrize("module, lpips", [(_ReferenceLayoutVGG, True), (_PlainVGG, False)])
def test_vgg_torchscript_file(G, known, tmp_path, module, lpips):
    path = tmp_path / "vgg16.pt"
    torch.manual_seed(0)
    torch.jit.script(module()).save(str(path))
    dist = load_vgg(path)
    assert bool(dist.lpips_kwargs) == lpips
    _, target = known
    x = torch.from_numpy(target).permute(2, 0, 1)[None].float() / 127.5 - 1
    assert float(dist.distance(x, dist.features(x))) == pytest.approx(0, abs=1e-9)
    result = project(G, target, steps=20, w_avg_samples=500, distance=dist, optimize_noise=False)
    assert result.distances[-1] < result.distances[0]


def test_vgg_file_errors(tmp_path):
    with pytest.raises(TrainingError, match="not found"):
        load_vgg(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(TrainingError, match="TorchScript"):
        load_vgg(tmp_path / "junk.pt")
    torch.jit.script(torch.nn.Linear(3, 2)).save(str(tmp_path / "linear.pt"))
    with pytest.raises(TrainingError, match="VGG16 feature extractor"):
        load_vgg(tmp_path / "linear.pt")
