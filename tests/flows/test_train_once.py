"""One train flow run per archive: an archive that is trained (or being trained) is not announced again, so
the train-on-freeze trigger creates no second run for it. Against the session's Prefect server, with the
trigger deployed."""

from __future__ import annotations

import time

import httpx

from curation.catalog.runs import claim_training_run, finish_training_run
from tests.curation.test_freeze import PASCAL, add_faces
from tests.flows.conftest import wait_for


def _train_runs(deployment_id) -> list[dict]:
    from prefect.settings import get_current_settings

    resp = httpx.post(
        f"{get_current_settings().api.url}/flow_runs/filter",
        timeout=30,
        json={"limit": 50, "offset": 0, "deployments": {"id": {"any_": [str(deployment_id)]}}},
    )
    resp.raise_for_status()
    return resp.json()


def test_refreezing_a_trained_archive_creates_no_train_run(prefect_api, workspace, faces_dir):
    from flows.deploy import frozen_trigger
    from flows.freeze import freeze
    from flows.train import train

    dep_id = train.to_deployment(
        name=f"once-{workspace.root.name}",
        triggers=[frozen_trigger()],
        parameters={"data": str(workspace.root)},
    ).apply()
    add_faces(workspace, faces_dir, PASCAL)
    first = freeze(name="once", resolution=64, data=str(workspace.root))
    assert first["event_id"] is not None and first["training"] is None
    wait_for(
        lambda: any(r["parameters"].get("sha256") == first["sha256"] for r in _train_runs(dep_id)),
        timeout=60,
        what="the frozen event to create a train run",
    )

    # That archive is then trained (the run the trigger created, or any other way the flow trains it).
    claim = claim_training_run(
        workspace,
        sha256=first["sha256"],
        outdir=workspace.runs_dir / "x",
        cfg="auto",
        kimg=1,
        options={},
        owner=None,
        owner_alive=lambda _: False,
    )
    finish_training_run(workspace, claim.run_id, "completed")
    again = freeze(name="once", resolution=64, data=str(workspace.root))  # same selection, same archive
    assert (
        again["sha256"] == first["sha256"] and again["event_id"] is None and again["training"] == "completed"
    )
    time.sleep(5)  # what a trigger needs to react (it took well under that for the first event)
    assert sum(r["parameters"].get("sha256") == first["sha256"] for r in _train_runs(dep_id)) == 1
