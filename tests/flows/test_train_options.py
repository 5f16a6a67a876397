"""The training options are declared once (training.config.TrainSettings): every field is a click option of
each command that trains, a property of the train flow's parameter schema and a key of the run's stored
options (training_options.json, each snapshot's "options"), with the same default; change a default in the
model and all three follow."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from prefect.utilities.callables import parameter_schema

from flows.cli import main
from flows.pipeline import pipeline
from flows.train import train
from tests.training.archives import make_archive
from training.command import training_options
from training.config import TrainSettings, build_options, resolve_inception
from training.errors import TrainingError

FIELDS = list(TrainSettings.model_fields)
RENAMED = {"workers": "--train-workers", "target": "--ada-target"}  # where the pipeline's own options clash


def _command(*path: str) -> click.Command:
    cmd: click.Command = main
    for name in path:
        cmd = cmd.get_command(click.Context(cmd), name)
    return cmd


def _cli_default(cmd: click.Command, flag: str):
    [param] = [p for p in cmd.params if flag in p.opts]
    return param.default


def _as_typed(name: str, value):
    """A default as the command line spells it (lists as comma lists)."""
    return (",".join(value) or "none") if isinstance(value, list) else value


def _flow_defaults(fn) -> dict:
    schema = parameter_schema(fn).model_dump()
    props = schema["definitions"]["TrainSettings"]["properties"]
    return {name: props[name].get("default") for name in props}


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("opts"), n=4, res=32)


@pytest.mark.parametrize(
    "path,renames",
    [(("train",), {}), (("run", "train"), {}), (("run", "pipeline"), RENAMED), (("serve",), RENAMED)],
    ids=["ghosts train", "ghosts run train", "ghosts run pipeline", "ghosts serve"],
)
def test_every_option_is_on_each_training_command_with_its_one_default(path, renames):
    cmd = _command(*path)
    shown = CliRunner().invoke(main, [*path, "--help"], terminal_width=200).output
    for name in FIELDS:
        flag = renames.get(name) or TrainSettings.flag(name)
        assert flag in shown, f"{' '.join(path)} --help lacks {flag}"
        assert _cli_default(cmd, flag) == _as_typed(name, TrainSettings.model_fields[name].default), flag
    assert "--resume-from" not in shown


@pytest.mark.parametrize("flow", [train, pipeline], ids=["train flow", "pipeline flow"])
def test_every_option_is_a_flow_parameter_with_the_same_default(flow):
    defaults = _flow_defaults(flow.fn)
    assert list(defaults) == FIELDS
    assert defaults == TrainSettings().model_dump(mode="json")


def test_every_option_is_in_the_stored_options_with_the_same_default(archive, tmp_path, monkeypatch):
    monkeypatch.delenv("GHOSTS_INCEPTION", raising=False)
    stored = build_options(archive, tmp_path).to_json()
    for name, info in TrainSettings.model_fields.items():
        assert name in stored, name
        if info.default is not None:  # None: the preset decides (tested in tests/training/test_config.py)
            assert stored[name] == info.default, name
    assert stored["inception"] is None and resolve_inception(None) is None


def test_changing_a_default_in_the_model_changes_all_three(archive, tmp_path):
    info = TrainSettings.model_fields["kimg"]
    old = info.default
    info.default = 123.5
    TrainSettings.model_rebuild(force=True)
    try:
        fresh = training_options(click.command(name="t")(lambda **kw: None))
        assert _cli_default(fresh, "--kimg") == 123.5
        assert _flow_defaults(train.fn)["kimg"] == 123.5
        assert build_options(archive, tmp_path).to_json()["kimg"] == 123.5
    finally:
        info.default = old
        TrainSettings.model_rebuild(force=True)
    assert TrainSettings().kimg == old


def test_a_bad_option_is_one_line_naming_the_flag(tmp_path):
    r = CliRunner().invoke(main, ["train", "--cmax", "4096", "--archive", str(tmp_path / "x.zip")])
    assert r.exit_code == 1 and "--cmax 4096: Input should be less than or equal to 1024" in r.output
    shown = CliRunner().invoke(main, ["train", "--help"], terminal_width=200).output
    assert "Channel maximum [512]. [1<=x<=1024]" in shown  # the bounds, from the same declaration
    with pytest.raises(TrainingError, match="--map 0: Input should be greater than or equal to 1"):
        build_options(tmp_path / "x.zip", tmp_path, map_layers=0)  # refused before the archive is read
