"""Generator and discriminator: shapes and gradients at every resolution, and the config-F facts."""

import math

import pytest
import torch

from training.errors import TrainingError
from training.networks import (
    Discriminator,
    FullyConnectedLayer,
    Generator,
    MinibatchStdLayer,
    modulated_conv2d,
)

TINY = {"channel_base": 256, "channel_max": 16}


def tiny_G(res=16, **kw):
    return Generator(z_dim=16, w_dim=16, img_resolution=res, mapping_layers=2, **{**TINY, **kw})


@pytest.mark.parametrize("res", [8, 16, 32, 64, 128, 256, 512, 1024])
def test_full_size_shapes_and_gradients_on_meta(res):
    with torch.device("meta"):
        G = Generator(img_resolution=res)
        D = Discriminator(img_resolution=res)
        img = G(torch.randn(2, 512), noise_mode="random")
        assert img.shape == (2, 3, res, res)
        assert G.num_ws == 2 * int(math.log2(res)) - 2
        logits = D(img)
        assert logits.shape == (2, 1)
        logits.sum().backward()
    assert all(p.grad is not None for p in G.parameters())
    assert all(p.grad is not None for p in D.parameters())


@pytest.mark.parametrize("res", [8, 16, 32, 64])
def test_small_channel_networks_give_finite_gradients(res):
    torch.manual_seed(0)
    G, D = tiny_G(res), Discriminator(img_resolution=res, **TINY)
    img = G(torch.randn(4, 16), noise_mode="random")
    assert img.shape == (4, 3, res, res) and torch.isfinite(img).all()
    D(img).sum().backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # Synthesis weights and the mapping's all receive signal (noise strengths start at exactly zero).
    assert G.synthesis.blocks[-1].conv1.weight.grad.abs().sum() > 0
    assert G.mapping.layers[0].weight.grad.abs().sum() > 0


def test_config_f_parameter_count():
    with torch.device("meta"):
        G = Generator(img_resolution=1024)
    assert sum(p.numel() for p in G.parameters()) == 30_370_060  # StyleGAN2 config F, 1024 px


def test_modulated_conv_fused_equals_unfused():
    torch.manual_seed(0)
    x, w, s = torch.randn(3, 5, 8, 8), torch.randn(7, 5, 3, 3), torch.randn(3, 5)
    for demod in (True, False):
        a = modulated_conv2d(x, w, s, demodulate=demod, padding=1, fused=True)
        b = modulated_conv2d(x, w, s, demodulate=demod, padding=1, fused=False)
        assert torch.allclose(a, b, atol=1e-5)
    # Demodulation gives unit-variance outputs for unit-variance inputs, whatever the style scale.
    big = modulated_conv2d(
        torch.randn(64, 32, 16, 16), torch.randn(32, 32, 3, 3), torch.rand(64, 32) * 10, padding=1
    )
    assert abs(big[:, :, 1:-1, 1:-1].std().item() - 1) < 0.1


def test_equalised_learning_rate_and_mapping_lr_multiplier():
    fc = FullyConnectedLayer(100, 10, lr_multiplier=0.01)
    # Stored weights are N(0, 1/lr_mul); the runtime scale brings them back to N(0, 1/fan_in).
    assert abs(fc.weight.std().item() * 0.01 - 1) < 0.1
    assert fc.weight_gain == pytest.approx(0.01 / 10)
    G = tiny_G()
    assert G.mapping.layers[0].weight_gain == pytest.approx(0.01 / math.sqrt(16))  # fan-in = z_dim


def test_mapping_normalises_z_and_truncates_to_w_avg():
    G = tiny_G()
    z = torch.randn(4, 16)
    assert torch.allclose(G.mapping(z), G.mapping(3 * z), atol=1e-5)  # z / rms(z)
    G.mapping(z, update_emas=True)
    assert G.mapping.w_avg.abs().sum() > 0
    ws = G.mapping(z, truncation_psi=0)
    assert torch.allclose(ws, G.mapping.w_avg.expand_as(ws), atol=1e-6)
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=2)
    full = G.mapping(z)
    assert torch.allclose(cut[:, 2:], full[:, 2:]) and not torch.allclose(cut[:, :2], full[:, :2])


def test_w_avg_tracks_with_beta_0995():
    G = tiny_G()
    z = torch.randn(8, 16)
    w = G.mapping(z)[:, 0].mean(0)
    G.mapping(z, update_emas=True)
    assert torch.allclose(G.mapping.w_avg, w * (1 - 0.995), atol=1e-6)


def test_noise_modes_and_registered_noise_buffers():
    G = tiny_G()
    names = [k for k in G.state_dict() if k.endswith("noise_const")]
    assert len(names) == len(G.synthesis.noise_layers()) == G.num_ws - 1
    for layer in G.synthesis.noise_layers():
        layer.noise_strength.data.fill_(0.5)
    z = torch.randn(2, 16)
    assert torch.equal(G(z, noise_mode="const"), G(z, noise_mode="const"))
    assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
    assert not torch.equal(G(z, noise_mode="none"), G(z, noise_mode="const"))
    ws = G.mapping(z)
    assert torch.equal(G.synthesis(ws), G(z))


def test_minibatch_std_groups_must_divide_batch():
    layer = MinibatchStdLayer(group_size=4)
    out = layer(torch.randn(8, 3, 4, 4))
    assert out.shape == (8, 4, 4, 4)
    # The reference's strided groups: samples 0, 2, 4, 6 share one statistic, 1, 3, 5, 7 another.
    x = torch.randn(8, 3, 4, 4)
    out = layer(x)
    for group in ([0, 2, 4, 6], [1, 3, 5, 7]):
        want = (x[group].var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
        assert all(torch.allclose(out[i, 3], want.expand(4, 4)) for i in group)
    assert not torch.equal(out[0, 3], out[1, 3])
    # Format-version-1 networks keep contiguous groups: samples 0-3 share one statistic, 4-7 another.
    old = MinibatchStdLayer(group_size=4, strided=False)(x)
    assert torch.equal(old[0, 3], old[3, 3]) and not torch.equal(old[0, 3], old[4, 3])
    with pytest.raises(TrainingError, match="must divide the per-device batch 6"):
        layer(torch.randn(6, 3, 4, 4))


def test_reduced_precision_path_runs_and_clamps():
    torch.manual_seed(0)
    G, D = tiny_G(16, num_reduced_res=2), Discriminator(img_resolution=16, num_reduced_res=2, **TINY)
    G.synthesis.reduced_precision = D.reduced_precision = True  # bf16 autocast (CPU here, CUDA for users)
    img = G(torch.randn(4, 16))
    assert img.dtype == torch.float32 and torch.isfinite(img).all()
    assert torch.isfinite(D(img)).all()
    layer = G.synthesis.blocks[-1].conv1
    layer.bias.data.fill_(1e4)
    x = layer(torch.randn(1, 16, 16, 16), torch.randn(1, 16), clamp=True)
    assert x.abs().max() <= 256


def test_conditional_networks():
    G = tiny_G(c_dim=3)
    D = Discriminator(img_resolution=16, c_dim=3, **TINY)
    c = torch.eye(3)[[0, 1, 2, 0]]
    img = G(torch.randn(4, 16), c)
    assert D(img, c).shape == (4, 1)
    with pytest.raises(TrainingError, match="conditional"):
        G(torch.randn(4, 16))


def test_bad_resolution_is_a_clear_error():
    with pytest.raises(TrainingError, match="power of two"):
        Generator(img_resolution=48)


def test_upsampling_conv_fused_and_unfused_agree_and_output_twice_the_size():
    from training.networks import modulated_conv2d
    from training.ops import setup_filter

    torch.manual_seed(3)
    x, w, s = torch.randn(2, 5, 6, 6), torch.randn(7, 5, 3, 3), torch.randn(2, 5)
    f = setup_filter([1, 3, 3, 1])
    a = modulated_conv2d(x, w, s, padding=1, up=2, resample_filter=f)
    b = modulated_conv2d(x, w, s, padding=1, up=2, resample_filter=f, fused=False)
    assert a.shape == (2, 7, 12, 12)
    assert torch.allclose(a, b, atol=1e-5)


def test_upsampling_conv_is_a_true_convolution_padded_before_the_filter():
    # Definition: zero-stuff the input (x at even pixels), convolve with the kernel (a true convolution:
    # correlation with the flipped kernel) on a zero-padded canvas, then FIR-filter; no padding after it.
    from training.networks import modulated_conv2d
    from training.ops import setup_filter, upfirdn2d

    torch.manual_seed(4)
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    f = setup_filter([1, 3, 3, 1])
    got = modulated_conv2d(x, w, torch.ones(1, 2), demodulate=False, padding=1, up=2, resample_filter=f)
    stuffed = torch.zeros(1, 2, 10, 10)
    stuffed[:, :, ::2, ::2] = x
    full = torch.nn.functional.conv2d(stuffed, w.flip([2, 3]), padding=2)[
        :, :, :11, :11
    ]  # 'full' conv of 9x9
    ref = upfirdn2d(full, f, padding=1, gain=4)  # 11 + 2 - 3 = 10 = twice the input
    assert got.shape == (1, 3, 10, 10)
    assert torch.allclose(got, ref, atol=1e-5)


def test_conv_clamp_applies_in_float32():
    torch.manual_seed(5)
    shape = {
        "z_dim": 8,
        "w_dim": 8,
        "mapping_layers": 1,
        "img_resolution": 8,
        "channel_base": 64,
        "channel_max": 8,
    }
    G = Generator(**shape, conv_clamp=0.05)
    with torch.no_grad():
        assert G(torch.randn(2, 8)).abs().max() <= 0.1 + 1e-6  # two ToRGB outputs, each within +-0.05
    old = Generator(**shape, conv_clamp=0.05, arch_version=1)
    old.load_state_dict(G.state_dict())
    with torch.no_grad():
        assert old(torch.randn(2, 8)).abs().max() > 0.1  # version 1 clamped only in reduced precision


def test_freeze_d_counts_layers_as_the_reference():
    D = Discriminator(img_resolution=32, channel_base=256, channel_max=16)
    D.freeze_layers(5)  # b32: fromrgb conv0 conv1 skip (4 layers), then b16.conv0
    frozen = {n.rsplit(".", 1)[0] for n, p in D.named_parameters() if not p.requires_grad}
    assert frozen == {
        "blocks.0.fromrgb",
        "blocks.0.conv0",
        "blocks.0.conv1",
        "blocks.0.skip",
        "blocks.1.conv0",
    }
    D2 = Discriminator(img_resolution=32, channel_base=256, channel_max=16)
    D2.freeze_layers(100)
    assert {n.split(".")[0] for n, p in D2.named_parameters() if p.requires_grad} == {"b4"}
