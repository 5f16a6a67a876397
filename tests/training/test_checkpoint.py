"""Snapshots: safetensors + JSON round trips, no pickle, clear errors."""
import json

import pytest
import torch

from training.checkpoint import latest_snapshot, load_generator, load_snapshot, save_snapshot
from training.errors import TrainingError
from training.networks import Discriminator, Generator

TINY = dict(img_resolution=16, channel_base=256, channel_max=16)


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
    stem = save_snapshot(tmp_path / "s", G=G, D=D, opt_D=opt, augment_p=0.125, cur_nimg=4096,
                         options={"kimg": 1}, dataset_sha256="ab" * 32, extra={"batch_idx": 3})
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
