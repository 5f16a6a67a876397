"""FIR resampling and the twice-differentiable grid sampler that R1-through-augmentation relies on."""

import pytest
import torch
import torch.nn.functional as F

from training.ops import affine_grid, grid_sample_bilinear, setup_filter, upfirdn2d

FIR = setup_filter([1, 3, 3, 1])


def test_up_and_down_sampling_shapes_and_dc_gain():
    x = torch.full((2, 3, 8, 8), 0.7)
    up = upfirdn2d(x, FIR, up=2, centered=True)
    down = upfirdn2d(x, FIR, down=2, centered=True)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    # A constant image stays constant away from the zero-padded border.
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 0.7), atol=1e-6)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.full_like(down[:, :, 1:-1, 1:-1], 0.7), atol=1e-6)
    with pytest.raises(ValueError, match="up or down, not both"):
        upfirdn2d(x, FIR, up=2, down=2, centered=True)


def test_upfirdn2d_is_a_true_convolution():
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    f = setup_filter([1.0, 2.0, 4.0], normalize=False)
    y = upfirdn2d(x, f, padding=1)
    # The impulse response of a convolution is the (separable) filter itself, not its mirror image.
    assert torch.allclose(y[0, 0, 2, 1:4], torch.tensor([1.0, 2.0, 4.0]) * 2)
    assert torch.allclose(y[0, 0, 1:4, 2], torch.tensor([1.0, 2.0, 4.0]) * 2)


def test_grid_sampler_matches_torch_grid_sample():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 7)
    theta = torch.tensor([[[0.9, 0.2, 0.1], [-0.3, 1.1, -0.2]], [[1.3, 0.0, 0.4], [0.1, 0.7, 0.3]]])
    grid = affine_grid(theta, (2, 3, 11, 6))
    assert torch.allclose(grid, F.affine_grid(theta, [2, 3, 11, 6], align_corners=False), atol=1e-6)
    ours = grid_sample_bilinear(x, grid)
    ref = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_gradgradcheck_grid_sampler():
    torch.manual_seed(1)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([[[0.8, 0.3, 0.05], [-0.2, 0.9, 0.1]]], dtype=torch.float64)
    grid = affine_grid(theta, (1, 2, 6, 6))
    assert torch.autograd.gradcheck(lambda a: grid_sample_bilinear(a, grid), (x,))
    assert torch.autograd.gradgradcheck(lambda a: grid_sample_bilinear(a, grid), (x,))


def test_gradgradcheck_fir_resampling():
    x = torch.randn(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
    f = FIR.double()
    assert torch.autograd.gradgradcheck(
        lambda a: upfirdn2d(upfirdn2d(a, f, up=2, centered=True), f, down=2, centered=True), (x,)
    )
