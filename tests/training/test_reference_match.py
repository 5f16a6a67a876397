"""Behaviours that follow the reference implementation (NVlabs stylegan2-ada-pytorch), each checked where the
old ghosts behaviour differed (issue 13 item 6): the D skip is never clamped, non-finite gradients are replaced
before every optimiser step, path length uses the first latents of the batch, and the augment pipe's skipped
geometric round trip at p = 0 is the identity on real photos."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from training.augment import AugmentPipe
from training.loop import _sync_grads
from training.loss import SharedRandom, StyleGAN2Loss
from training.networks import DiscriminatorBlock, Generator

FACES = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "faces"
if not FACES.is_dir():
    FACES = Path("/work/shared/testdata/faces")


def _block_with_only_the_skip(arch_version: int, clamp: float) -> DiscriminatorBlock:
    block = DiscriminatorBlock(4, 4, 4, 3, reduced=True, conv_clamp=clamp, arch_version=arch_version)
    with torch.no_grad():  # the main branch outputs zeros, so the block's output is its skip's
        block.conv1.weight.zero_()
        block.conv1.bias.zero_()
    return block


def test_discriminator_skip_is_not_clamped():
    torch.manual_seed(0)
    clamp = 1.0
    block = _block_with_only_the_skip(2, clamp)
    x = torch.randn(2, 4, 8, 8) * 50
    out = block(x, x).detach()
    unclamped = block.skip(x, gain=math.sqrt(0.5), clamp=False).detach()
    assert float(unclamped.abs().max()) > 10 * clamp  # the skip's output exceeds the clamp ...
    torch.testing.assert_close(out, unclamped)  # ... and reaches the next block unclamped


def test_format_version_1_keeps_its_clamped_skip_in_reduced_precision():
    torch.manual_seed(0)
    clamp = 1.0
    block = _block_with_only_the_skip(1, clamp)
    x = torch.randn(2, 4, 8, 8) * 50
    out = block(x, x, reduced_precision=True).detach()
    assert float(out.abs().max()) <= clamp * math.sqrt(0.5) * 1.01
    assert float(block(x, x).detach().abs().max()) > 10 * clamp  # fp32: version 1 never clamped


def test_non_finite_gradients_are_replaced_before_the_step():
    p = torch.nn.Parameter(torch.zeros(5))
    p.grad = torch.tensor([float("nan"), float("inf"), float("-inf"), 2.5, -1.0])
    untouched = torch.nn.Parameter(torch.zeros(2))  # no gradient: left alone
    _sync_grads([p, untouched], world_size=1)
    assert p.grad.tolist() == [0.0, 1e5, -1e5, 2.5, -1.0]
    assert untouched.grad is None


def test_path_length_uses_the_first_latents_of_the_batch():
    torch.manual_seed(0)
    G = Generator(z_dim=4, w_dim=4, mapping_layers=1, img_resolution=8, channel_base=32, channel_max=4)
    loss = StyleGAN2Loss(G, None, None, SharedRandom(1), style_mixing_prob=0)
    z = torch.randn(6, 4)
    z[3:] = float("nan")  # the second half: any of it used makes the penalty NaN
    stats = loss.accumulate_G_reg(z, None)
    assert stats["Loss/pl_penalty"].shape == (3,)  # batch 6 // pl_batch_shrink 2
    assert torch.isfinite(stats["Loss/pl_penalty"]).all()
    one = StyleGAN2Loss(G, None, None, SharedRandom(1), style_mixing_prob=0).accumulate_G_reg(z[:1], None)
    assert one["Loss/pl_penalty"].shape == (1,)  # a one-sample round still regularises one sample


@pytest.mark.skipif(not FACES.is_dir(), reason="needs the shared test photos (../shared/testdata/faces)")
def test_augment_geometric_round_trip_at_p0_is_the_identity_on_real_photos():
    """The reference resamples at p = 0 too (identity transform); ghosts skips it. On real photos that round
    trip changes pixels by float rounding only (measured 6e-6 max abs at 64 px), so skipping changes nothing
    D sees; benchmarks/augment_identity.py measures the time it saves."""
    files = sorted(FACES.glob("*.jpg"))[:4]
    imgs = [np.asarray(Image.open(f).convert("RGB").resize((64, 64)), dtype=np.float32) for f in files]
    x = torch.from_numpy(np.stack(imgs).transpose(0, 3, 1, 2) / 127.5 - 1)
    pipe = AugmentPipe.from_name("bgc")
    assert pipe(x) is x  # p = 0: skipped
    with torch.no_grad():
        trip = pipe.apply_geometric(x, torch.eye(3).expand(len(x), 3, 3))
    assert float((trip - x).abs().max()) < 1e-4
