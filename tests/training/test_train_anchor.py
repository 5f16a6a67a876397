"""The benchmark's reference-step anchor (benchmarks/baselines/stylegan2_ada_fp32.py) computes what the
reference computes, so timing ghosts against it compares like with like: it renders the NVlabs fixture as the
reference did, and it gives ghosts' images and logits for ghosts' weights."""

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.baselines import stylegan2_ada_fp32 as ref
from training.networks import Discriminator, Generator
from training.pickle_import import (
    discriminator_kwargs,
    flatten_module,
    generator_kwargs,
    read_network_pickle,
)

FIXTURE = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "nvlabs"
if not FIXTURE.exists():
    FIXTURE = Path("/work/shared/testdata/nvlabs")
PKL = FIXTURE / "network-snapshot-32px.pkl"


# The options the anchor's networks take, read from ghosts' G and D kwargs (the same names).
_SHAPE = ("img_resolution", "img_channels", "channel_base", "channel_max", "conv_clamp")
_G_ONLY = ("z_dim", "w_dim", "mapping_layers")


def _anchor(gk: dict, dk: dict):
    G = ref.Generator(**{k: gk[k] for k in _G_ONLY + _SHAPE})
    D = ref.Discriminator(**{k: dk[k] for k in _SHAPE}, mbstd_group_size=dk["mbstd_group_size"])
    return G, D


def _render(G, z, psi, training: bool):
    G.train(training)
    G.mapping.eval()  # no w_avg update
    with torch.no_grad():
        return G(z, psi, "const")


@pytest.mark.skipif(not PKL.exists(), reason="NVlabs fixture not present")
def test_anchor_renders_the_nvlabs_fixture_as_the_reference():
    top = read_network_pickle(PKL)
    G, D = _anchor(generator_kwargs(top["G_ema"]), discriminator_kwargs(top["D"]))
    ref.load_reference_state(G, flatten_module(top["G_ema"]))  # the pickle's own names, unchanged
    ref.load_reference_state(D, flatten_module(top["D"]))
    expected = np.load(FIXTURE / "expected.npz", allow_pickle=False)
    z = torch.from_numpy(expected["z"])
    for psi, key in ((1.0, "psi1"), (0.7, "psi07")):
        want = torch.from_numpy(expected[f"img_{key}"])
        for training in (False, True):  # fused grouped conv (eval) and activation scaling (training)
            assert (_render(G, z, psi, training) - want).abs().max() < 1e-4
        with torch.no_grad():
            logits = D(want)
        assert (logits - torch.from_numpy(expected[f"logits_{key}"])).abs().max() < 1e-5


@pytest.mark.parametrize("res", [16, 32])
def test_anchor_and_ghosts_compute_the_same_for_the_same_weights(res):
    torch.manual_seed(res)
    kw = {"img_resolution": res, "img_channels": 3, "channel_base": 256, "channel_max": 32, "conv_clamp": 256}
    G = Generator(z_dim=32, w_dim=32, mapping_layers=2, **kw)
    D = Discriminator(mbstd_group_size=4, **kw)
    with torch.no_grad():
        for p in [*G.parameters(), *D.parameters()]:
            if not p.any():  # biases and noise strengths off zero, so the comparison sees them
                p.normal_(0, 0.1)
    gk = dict(G.init_kwargs)
    dk = dict(D.init_kwargs)
    aG, aD = _anchor(gk, dk)
    ref.load_reference_state(aG, ref.reference_names(G.state_dict(), res, "G"))
    ref.load_reference_state(aD, ref.reference_names(D.state_dict(), res, "D"))
    z = torch.randn(8, 32)
    for training in (False, True):
        G.train(training)
        with torch.no_grad():
            img = G(z, None, noise_mode="const")
        assert (_render(aG, z, 1.0, training) - img).abs().max() < 1e-4 * max(1.0, float(img.abs().max()))
        D.train(training)
        with torch.no_grad():
            assert (D(img, None) - aD(img)).abs().max() < 1e-5
