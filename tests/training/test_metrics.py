"""SWD always; FID/KID through a TorchScript network with the Inception calling convention."""

import numpy as np
import pytest
import torch

from tests.training.archives import blob_images, write_archive
from training.dataset import ImageArchive
from training.errors import TrainingError
from training.metrics import (
    INCEPTION_MISSING,
    compute_metrics,
    frechet_distance,
    kernel_inception_distance,
    laplacian_pyramid,
    swd_from_batches,
)
from training.networks import Generator


def batches(imgs, size=8):
    t = torch.from_numpy(np.ascontiguousarray(imgs.transpose(0, 3, 1, 2)))
    return list(t.split(size))


def test_laplacian_pyramid_levels():
    x = torch.full((2, 3, 32, 32), 0.5)
    levels = laplacian_pyramid(x, min_res=8)
    assert [lv.shape[-1] for lv in levels] == [32, 16, 8]
    # A flat image has no band-pass detail away from the borders; the low-pass residual keeps its value.
    assert levels[0][:, :, 4:-4, 4:-4].abs().max() < 1e-6 and torch.allclose(
        levels[-1], torch.full_like(levels[-1], 0.5)
    )


def test_swd_separates_distributions():
    a, b = blob_images(64, 32, seed=1), blob_images(64, 32, seed=2)
    noise = np.random.default_rng(0).integers(0, 256, a.shape, dtype=np.uint8)
    same = swd_from_batches(batches(a), batches(a))
    close = swd_from_batches(batches(a), batches(b))
    far = swd_from_batches(batches(a), batches(noise))
    assert set(same) == {"swd_32", "swd_16", "swd_avg"}
    # Patches are sampled at random, so even identical sets score above zero, but far below others.
    assert 0 < same["swd_avg"] < close["swd_avg"] < far["swd_avg"] / 2


def test_fid_and_kid_formulas():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 8))
    assert frechet_distance(x, x) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(x, x + 2) == pytest.approx(8 * 4, rel=1e-6)  # only the mean moved
    assert abs(kernel_inception_distance(x, rng.normal(size=(500, 8)), num_subsets=20)) < 0.05
    assert kernel_inception_distance(x, x + 1, num_subsets=20) > 0.5


class FakeInception(torch.nn.Module):
    """Same calling convention as the standard Inception TorchScript file: uint8 NCHW in, features out."""

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        x = img.float() / 255
        pooled = torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return torch.cat([pooled, pooled.square()], dim=1)


def test_metrics_driver_with_and_without_inception(tmp_path):
    ds = ImageArchive(write_archive(tmp_path / "a.zip", blob_images(12, 16)))
    G = Generator(z_dim=8, w_dim=8, img_resolution=16, channel_base=128, channel_max=8, mapping_layers=2)
    lines = []
    results = compute_metrics(
        ["swd", "fid", "kid"], G, ds, device="cpu", num_images=12, log=lines.append, progress=False
    )
    assert lines == [INCEPTION_MISSING] and [r.name for r in results] == ["swd"]
    path = tmp_path / "inception.pt"
    torch.jit.script(FakeInception()).save(str(path))
    results = compute_metrics(
        ["fid", "kid"], G, ds, device="cpu", inception=path, num_images=12, progress=False
    )
    by_name = {r.name: r for r in results}
    assert by_name["fid"].results["fid"] > 0 and by_name["fid"].num_fakes == 12
    assert np.isfinite(by_name["kid"].results["kid"])
    (tmp_path / "junk.pt").write_bytes(b"not torchscript")
    with pytest.raises(TrainingError, match="not a TorchScript"):
        compute_metrics(
            ["fid"], G, ds, device="cpu", inception=tmp_path / "junk.pt", num_images=4, progress=False
        )
