"""torch.compile of the training step (`StyleGAN2Loss(compile=True)`, `--compile`) computes what the eager
step computes, on CPU."""

import copy
import shutil

import pytest
import torch
from torch._dynamo.utils import counters

from training.loss import SharedRandom, StyleGAN2Loss
from training.networks import Discriminator, Generator


def _phases(loss: StyleGAN2Loss, G, D, real, z):
    """The four phases at fixed weights; each phase's loss values and every gradient it leaves."""
    out = {}
    for name, net, fn in (
        ("Gmain", G, lambda: loss.accumulate_G_main(z, None)),
        ("Greg", G, lambda: loss.accumulate_G_reg(z, None, gain=4)),
        ("Dmain", D, lambda: loss.accumulate_D_main(real, None, z, None)),
        ("Dreg", D, lambda: loss.accumulate_D_reg(real, None, gain=16)),
    ):
        G.requires_grad_(net is G)
        D.requires_grad_(net is D)
        for p in net.parameters():
            p.grad = None
        stats = fn()
        out[name] = {
            "stats": {k: v.clone() for k, v in stats.items()},
            "grads": {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None},
        }
        with torch.no_grad():  # a small plain step, the same in both, so the next round is at new weights
            for p in net.parameters():
                if p.grad is not None:
                    p -= 1e-3 * p.grad
    return out


def _compare_compiled_with_eager():
    """The smallest networks the model allows (8 px: one up-sampling and one down-sampling block, 4 channels,
    one mapping layer, batch 2): the maths compiled is the maths of every resolution (the same layers,
    repeated), and a cold compile cache pays for few graphs."""
    torch.manual_seed(0)
    torch._dynamo.reset()
    kw = {"img_resolution": 8, "img_channels": 3, "channel_base": 32, "channel_max": 4, "conv_clamp": 256}
    G = Generator(z_dim=4, w_dim=4, mapping_layers=1, **kw)
    D = Discriminator(mbstd_group_size=2, mapping_layers=1, **kw)
    with torch.no_grad():  # biases and noise strengths off zero, so every path carries a gradient
        for p in [*G.parameters(), *D.parameters()]:
            if not p.any():
                p.normal_(0, 0.1)
    nets = {"eager": (G, D), "compiled": (copy.deepcopy(G), copy.deepcopy(D))}
    real = torch.rand(2, 3, 8, 8) * 2 - 1
    results = {}
    for name, (g, d) in nets.items():
        loss = StyleGAN2Loss(g, d, None, SharedRandom(1), compile=name == "compiled")
        assert (loss.compiled is not None) == (name == "compiled")
        counters["stats"].clear()
        rounds = []
        for i in range(2):  # the second round runs the cached compiled graphs at moved weights
            rounds.append(
                _phases(loss, g, d, real, torch.randn(2, 4, generator=torch.Generator().manual_seed(i)))
            )
        results[name] = rounds
        # The compiled step really ran compiled graphs (dynamo captured frames), the eager one none.
        assert (counters["stats"]["unique_graphs"] > 0) == (name == "compiled"), dict(counters["stats"])
    for eager, compiled in zip(results["eager"], results["compiled"]):
        for phase in eager:
            for key, value in eager[phase]["stats"].items():
                torch.testing.assert_close(compiled[phase]["stats"][key], value, rtol=1e-4, atol=1e-5)
            assert compiled[phase]["grads"].keys() == eager[phase]["grads"].keys()
            for key, g in eager[phase]["grads"].items():
                scale = float(g.abs().max()) + 1e-12
                err = float((compiled[phase]["grads"][key] - g).abs().max())
                assert err <= 1e-4 * scale + 1e-7, f"{phase} {key}: {err} vs max {scale}"
    (ge, de), (gc, dc) = nets["eager"], nets["compiled"]
    for a, b in zip(
        [*ge.state_dict().values(), *de.state_dict().values()],
        [*gc.state_dict().values(), *dc.state_dict().values()],
    ):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_compiled_step_equals_the_eager_step(monkeypatch):
    """Default run: `compile=True` through torch.compile with the aot_eager backend (TorchDynamo's capture of
    the networks and AOTAutograd's traced forward and backward graphs, run by eager kernels): all of
    torch.compile except inductor's C++ code generation, which costs minutes on a cold cache."""
    real_compile = torch.compile
    monkeypatch.setattr(
        torch, "compile", lambda module, **kw: real_compile(module, backend="aot_eager", **kw)
    )
    _compare_compiled_with_eager()


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None,
    reason="torch.compile's CPU backend (inductor) compiles C++ kernels and needs a C++ compiler (c++/g++)",
)
def test_inductor_compiled_step_equals_the_eager_step():
    """The same with torch.compile's default backend (inductor, C++ kernels on CPU), as `--compile` runs:
    81 s on a cold compile cache (about 80 C++ files; load 2-3 on 2 cores, 174 s at load 6), 10 s warm."""
    _compare_compiled_with_eager()


def test_compile_option_wraps_the_main_phase_networks(tmp_path, monkeypatch):
    """`compile=True` (`ghosts train --compile`) reaches the loss: torch.compile is asked for G's mapping and
    synthesis and for D (an identity stand-in here, so this test does not pay for compiling)."""
    from tests.training.archives import make_archive
    from training.config import build_options
    from training.loop import train

    wrapped = []

    def fake_compile(module, **kw):
        wrapped.append(type(module).__name__)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    archive = make_archive(tmp_path, n=8, res=16)
    tiny = {"cbase": 128, "cmax": 16, "z_dim": 16, "w_dim": 16, "workers": 0, "metrics": "none", "snap": 0}
    opts = build_options(
        archive, tmp_path / "runs", batch=4, kimg=0.004, tick_kimg=0.004, compile=True, **tiny
    )
    assert opts.compile
    train(opts)
    assert wrapped == ["MappingNetwork", "SynthesisNetwork", "Discriminator"]
    plain = build_options(archive, tmp_path / "runs2", batch=4, kimg=0.004, tick_kimg=0.004, **tiny)
    assert not plain.compile
    wrapped.clear()
    train(plain)
    assert wrapped == []
