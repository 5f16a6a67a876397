"""Snapshots: safetensors + JSON round trips, no pickle, clear errors."""

import hashlib
import json

import pytest
import torch

from training.checkpoint import latest_snapshot, load_generator, load_snapshot, save_snapshot
from training.errors import TrainingError
from training.networks import Discriminator, Generator

TINY = {"img_resolution": 16, "channel_base": 256, "channel_max": 16}


def test_generator_round_trip_from_any_of_the_three_names(tmp_path):
    torch.manual_seed(0)
    G = Generator(z_dim=8, w_dim=8, mapping_layers=2, **TINY)
    G.mapping.w_avg.fill_(0.25)
    stem = save_snapshot(tmp_path / "network-snapshot-000000", G=G)
    z = torch.randn(2, 8)
    want = G(z, truncation_psi=0.5)
    for name in (stem, stem.with_suffix(".json"), stem.with_suffix(".safetensors")):
        G2 = load_generator(name)
        assert not G2.training and not any(p.requires_grad for p in G2.parameters())
        assert torch.equal(G2(z, truncation_psi=0.5), want)
    assert (stem.with_suffix(".safetensors").read_bytes()[8:9]) == b"{"  # safetensors header, not pickle


def test_full_training_state_round_trip(tmp_path):
    torch.manual_seed(1)
    G = Generator(z_dim=8, w_dim=8, mapping_layers=2, **TINY)
    D = Discriminator(**TINY)
    opt = torch.optim.Adam(D.parameters(), lr=0.01, betas=(0.0, 0.99))
    D(G(torch.randn(4, 8))).sum().backward()
    opt.step()
    stem = save_snapshot(
        tmp_path / "s",
        G=G,
        D=D,
        opt_D=opt,
        augment_p=0.125,
        cur_nimg=4096,
        options={"kimg": 1},
        dataset_sha256="ab" * 32,
        extra={"batch_idx": 3},
    )
    snap = load_snapshot(stem)
    assert snap.cur_nimg == 4096 and snap.augment_p == 0.125 and snap.meta["extra"]["batch_idx"] == 3
    D2 = snap.build_discriminator()
    assert all(torch.equal(a, b) for a, b in zip(D.state_dict().values(), D2.state_dict().values()))
    opt2 = torch.optim.Adam(D2.parameters(), lr=1.0)
    snap.load_optimizer("opt_D", opt2)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s2["param_groups"][0]["lr"] == 0.01
    for k in s1["state"]:
        assert torch.equal(s1["state"][k]["exp_avg_sq"], s2["state"][k]["exp_avg_sq"])
    x = torch.rand(3)
    torch.manual_seed(5)
    saved = save_snapshot(tmp_path / "r", G=G)
    a = torch.rand(3)
    torch.manual_seed(99)
    load_snapshot(saved).restore_rng()
    assert torch.equal(torch.rand(3), a) and not torch.equal(a, x)


def test_bad_or_missing_snapshots(tmp_path):
    with pytest.raises(TrainingError, match="not found or incomplete"):
        load_snapshot(tmp_path / "nothing")
    G = Generator(z_dim=8, w_dim=8, mapping_layers=2, **TINY)
    stem = save_snapshot(tmp_path / "x", G=G)
    with pytest.raises(TrainingError, match="holds no discriminator"):
        load_snapshot(stem).build_discriminator()
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["G_kwargs"]["channel_max"] = 8
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(TrainingError, match="does not match"):
        load_generator(stem)
    stem.with_suffix(".safetensors").write_bytes(b"garbage")
    with pytest.raises(TrainingError, match="is damaged"):
        load_snapshot(stem)
    meta["weights_sha256"] = hashlib.sha256(b"garbage").hexdigest()  # checksum right, contents unreadable
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(TrainingError, match="cannot read snapshot"):
        load_snapshot(stem)


def test_latest_snapshot_picks_newest_run_and_kimg(tmp_path):
    G = Generator(z_dim=8, w_dim=8, mapping_layers=2, **TINY)
    save_snapshot(tmp_path / "00000-a-auto" / "network-snapshot-000004", G=G)
    save_snapshot(tmp_path / "00001-a-auto" / "network-snapshot-000002", G=G)
    save_snapshot(tmp_path / "00001-a-auto" / "network-snapshot-000010", G=G)
    (tmp_path / "00002-a-auto").mkdir()  # a run that died before its first snapshot
    (tmp_path / "00001-a-auto" / "network-snapshot-000012.safetensors").write_bytes(b"half written")
    assert latest_snapshot(tmp_path) == tmp_path / "00001-a-auto" / "network-snapshot-000010"


def test_version_1_snapshot_renders_as_it_did_and_transfers_with_flipped_kernels():
    """tests/training/data/snapshot-v1.* was written by the networks of format version 1 (commit efaa46f),
    with what they rendered; it must keep rendering exactly that."""
    import numpy as np

    from training.loop import _transfer_source
    from training.networks import copy_matching

    data = __import__("pathlib").Path(__file__).parent / "data"
    snap = load_snapshot(data / "snapshot-v1.json")
    want = np.load(data / "snapshot-v1-expected.npz")
    G, D = snap.build_generator("G_ema"), snap.build_discriminator()
    z = torch.from_numpy(want["z"])
    with torch.no_grad():
        img = G(z, None, truncation_psi=1.0, noise_mode="const")
        assert torch.equal(img, torch.from_numpy(want["img_psi1"]))
        assert torch.equal(G(z, None, truncation_psi=0.7), torch.from_numpy(want["img_psi07"]))
        assert torch.equal(D(img, None), torch.from_numpy(want["logits"]))
        # Into version-2 networks: flipped up-sampling kernels reproduce the old maths except at borders.
        kw = {**snap.meta["G_kwargs"], "arch_version": 2}
        errors = []
        for source in (_transfer_source(snap, "G_ema"), snap.state_dict("G_ema")):
            G2 = Generator(**kw)
            assert copy_matching(G2, source) == (len(G2.state_dict()), 0)
            errors.append((G2(z) - img).abs()[:, :, 4:-4, 4:-4].mean().item())
        assert errors[0] < errors[1] / 2
