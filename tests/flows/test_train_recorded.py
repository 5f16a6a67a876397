"""Training runs started by hand (`ghosts train`, `torchrun -m training`, both training.command) are recorded
in the catalog of the archive's workspace, so `ghosts status` and takedown's list of runs see them."""

from __future__ import annotations

import json

from click.testing import CliRunner

from curation.catalog.schema import TrainingRun
from flows.cli import main
from tests.training.archives import make_archive

TINY = [
    "--kimg",
    "0.016",
    "--cbase",
    "256",
    "--cmax",
    "32",
    "--map",
    "1",
    "--batch",
    "8",
    "--metrics",
    "none",
    "--workers",
    "0",
    "--snap",
    "1",
    "--tick",
    "0.008",
    "--device",
    "cpu",
]


def test_ghosts_train_is_recorded_in_the_archives_workspace(workspace, monkeypatch):
    monkeypatch.delenv("GHOSTS_DATA", raising=False)
    (workspace.root / "datasets").mkdir(exist_ok=True)
    archive = make_archive(workspace.root / "datasets", n=8, res=32)
    res = CliRunner().invoke(
        main, ["train", "--archive", str(archive), "--outdir", str(workspace.runs_dir)] + TINY
    )
    assert res.exit_code == 0, res.output
    with workspace.session() as s:
        row = s.query(TrainingRun).one()
        assert row.status == "completed" and row.finished_at is not None
        assert row.options["started_by"].startswith("ghosts train") and row.last_snapshot
        assert row.run_dir.startswith(str(workspace.runs_dir))
    status = CliRunner().invoke(main, ["status", "--data", str(workspace.root), "--json"])
    assert json.loads(status.stdout)["training_runs"] == {"completed": 1}


def test_a_failed_manual_run_is_recorded_failed(workspace, monkeypatch):
    monkeypatch.setenv("GHOSTS_DATA", str(workspace.root))
    (workspace.root / "datasets").mkdir(exist_ok=True)
    archive = make_archive(workspace.root / "datasets", n=8, res=32)
    broken = (
        workspace.root / "broken.json"
    )  # a snapshot that exists but does not load: the run starts, then fails
    broken.write_text("{")
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--archive",
            str(archive),
            "--outdir",
            str(workspace.runs_dir),
            "--resume",
            str(broken),
        ]
        + TINY,
    )
    assert res.exit_code != 0
    with workspace.session() as s:
        assert [r.status for r in s.query(TrainingRun)] == ["failed"]


def test_a_run_is_recorded_in_the_workspace_holding_its_archive_not_ghosts_data(
    workspace, tmp_path, monkeypatch
):
    from curation.catalog.workspace import init_workspace

    other = init_workspace(tmp_path / "other")  # GHOSTS_DATA names it; the archive lies in `workspace`
    monkeypatch.setenv("GHOSTS_DATA", str(other.root))
    (workspace.root / "datasets").mkdir(exist_ok=True)
    archive = make_archive(workspace.root / "datasets", n=8, res=32)
    res = CliRunner().invoke(
        main, ["train", "--archive", str(archive), "--outdir", str(tmp_path / "runs")] + TINY
    )
    assert res.exit_code == 0, res.output
    with workspace.session() as s:
        assert [r.status for r in s.query(TrainingRun)] == ["completed"]
    with other.session() as s:
        assert s.query(TrainingRun).count() == 0


def test_the_workspace_holding_an_archive_follows_what_was_typed(workspace, tmp_path, monkeypatch):
    from curation.catalog.runs import workspace_holding
    from curation.catalog.workspace import init_workspace

    other = init_workspace(tmp_path / "other")
    monkeypatch.setenv("GHOSTS_DATA", str(other.root))
    inside = workspace.root / "datasets" / "a.zip"
    stray = tmp_path / "elsewhere" / "a.zip"  # in no workspace
    for path in (inside, stray):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PK")
    # --archive: the workspace above the file first, else the --data one (GHOSTS_DATA when not typed)
    assert workspace_holding(inside, other.root).root == workspace.root
    assert workspace_holding(stray, workspace.root).root == workspace.root
    assert workspace_holding(stray).root == other.root
    # no --archive: the --data workspace whose newest frozen archive trains, whatever GHOSTS_DATA says
    assert workspace_holding(stray, workspace.root, from_data=True).root == workspace.root
    assert workspace_holding(inside, None, from_data=True).root == other.root  # --data left to GHOSTS_DATA
    monkeypatch.delenv("GHOSTS_DATA")
    assert workspace_holding(stray) is None
