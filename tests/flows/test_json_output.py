"""`--json` on every command: exactly one JSON document on stdout, with an `error` field and a non-zero exit
on failure. The commands are enumerated from the click group, so a new command with --json is covered."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from flows.cli import main


def _json_commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _json_commands(cmd, path + (name,))
        elif any("--json" in p.opts for p in cmd.params):
            yield path + (name,), any("--data" in p.opts for p in cmd.params)


JSON_COMMANDS = list(_json_commands(main))


def test_the_enumeration_finds_the_commands():
    names = {" ".join(p) for p, _ in JSON_COMMANDS}
    assert {"status", "import", "run pipeline", "run freeze", "run train", "run resume"} <= names


@pytest.mark.parametrize("path,has_data", JSON_COMMANDS, ids=[" ".join(p) for p, _ in JSON_COMMANDS])
def test_a_failure_is_one_json_document_with_an_error(path, has_data, tmp_path, monkeypatch):
    monkeypatch.delenv("GHOSTS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    args = list(path) + ["--json"] + (["--data", str(tmp_path / "not-a-workspace")] if has_data else [])
    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0, res.output
    doc = json.loads(res.stdout)  # the whole of stdout is one JSON document
    assert isinstance(doc, dict) and doc["error"], doc
    assert "error" in res.stderr.lower()


def test_a_success_prints_only_the_result(tmp_path, few_faces):
    ws = tmp_path / "ws"
    assert CliRunner().invoke(main, ["init", "--data", str(ws)]).exit_code == 0
    imported = CliRunner().invoke(main, ["import", str(few_faces), "--data", str(ws), "--json"])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout)["added"] == 4
    status = CliRunner().invoke(main, ["status", "--data", str(ws), "--json"])
    assert status.exit_code == 0 and "error" not in json.loads(status.stdout)
    assert json.loads(status.stdout)["images"]["total"] == 4


def test_a_usage_error_is_json_too(tmp_path):
    res = CliRunner().invoke(main, ["run", "train", "--json", "--archive", str(tmp_path / "missing.zip")])
    assert res.exit_code == 2
    assert "missing.zip" in json.loads(res.stdout)["error"]
