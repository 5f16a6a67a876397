"""The ADA pipeline: identity at p=0, each transform on its own at p=1, the controller, and the second
derivative R1 needs."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.augment import AUGPIPES, AugmentPipe, AugmentSpec, update_p
from training.errors import TrainingError


def smooth_images(n=6, res=32, seed=0):
    """Band-limited test images (bicubic upsampling of 8x8 noise), where resampling is nearly exact."""
    g = torch.Generator().manual_seed(seed)
    return F.interpolate(
        torch.rand(n, 3, 8, 8, generator=g) * 2 - 1, size=res, mode="bicubic", align_corners=False
    )


def pipe(p=1.0, **multipliers):
    a = AugmentPipe(AugmentSpec(**multipliers))
    a.p.fill_(p)
    return a


def closest(candidates, y):
    return min((c - y).abs().max().item() for c in candidates)


def test_p_zero_is_exactly_the_identity():
    x = smooth_images()
    a = AugmentPipe.from_name("bgc")
    assert torch.equal(a(x), x)


def test_identity_matrix_resampling_leaks_nothing():
    # The reflect-pad / sym6 2x upsample / sample / downsample chain with an identity matrix returns the image.
    x = torch.rand(2, 3, 16, 16) * 2 - 1  # even white noise survives: sym6 is an orthogonal wavelet
    y = AugmentPipe().apply_geometric(x, torch.eye(3).expand(2, 3, 3))
    assert (y - x).abs().max() < 1e-4


def test_xflip_gives_the_image_or_its_mirror():
    torch.manual_seed(0)
    x = smooth_images(8)
    y = pipe(xflip=1)(x)
    errs = [closest([x[i], x[i].flip(-1)], y[i]) for i in range(8)]
    assert max(errs) < 0.1
    flipped = [(y[i] - x[i]).abs().max() > 0.1 for i in range(8)]
    assert 0 < sum(flipped) < 8  # each image flips with probability 1/2


def test_rotate90_gives_one_of_the_four_rotations():
    torch.manual_seed(1)
    x = smooth_images(8)
    y = pipe(rotate90=1)(x)
    assert max(closest([torch.rot90(x[i], k, (1, 2)) for k in range(4)], y[i]) for i in range(8)) < 0.1


def test_integer_translation_is_exact_with_reflect_padding():
    torch.manual_seed(2)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    y = pipe(xint=1)(x)
    m = 4  # xint_max 0.125 of 32 px
    padded = F.pad(x, [m, m, m, m], mode="reflect")
    for i in range(6):
        shifts = [
            padded[i, :, m - dy : m - dy + 32, m - dx : m - dx + 32]
            for dx in range(-m, m + 1)
            for dy in range(-m, m + 1)
        ]
        assert closest(shifts, y[i]) < 1e-4


@pytest.mark.parametrize("name", ["scale", "rotate", "aniso", "xfrac"])
def test_each_geometric_transform_builds_the_right_matrix(name):
    torch.manual_seed(3)
    x = smooth_images(64)
    a = pipe(**{name: 1})
    g = a.geometric_matrix(x)
    lin, t = g[:, :2, :2], g[:, :2, 2]
    assert torch.allclose(g[:, 2], torch.tensor([0.0, 0.0, 1.0]).expand(64, 3))
    if name == "scale":  # isotropic, log2-normal with std 0.2
        assert torch.allclose(lin[:, 0, 1], torch.zeros(64)) and torch.allclose(lin[:, 0, 0], lin[:, 1, 1])
        assert torch.allclose(t, torch.zeros_like(t))
        assert 0.1 < torch.log2(lin[:, 0, 0]).std() < 0.3
    if name == "rotate":  # pure rotation, angle uniform in (-pi, pi)
        assert torch.allclose(torch.det(lin), torch.ones(64), atol=1e-5)
        assert torch.allclose(lin @ lin.transpose(1, 2), torch.eye(2).expand(64, 2, 2), atol=1e-5)
    if name == "aniso":  # x and y scaled by s and 1/s
        assert torch.allclose(lin[:, 0, 0] * lin[:, 1, 1], torch.ones(64), atol=1e-5)
        assert 0.1 < torch.log2(lin[:, 0, 0]).std() < 0.3
    if name == "xfrac":  # translation with std 0.125 of the image size
        assert torch.allclose(lin, torch.eye(2).expand(64, 2, 2))
        assert 0.08 < (t / 32).std() < 0.17
    y = a(x[:4])
    assert y.shape == x[:4].shape and torch.isfinite(y).all()


def test_geometric_resampling_matches_direct_bilinear_sampling_in_the_interior():
    torch.manual_seed(4)
    x = smooth_images(4, res=32)
    a = pipe(rotate=1)
    g = a.geometric_matrix(x)
    y = a.apply_geometric(x, g)
    # Direct (no 2x upsampling) bilinear sampling with the same matrix, in normalised coordinates.
    theta = g[:, :2, :].clone()
    theta[:, :, 2] /= 15.5  # pixels (centre origin) -> normalised units of (W-1)/2 ~ W/2 for grid_sample
    direct = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    inner = (slice(None), slice(None), slice(10, 22), slice(10, 22))
    assert (y[inner] - direct[inner]).abs().mean() < 0.05


def test_colour_transforms():
    torch.manual_seed(5)
    x = smooth_images(8)
    luma = lambda im: im.mean(dim=1)

    y = pipe(brightness=1)(x)
    d = (y - x).flatten(1)
    assert torch.allclose(d, d[:, :1].expand_as(d), atol=1e-5)  # one offset per image
    assert 0.1 < d[:, 0].std() < 0.4

    y = pipe(contrast=1)(x)
    ratio = (y / x).flatten(1)
    assert torch.allclose(ratio, ratio.median(dim=1, keepdim=True).values.expand_as(ratio), atol=1e-3)

    y = pipe(lumaflip=1)(x)
    reflected = x - 2 * x.mean(dim=1, keepdim=True)  # I - 2 v v^T with v the unit grey axis
    for i in range(8):
        assert closest([x[i], reflected[i]], y[i]) < 1e-5

    y = pipe(hue=1)(x)  # rotation about the grey axis: luma and chroma length preserved
    assert torch.allclose(luma(y), luma(x), atol=1e-5)
    chroma = lambda im: (im - luma(im)[:, None]).square().sum(1)
    assert torch.allclose(chroma(y), chroma(x), atol=1e-4)

    y = pipe(saturation=1)(x)  # scales chroma, keeps luma
    assert torch.allclose(luma(y), luma(x), atol=1e-5)
    s = (chroma(y) / chroma(x).clamp_min(1e-6)).flatten(1)
    assert torch.allclose(s, s.median(dim=1, keepdim=True).values.expand_as(s), rtol=1e-2, atol=1e-3)


def test_probability_scales_how_often_a_transform_applies():
    torch.manual_seed(6)
    x = smooth_images(400, res=8)
    y = pipe(p=0.3, brightness=1)(x)
    changed = ((y - x).abs().flatten(1).max(dim=1).values > 0).float().mean().item()
    assert 0.22 < changed < 0.38


def test_greyscale_images_get_colour_transforms_as_luma():
    x = smooth_images(4)[:, :1]
    y = pipe(brightness=1, contrast=1, saturation=1)(x)
    assert y.shape == (4, 1, 32, 32) and torch.isfinite(y).all()


def test_augmentation_has_a_second_derivative_for_r1():
    torch.manual_seed(7)
    a = AugmentPipe.from_name("bgc").double()
    a.p.fill_(1.0)
    x = torch.rand(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    state = torch.get_rng_state()

    def f(img):  # the same random draws on every call, so the function is deterministic
        torch.set_rng_state(state)
        return a(img)

    assert not torch.equal(f(x), x)
    assert torch.autograd.gradgradcheck(f, (x,), atol=1e-4, fast_mode=True)


def test_update_p_follows_the_sign_of_rt_minus_target():
    step = 32 * 4 / (500 * 1000)
    assert update_p(0.0, 0.9, batch=32) == pytest.approx(step)
    assert update_p(0.5, 0.1, batch=32) == pytest.approx(0.5 - step)
    assert update_p(0.0, 0.1, batch=32) == 0.0
    assert update_p(1.0, 0.9, batch=32) == 1.0
    assert update_p(0.2, 0.9, batch=32, ada_kimg=100) == pytest.approx(0.2 + 32 * 4 / 1e5)
    # From 0 to 1 takes ada_kimg thousand images when r_t stays above target.
    p, shown = 0.0, 0
    while p < 1:
        p, shown = update_p(p, 1.0, batch=64), shown + 64 * 4
    assert math.isclose(shown, 500_000, rel_tol=0.01)


def test_pipelines_and_unknown_name():
    assert AUGPIPES["bgc"].hue == 1 and AUGPIPES["bg"].hue == 0 and AUGPIPES["blit"].scale == 0
    with pytest.raises(TrainingError, match="unknown --augpipe"):
        AugmentPipe.from_name("nope")
    assert np.isclose(sum(AugmentPipe().filter_geom.tolist()), 1.0)
