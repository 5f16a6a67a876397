"""The train flow: progress/fakes/stats artifacts, one training per archive, take-over of a dead claim."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curation.catalog.runs import claim_training_run, finish_training_run, training_key
from curation.catalog.schema import TrainingRun
from tests.flows.conftest import read_artifact, read_artifacts
from tests.flows.tiny import TINY
from tests.training.archives import make_archive


def test_train_flow_reports_progress_trains_once_and_resumes_a_failed_run(prefect_api, workspace, tmp_path):
    from flows.train import TrainSettings, train
    from training.checkpoint import load_generator

    archive = make_archive(tmp_path, n=8, res=32)
    first = train(archive=str(archive), settings=TrainSettings(**TINY), data=str(workspace.root))
    assert first["skipped"] is False and first["kimg"] >= 0.016
    snapshot = Path(first["snapshot"])
    G = load_generator(snapshot)
    assert G.img_resolution == 32
    assert Path(first["run_dir"]).parent == workspace.runs_dir / f"blobs-{first['sha256'][:12]}"

    with workspace.session() as s:
        row = s.query(TrainingRun).one()
        assert (row.status, row.idempotency_key, row.run_dir) == (
            "completed",
            training_key(first["sha256"]),
            first["run_dir"],
        )
        assert row.last_snapshot == first["snapshot"] and row.finished_at is not None

    progress = read_artifact("train-progress")
    assert progress.type == "progress" and float(progress.data) == 100.0
    fakes = read_artifacts("train-fakes")
    assert fakes and fakes[0].type == "image" and fakes[0].data.startswith("data:image/jpeg;base64,")
    stats = read_artifact("train-stats")
    assert stats.type == "table" and "Progress/kimg" in stats.data

    # A first look at the model: a grid and a looping morph, as files and as artifacts.
    from flows.explore import explore

    looked = explore(network=first["snapshot"], grid_seeds=4, morph_seeds=[0, 1], frames=2, device="cpu")
    assert Path(looked["grid"]).is_file() and Path(looked["morph"]).stat().st_size > 0
    assert Path(looked["grid"]).parent == snapshot.parent / "explore"
    assert read_artifact("explore-grid").type == "image"
    assert "data:image/gif;base64," in read_artifact("explore-morph").data

    # The same archive again (an event delivered twice): nothing trains, the first run is named.
    again = train(
        archive=str(archive), settings=TrainSettings(**TINY), data=str(workspace.root), sha256=first["sha256"]
    )
    assert again["skipped"] is True and "already trained" in again["reason"]
    with workspace.session() as s:
        assert s.query(TrainingRun).count() == 1

    # A run that failed half-way is taken over and continued in place from its last snapshot.
    with workspace.session() as s:
        s.query(TrainingRun).update({"status": "failed"})
    resumed = train(
        archive=str(archive), settings=TrainSettings(**{**TINY, "kimg": 0.024}), data=str(workspace.root)
    )
    assert resumed["skipped"] is False
    assert resumed["run_dir"] == first["run_dir"]  # `--resume latest` in the same folder, not a new run
    assert resumed["kimg"] >= 0.024
    with workspace.session() as s:
        row = s.query(TrainingRun).one()
        assert row.status == "completed" and row.options["taken_over_from"] is not None


def test_train_flow_refuses_a_changed_archive(prefect_api, workspace, tmp_path):
    from curation.catalog.errors import GhostsError
    from flows.train import TrainSettings, train

    archive = make_archive(tmp_path, n=4, res=32, name="changed")
    with pytest.raises(GhostsError, match="not the 0000000000000000"):
        train(archive=str(archive), settings=TrainSettings(**TINY), data=str(workspace.root), sha256="0" * 64)
    with pytest.raises(GhostsError, match="no dataset archive"):
        train(archive=str(tmp_path / "missing.zip"), settings=TrainSettings(**TINY), data=str(workspace.root))


# --- the claim itself (catalog only, no Prefect) ------------------------------------------------------------


def _claim(ws, tmp_path, owner, alive=True, **kw):
    return claim_training_run(
        ws,
        sha256="ab" * 32,
        outdir=tmp_path / "runs",
        cfg="auto",
        kimg=1.0,
        options={},
        owner=owner,
        owner_alive=lambda run: alive,
        **kw,
    )


def test_claim_skips_while_the_owner_lives_and_takes_over_when_it_is_gone(workspace, tmp_path):
    first = _claim(workspace, tmp_path, "run-a")
    assert first.action == "start" and first.outdir == str(tmp_path / "runs")
    busy = _claim(workspace, tmp_path, "run-b", alive=True)
    assert busy.action == "skip" and "run-a" in busy.reason
    gone = _claim(workspace, tmp_path, "run-c", alive=False)
    assert gone.action == "resume" and gone.run_id == first.run_id
    # run-c holds it now; a silent owner is presumed dead after stale_after_s even if Prefect says "Running".
    stale = _claim(workspace, tmp_path, "run-d", alive=True, stale_after_s=0)
    assert stale.action == "resume"
    finish_training_run(workspace, first.run_id, "completed", run_dir=str(tmp_path / "runs" / "00000-x"))
    done = _claim(workspace, tmp_path, "run-e", alive=False)
    assert done.action == "skip" and "already trained" in done.reason
    with workspace.session() as s:
        row = s.query(TrainingRun).one()
        assert row.options["flow_run_id"] == "run-d" and row.status == "completed"


def test_claim_by_the_same_flow_run_resumes(workspace, tmp_path):
    assert _claim(workspace, tmp_path, "run-a").action == "start"
    assert _claim(workspace, tmp_path, "run-a").action == "resume"  # a retry of the same run


def test_train_flow_takes_the_resume_values_the_cli_takes(prefect_api, workspace, tmp_path):
    from curation.catalog.errors import GhostsError
    from flows.train import TrainSettings, train

    base = make_archive(tmp_path / "a", n=8, res=32)
    first = train(archive=str(base), settings=TrainSettings(**TINY), data=str(workspace.root))
    # A run folder, as on the command line: transfer learning from its newest snapshot, in a new run.
    other = make_archive(tmp_path / "b", n=8, res=32, seed=1, name="other")
    tuned = train(
        archive=str(other),
        settings=TrainSettings(**{**TINY, "resume": first["run_dir"]}),
        data=str(workspace.root),
    )
    assert tuned["skipped"] is False and tuned["run_dir"] != first["run_dir"]
    stored = json.loads((Path(tuned["run_dir"]) / "training_options.json").read_text())
    assert stored["resume"] == first["snapshot"] and stored["ada_kimg"] == 100  # the reference's transfer
    # A typo is refused before a run is claimed, with the forms --resume takes.
    third = make_archive(tmp_path / "c", n=8, res=32, seed=2, name="third")
    with pytest.raises(GhostsError, match="no such snapshot, .pkl or run folder"):
        train(
            archive=str(third),
            settings=TrainSettings(**{**TINY, "resume": str(tmp_path / "typo.pkl")}),
            data=str(workspace.root),
        )
    with workspace.session() as s:
        assert s.query(TrainingRun).count() == 2
