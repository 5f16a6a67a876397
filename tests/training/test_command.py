"""`ghosts train`'s --data is the workspace (its newest frozen dataset version trains); the archive is
--archive, and NVlabs' `--data x.zip` is refused with what to type instead."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from curation.catalog.schema import DatasetVersion
from flows.cli import main
from tests.training.archives import make_archive


@pytest.fixture(autouse=True)
def _no_ghosts_data(monkeypatch):
    monkeypatch.delenv("GHOSTS_DATA", raising=False)


def _freeze(ws, name: str, version: int, superseded: str | None = None):
    """A dataset version as `ghosts freeze` records it: the archive under datasets/NAME/vN, and its row."""
    archive = make_archive(ws.datasets_dir / name / f"v{version}", n=4, res=32, name=f"{name}-v{version}")
    with ws.session() as s:
        s.add(
            DatasetVersion(
                name=name,
                version=version,
                resolution=32,
                path=ws.relpath(archive),
                sha256=f"{version:064d}",
                count=4,
                superseded_reason=superseded,
            )
        )
    return archive


def _dry_run(*args):
    return CliRunner().invoke(main, ["train", *map(str, args), "--dry-run", "--kimg", "0.01"])


def _trained_archive(output: str) -> str:
    opts = json.loads(output[output.index("{") : output.rindex("}") + 1])
    return opts["data"]


def test_data_names_the_workspace_and_its_newest_frozen_version_trains(workspace, tmp_path):
    older = _freeze(workspace, "faces", 1)
    newest = _freeze(workspace, "faces", 2)
    _freeze(workspace, "faces", 3, superseded="takedown of owner x")  # replaced by a takedown: never trained
    r = _dry_run("--data", workspace.root, "--outdir", tmp_path / "runs")
    assert r.exit_code == 0, r.output
    assert _trained_archive(r.stdout) == str(newest.resolve())
    assert f"training on {newest}" in r.stderr
    # --archive still trains any archive, the NVlabs way.
    r = _dry_run("--archive", older, "--outdir", tmp_path / "runs")
    assert r.exit_code == 0 and _trained_archive(r.stdout) == str(older.resolve())


def test_a_workspace_without_a_frozen_version_says_what_to_do(workspace, tmp_path):
    r = _dry_run("--data", workspace.root, "--outdir", tmp_path / "runs")
    assert r.exit_code == 1 and "no frozen dataset yet" in r.output and "ghosts freeze" in r.output
    r = _dry_run("--data", tmp_path / "nowhere", "--outdir", tmp_path / "runs")
    assert r.exit_code == 1 and "no ghosts workspace" in r.output and "--archive ZIP" in r.output


@pytest.mark.parametrize("exists", [True, False])
def test_nvlabs_data_zip_is_refused_with_what_to_type(tmp_path, exists):
    archive = make_archive(tmp_path, n=4, res=32) if exists else tmp_path / "faces.zip"
    r = CliRunner().invoke(main, ["train", "--data", str(archive), "--outdir", str(tmp_path / "runs")])
    assert r.exit_code == 2, r.output
    assert f"--archive {archive}" in r.output and "--data WORKSPACE" in r.output
    assert not (tmp_path / "runs").exists()


def test_torchrun_module_refuses_it_too(tmp_path):
    archive = make_archive(tmp_path, n=4, res=32)
    r = subprocess.run(
        [sys.executable, "-m", "training", "--data", str(archive)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and f"--archive {archive}" in r.stderr and "Traceback" not in r.stderr
