"""Presets and overrides resolve to the published hyperparameters; impossible combinations are refused."""

import pytest

from tests.training.archives import make_archive
from training.config import TrainingOptions, build_options
from training.errors import TrainingError


@pytest.fixture(scope="module")
def archive32(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("cfg"), n=4, res=32)


def test_auto_config_formulas(archive32, tmp_path):
    o = build_options(archive32, tmp_path)
    assert o.batch == 32 and o.batch_gpu == 32 and o.mbstd_group == 4  # max(min(1*min(4096//32, 32), 64), 1)
    assert o.gamma == pytest.approx(0.0002 * 32**2 / 32)
    assert o.ema_kimg == pytest.approx(10) and o.ema_rampup == 0.05
    assert o.glr == o.dlr == 0.0025 and o.cbase == 16384 and o.cmax == 512 and o.map_layers == 2
    assert o.betas == (0.0, 0.99) and o.eps == 1e-8
    assert o.ada_kimg == 500 and o.target == 0.6 and o.kimg == 25000
    o4 = build_options(archive32, tmp_path, gpus=4)
    assert o4.batch == 64 and o4.batch_gpu == 16 and o4.mbstd_group == 4


def test_named_presets_and_overrides(archive32, tmp_path):
    o = build_options(archive32, tmp_path, cfg="paper256")
    assert (o.batch, o.mbstd_group, o.cbase, o.glr, o.gamma, o.ema_kimg, o.ema_rampup, o.map_layers) == (
        64,
        8,
        16384,
        0.0025,
        1,
        20,
        None,
        8,
    )
    o = build_options(
        archive32,
        tmp_path,
        cfg="stylegan2",
        batch=8,
        gamma=3,
        glr=0.001,
        dlr=0.002,
        cbase=512,
        cmax=32,
        map_layers=3,
        kimg=0.2,
        resume="x.json",
    )
    assert (o.batch, o.gamma, o.glr, o.dlr, o.cbase, o.cmax, o.map_layers, o.kimg) == (
        8,
        3,
        0.001,
        0.002,
        512,
        32,
        3,
        0.2,
    )
    assert o.ada_kimg == 100  # faster p adaptation when starting from trained weights


def test_batch_must_divide_into_mbstd_groups(archive32, tmp_path):
    with pytest.raises(TrainingError, match="group size 4 must divide the per-GPU batch 6"):
        build_options(archive32, tmp_path, batch=6, mbstd_group=4)
    with pytest.raises(TrainingError, match="multiple of --gpus"):
        build_options(archive32, tmp_path, batch=5, gpus=2)


def test_bad_options(archive32, tmp_path):
    with pytest.raises(TrainingError, match="unknown --cfg"):
        build_options(archive32, tmp_path, cfg="huge")
    with pytest.raises(TrainingError, match="unknown metric"):
        build_options(archive32, tmp_path, metrics="swd,is")
    with pytest.raises(TrainingError, match="--aug fixed needs --p"):
        build_options(archive32, tmp_path, aug="fixed")
    with pytest.raises(TrainingError, match="not found"):
        build_options(tmp_path / "missing.zip", tmp_path)


def test_options_round_trip_through_json(archive32, tmp_path):
    o = build_options(archive32, tmp_path, metrics="swd,fid", inception=tmp_path / "inc.pt")
    back = TrainingOptions.from_json(o.to_json())
    assert back == o and back.metrics == ["swd", "fid"]
