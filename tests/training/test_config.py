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
    snapshot = tmp_path / "x.pkl"  # --resume is checked to exist when options are built; read by the loop
    snapshot.write_bytes(b"")
    paper256 = {"batch": 64, "mbstd_group": 8, "cbase": 16384, "glr": 0.0025, "gamma": 1, "ema_kimg": 20}
    o = build_options(archive32, tmp_path, cfg="paper256")
    assert {k: getattr(o, k) for k in paper256} == paper256
    assert o.ema_rampup is None and o.map_layers == 8
    given = {"batch": 8, "gamma": 3, "glr": 0.001, "dlr": 0.002, "cbase": 512, "cmax": 32, "map_layers": 3}
    o = build_options(archive32, tmp_path, cfg="stylegan2", kimg=0.2, resume=str(snapshot), **given)
    assert {k: getattr(o, k) for k in given} == given and o.kimg == 0.2
    assert o.ada_kimg == 100  # faster p adaptation when starting from trained weights


def test_batch_must_divide_into_mbstd_groups(archive32, tmp_path):
    with pytest.raises(TrainingError, match="group size 4 must divide the per-GPU batch 6"):
        build_options(archive32, tmp_path, batch=6, mbstd_group=4)
    with pytest.raises(TrainingError, match="multiple of --gpus"):
        build_options(archive32, tmp_path, batch=5, gpus=2)


def test_bad_options(archive32, tmp_path):
    with pytest.raises(TrainingError, match="--cfg 'huge'"):
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


# --- one declaration: bounds, stored options, --resume forms ------------------------------------------------


def test_network_sizes_are_bounded_as_the_snapshot_loader_bounds_them(archive32, tmp_path):
    from training.bounds import NETWORK_BOUNDS
    from training.config import NETWORK_FIELDS, TrainSettings, make_settings

    checked = [name for name in NETWORK_FIELDS if name in TrainSettings.model_fields]
    assert {"cbase", "cmax", "map_layers", "z_dim", "w_dim", "mbstd_group"} <= set(checked)
    for name in checked:
        lo, hi = NETWORK_BOUNDS[NETWORK_FIELDS[name]]
        assert getattr(make_settings(**{name: hi}), name) == hi
        for bad in (lo - 1, hi + 1):
            with pytest.raises(TrainingError, match=f"{TrainSettings.flag(name)} {bad}"):
                make_settings(**{name: bad})
    with pytest.raises(TrainingError, match="--cmax 4096: .*less than or equal to 1024"):
        build_options(archive32, tmp_path, cmax=4096)
    with pytest.raises(TrainingError, match="--cbase 16 gives no feature maps at 32 px"):
        build_options(archive32, tmp_path, cbase=16)
    # Stored options (a run's training_options.json, read back by --resume latest) meet the same bounds.
    stored = build_options(archive32, tmp_path).to_json()
    with pytest.raises(TrainingError, match="--map 100000: it must be a whole number from 1 to 32"):
        TrainingOptions.from_json({**stored, "map_layers": 100000}).validate()


def test_stored_options_from_before_an_option_existed_take_its_one_default(archive32, tmp_path):
    from training.config import TrainSettings

    stored = build_options(archive32, tmp_path, batch=8).to_json()
    for name in ("channels_last", "freezed", "batch_gpu", "tf32"):
        del stored[name]
    back = TrainingOptions.from_json(stored)
    assert back.channels_last is TrainSettings.model_fields["channels_last"].default
    assert back.freezed == 0 and back.batch_gpu == 8 and back.tf32 is False
    del stored["batch"]
    with pytest.raises(TrainingError, match="lack batch"):
        TrainingOptions.from_json(stored)


def test_resume_takes_a_file_a_run_folder_latest_or_a_named_source(tmp_path, monkeypatch):
    from training.config import resolve_resume

    assert resolve_resume("latest") == "latest" and resolve_resume("latest-good") == "latest-good"
    run = tmp_path / "00000-x-auto"
    run.mkdir()
    with pytest.raises(TrainingError, match="holds no complete snapshot"):
        resolve_resume(str(run))
    for kimg in (0, 4):  # complete pairs; the newest is the one resumed
        for ext in (".json", ".safetensors"):
            (run / f"network-snapshot-{kimg:06d}{ext}").write_text("{}")
    (run / "network-snapshot-000008.json").write_text("{}")  # weights missing: not complete
    newest = str(run / "network-snapshot-000004")
    assert resolve_resume(str(run)) == newest
    assert resolve_resume(newest) == newest and resolve_resume(newest + ".json") == newest + ".json"
    with pytest.raises(TrainingError, match="no such snapshot, .pkl or run folder.*ffhq256"):
        resolve_resume(str(tmp_path / "typo.pkl"))
    monkeypatch.setenv("GHOSTS_MODELS", str(tmp_path / "models"))
    with pytest.raises(TrainingError, match="ffhq-res256-mirror-paper256-noaug.pkl"):
        resolve_resume("ffhq256")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ffhq-res256-mirror-paper256-noaug.pkl").write_bytes(b"")
    assert resolve_resume("ffhq256") == str(tmp_path / "models" / "ffhq-res256-mirror-paper256-noaug.pkl")


def test_the_augpipe_choices_are_the_augment_pipelines():
    from training.augment import AUGPIPES
    from training.config import AUGPIPE_NAMES

    assert set(AUGPIPE_NAMES) == set(AUGPIPES)
