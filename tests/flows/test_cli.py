"""`ghosts run` / `ghosts serve`: what the user typed is checked first, with a clear message and exit 1."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from flows.cli import main


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "pipeline"], "nothing to bring in"),
        (["run", "pipeline", "--tag", "x", "--auto-accept", "score>>1"], "--auto-accept"),
        (["run", "pipeline", "--tag", "x", "--kimg", "0"], "--kimg"),
        (["run", "scrape-and-align"], "nothing to bring in"),
        (["serve", "--cron", "every night", "--tag", "x"], "--cron 'every night'"),
        (["serve", "--cron", "0 3 * * *"], "needs something to bring in"),
        (["serve", "--dask-address", "10.1.1.1:8786"], "scheduler's address"),
    ],
)
def test_cli_refuses_bad_input_before_running(workspace, args, message):
    result = CliRunner().invoke(main, [*args, "--data", str(workspace.root)])
    assert result.exit_code == 1, result.output
    assert message in result.output


def test_cli_needs_an_initialised_workspace(tmp_path):
    result = CliRunner().invoke(main, ["run", "freeze", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "ghosts init" in result.output


def test_run_group_lists_the_flows():
    result = CliRunner().invoke(main, ["run", "--help"])
    assert result.exit_code == 0
    for name in ("pipeline", "scrape-and-align", "review-gate", "freeze", "train", "explore"):
        assert name in result.output
