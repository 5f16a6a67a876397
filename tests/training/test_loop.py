"""End-to-end training on tiny archives: run folder contents, exact resume, ADA behaviour, transfer
learning, the progress callback and the CLI's errors."""

import dataclasses
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from flows.cli import main as ghosts
from tests.training.archives import make_archive
from tests.training.tiny import QUICK, TINY
from training.checkpoint import load_snapshot, save_snapshot
from training.config import build_options
from training.loop import train
from training.networks import Discriminator, Generator
from training.report import read_stats

CLI_TINY = ["--cbase", "256", "--cmax", "16", "--workers", "0", "--batch", "8", "--map", "2"]


@pytest.fixture(scope="module")
def archive32(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("a32"), n=32, res=32)


@pytest.fixture(scope="module")
def archive16(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("a16"), n=8, res=16)


def run_cli(*args):
    return CliRunner().invoke(ghosts, ["train", *map(str, args)], catch_exceptions=False)


def test_short_run_then_resume_latest_continues_kimg_and_p(archive32, tmp_path):
    out = tmp_path / "runs"
    same = ("--archive", archive32, "--outdir", out, "--tick", 0.016, *CLI_TINY)  # the run and its resumption
    r = run_cli(
        *same,
        "--kimg",
        0.032,
        "--snap",
        1,
        "--metrics",
        "swd",
        "--metric-images",
        16,
        "--p",
        0.05,
    )
    assert r.exit_code == 0, r.output
    run = out / "00000-blobs-auto"
    for name in (
        "training_options.json",
        "log.txt",
        "reals.png",
        "fakes_init.png",
        "fakes000000-032.png",  # named like the snapshot: unique per image count
        "stats.jsonl",
        "curves.png",
        "metric-swd.jsonl",
        "network-snapshot-000000-032.json",
        "network-snapshot-000000-032.safetensors",
    ):
        assert (run / name).is_file(), name
    rows = read_stats(run / "stats.jsonl")
    assert len(rows) == 3  # ticks after 1, 3 and 4 minibatches of 8
    for key in (
        "Progress/kimg",
        "Progress/augment",
        "Timing/sec_per_kimg",
        "Loss/scores/real",
        "Loss/signs/real",
        "Loss/G/loss",
        "Loss/D/loss",
        "Loss/r1_penalty",
        "Loss/pl_penalty",
        "Resources/cpu_mem_gb",
    ):
        assert any(key in row for row in rows), key
    assert [round(r["Progress/kimg"]["mean"], 3) for r in rows] == [0.008, 0.024, 0.032]
    swd = json.loads((run / "metric-swd.jsonl").read_text().splitlines()[0])
    assert swd["results"]["swd_avg"] > 0 and swd["snapshot"] == "network-snapshot-000000-024"
    assert (
        run / "network-snapshot-000000-024.json"
    ).is_file()  # snapshots < 1 kimg apart keep their own names
    first = load_snapshot(run / "network-snapshot-000000-032")
    assert first.cur_nimg == 32 and first.meta["dataset_sha256"]
    p_saved = first.augment_p

    r = run_cli(*same, "--kimg", 0.048, "--resume", "latest", "--metrics", "none")
    assert r.exit_code == 0, r.output
    assert not (out / "00001-blobs-auto").exists()  # continued in place
    rows = read_stats(run / "stats.jsonl")
    assert [round(r["Progress/kimg"]["mean"], 3) for r in rows][3:] == [0.048]
    assert rows[3]["Progress/tick"]["mean"] == 3
    assert "resumed network-snapshot-000000-032: kimg 0.032" in (run / "log.txt").read_text()
    # p continued from the saved value (the first update after resuming moves it by at most one step).
    assert abs(rows[3]["Progress/augment"]["mean"] - p_saved) <= 8 * 4 / 500e3 + 1e-9


def test_resume_latest_reproduces_an_uninterrupted_run(archive16, tmp_path):
    def opts(out, kimg):
        o = build_options(archive16, out, batch=4, kimg=kimg, tick_kimg=0.004, ada_kimg=0.1, p=0.2, **TINY)
        return dataclasses.replace(o, ada_interval=1, d_reg_interval=2, g_reg_interval=2)

    straight = train(opts(tmp_path / "a", 0.016))
    train(opts(tmp_path / "b", 0.008))
    resumed = train(dataclasses.replace(opts(tmp_path / "b", 0.016), resume="latest"))
    assert resumed.run_dir == tmp_path / "b" / "00000-blobs-auto" and resumed.cur_nimg == 16
    a, b = load_snapshot(straight.snapshot), load_snapshot(resumed.snapshot)
    assert a.augment_p == b.augment_p and a.augment_p != 0.2
    for key in a.tensors:
        if key.startswith(("G/", "G_ema/", "D/", "opt_")):
            assert torch.equal(a.tensors[key], b.tensors[key]), key


def test_ada_p_follows_rt_and_noaug_keeps_zero(archive16, tmp_path):
    o = build_options(
        archive16,
        tmp_path / "ada",
        batch=4,
        kimg=0.024,
        tick_kimg=0.004,
        ada_kimg=0.1,
        dlr=0.01,
        target=0.2,
        **TINY,
    )
    result = train(dataclasses.replace(o, ada_interval=1))  # one p update per tick, so ticks show each r_t
    rows = read_stats(result.run_dir / "stats.jsonl")
    p_prev, step = 0.0, 4 / 100
    for row in rows:
        rt, p = row["Loss/signs/real"]["mean"], row["Progress/augment"]["mean"]
        expect = min(max(p_prev + (step if rt > 0.2 else -step if rt < 0.2 else 0), 0), 1)
        assert p == pytest.approx(expect, abs=1e-6)
        p_prev = p
    # The untrained D calls these few reals real more often than the (low) target at first, so p must rise.
    assert rows[0]["Loss/signs/real"]["mean"] > 0.2 and max(r["Progress/augment"]["mean"] for r in rows) > 0

    o = build_options(
        archive16, tmp_path / "noaug", batch=4, kimg=0.008, tick_kimg=0.004, aug="noaug", **TINY
    )
    rows = read_stats(train(o).run_dir / "stats.jsonl")
    assert all(r["Progress/augment"]["mean"] == 0 for r in rows)


def test_transfer_learning_starts_a_new_run_from_the_weights(archive16, tmp_path):
    ticks = []
    base = train(
        build_options(archive16, tmp_path, batch=4, kimg=0.008, tick_kimg=0.004, **TINY),
        progress=lambda stats, fakes: ticks.append((stats, fakes)),
    )
    assert len(ticks) == 2 and ticks[0][1] is None and ticks[1][1].name == "fakes000000-008.png"
    assert ticks[1][0]["Progress/kimg"] == pytest.approx(0.008)
    o = build_options(
        archive16, tmp_path, batch=4, kimg=0.004, tick_kimg=0.004, resume=str(base.snapshot), **TINY
    )
    assert o.ada_kimg == 100
    tuned = train(o)
    assert tuned.run_dir.name == "00001-blobs-auto" and tuned.cur_nimg == 4
    # Same EMA generator and the same fixed latents: the new run's first grid is the old run's last one.
    assert (tuned.run_dir / "fakes_init.png").read_bytes() == (
        base.run_dir / "fakes000000-008.png"
    ).read_bytes()


def test_cli_errors_are_clear(archive32, archive16, tmp_path):
    r = run_cli("--archive", tmp_path / "nope.zip", "--outdir", tmp_path)
    assert r.exit_code == 1 and "dataset archive not found" in r.output
    r = run_cli("--archive", archive32, "--batch", "6", "--mbstd-group", "4")
    assert r.exit_code == 1 and "must divide the per-GPU batch 6" in r.output
    r = run_cli(
        "--archive", archive32, "--outdir", tmp_path / "empty", "--resume", "latest", "--kimg", "0.01"
    )
    assert r.exit_code == 1 and "no complete snapshot" in r.output
    tiny16 = {"img_resolution": 16, "channel_base": 128, "channel_max": 16}
    src = save_snapshot(
        tmp_path / "r16" / "network-snapshot-000000",
        D=Discriminator(**tiny16),
        G=Generator(z_dim=16, w_dim=16, mapping_layers=2, **tiny16),
    )
    r = run_cli(
        "--archive",
        archive32,
        "--outdir",
        tmp_path / "r32",
        "--resume",
        f"{src}.json",
        "--kimg",
        "0.01",
        *CLI_TINY,
    )
    assert r.exit_code == 1 and "resolution mismatch" in r.output and "16 px" in r.output


def test_dry_run_writes_nothing(archive32, tmp_path):
    r = run_cli("--archive", archive32, "--outdir", tmp_path / "runs", "--dry-run", "--cfg", "paper256")
    assert r.exit_code == 0 and '"batch": 64' in r.output and "00000-blobs-paper256" in r.output
    assert not (tmp_path / "runs").exists()


NVLABS_PKL = Path("/work/shared/testdata/nvlabs/network-snapshot-32px.pkl")


@pytest.mark.skipif(not NVLABS_PKL.exists(), reason="NVlabs fixture not present")
def test_transfer_from_an_nvlabs_pickle_copies_what_matches_and_freezes_d_layers(archive32, tmp_path):
    opts = dict(cbase=1024, cmax=64, map_layers=8, snap=0, batch=4, kimg=0.004, tick_kimg=0.004, **QUICK)
    o = build_options(archive32, tmp_path, resume=str(NVLABS_PKL), freezed=5, **opts)
    assert o.ada_kimg == 100 and o.ema_rampup is None  # the reference's transfer settings
    result = train(o)
    src = load_snapshot(NVLABS_PKL)
    log = (result.run_dir / "log.txt").read_text()
    n_g, n_d = len(src.state_dict("G")), len(src.state_dict("D"))
    assert f"G {n_g} tensors copied, 0 skipped; D {n_d} tensors copied, 0 skipped" in log
    snap = load_snapshot(result.snapshot)
    assert snap.cur_nimg == 4 and snap.meta["G_kwargs"]["arch_version"] == 2
    d_new, d_src = snap.state_dict("D"), src.state_dict("D")
    for frozen in ("blocks.0.fromrgb.weight", "blocks.0.skip.weight", "blocks.1.conv0.weight"):
        assert torch.equal(d_new[frozen], d_src[frozen]), frozen
    assert not torch.equal(d_new["blocks.1.conv1.weight"], d_src["blocks.1.conv1.weight"])
    # Another architecture: only what matches is copied, and the log says how much was skipped.
    o = build_options(archive32, tmp_path, resume=str(NVLABS_PKL), **{**opts, "cmax": 32, "map_layers": 2})
    log = (train(o).run_dir / "log.txt").read_text()
    copied, skipped = map(int, re.search(r": G (\d+) tensors copied, (\d+) skipped", log).groups())
    assert copied > 0 and skipped > 0


def test_named_source_missing_tells_where_to_get_it(archive32, tmp_path, monkeypatch):
    monkeypatch.setenv("GHOSTS_MODELS", str(tmp_path / "models"))
    r = run_cli("--archive", archive32, "--outdir", tmp_path / "runs", "--resume", "ffhq256", "--kimg", 0.01)
    assert r.exit_code == 1
    assert (
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
        "ffhq-res256-mirror-paper256-noaug.pkl" in r.output
    )
    assert str(tmp_path / "models" / "ffhq-res256-mirror-paper256-noaug.pkl") in r.output
    assert not (tmp_path / "runs").exists()


def test_batch_gpu_accumulates_rounds_into_one_batch(archive16, tmp_path):
    o = build_options(archive16, tmp_path, batch=8, batch_gpu=4, kimg=0.016, tick_kimg=0.008, **TINY)
    assert o.batch_gpu == 4 and o.mbstd_group == 4
    result = train(o)
    rows = read_stats(result.run_dir / "stats.jsonl")
    assert [round(r["Progress/kimg"]["mean"], 3) for r in rows] == [0.008, 0.016]  # 8 images per step
    with pytest.raises(Exception, match="--batch-gpu 3 must divide the per-GPU batch 8"):
        build_options(archive16, tmp_path, batch=8, batch_gpu=3, mbstd_group=1, **TINY)
