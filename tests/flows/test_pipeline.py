"""The whole chain on the real test photos: import -> analyse -> review gate -> freeze -> train.

The local import source stands in for Instagram; the gate is resumed by the review page's own call.
"""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from sqlalchemy import select

from curation.catalog.schema import DatasetVersion, Face, Image, ReviewRound, TrainingRun
from curation.review.decisions import decide
from flows.events import DATASET_FROZEN
from flows.review_gate import complete_selection
from tests.flows.conftest import flow_run_state, read_artifact, wait_for
from tests.flows.tiny import TINY


def _events(resource_prefix: str) -> list[dict]:
    from prefect.settings import get_current_settings

    body = {
        "filter": {
            "event": {"name": [DATASET_FROZEN]},
            "resource": {"id_prefix": [resource_prefix]},
            "order": "DESC",
        },
        "limit": 20,
    }
    resp = httpx.post(f"{get_current_settings().api.url}/events/filter", json=body, timeout=30)
    resp.raise_for_status()
    return resp.json()["events"]


def test_pipeline_end_to_end(prefect_api, workspace, faces_dir):
    from flows.freeze import freeze
    from flows.pipeline import pipeline
    from flows.train import TrainSettings
    from training.checkpoint import load_generator

    box: dict = {}

    def run():
        try:
            box["result"] = pipeline(
                paths=[str(faces_dir)],
                target=6,
                name="faces",
                resolution=64,
                settings=TrainSettings(**TINY),
                data=str(workspace.root),
                batch_size=4,
                workers=2,
                explore_after=False,
                review_poll_interval=1,
            )
        except BaseException as e:  # noqa: BLE001 - handed to the test thread, which re-raises it
            box["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()

    def paused_gate():
        if "error" in box:
            raise box["error"]
        with workspace.session() as s:
            rnd = s.scalars(select(ReviewRound).where(ReviewRound.done_at.is_(None))).first()
            run_id = rnd.flow_run_id if rnd else None
        return run_id if run_id and flow_run_state(run_id).is_paused() else None

    gate_run = wait_for(paused_gate, timeout=300, every=1, what="the pipeline to reach the review gate")

    # Analysis is done: every photo was looked at, faces were found, the dog photo has none.
    with workspace.session() as s:
        statuses = dict(s.execute(select(Image.provenance["name"].as_string(), Image.status)).all())
        faces = (
            s.execute(select(Face.id).where(Face.deleted.is_(False)).order_by(Face.score.desc(), Face.id))
            .scalars()
            .all()
        )
    assert len(statuses) == 12 and "new" not in statuses.values()
    assert statuses["dogs.jpg"] == "no_face" and statuses["Tom_Cruise_avp_2014_4.jpg"] == "analyzed"
    assert len(faces) >= 12
    summary = read_artifact("scrape-and-align-summary")
    assert summary.type == "table" and "new images" in summary.data
    assert read_artifact("scrape-and-align-faces").data.startswith("data:image/jpeg;base64,")
    assert "0 of 6 faces accepted" in read_artifact("review-gate", gate_run).data

    # The reviewer picks six faces and presses "Selection done".
    decide(workspace, faces[:6], "accepted", "alice")
    decide(workspace, faces[6:8], "rejected", "alice", "blurry")
    complete_selection(workspace, reviewer="alice")
    th.join(timeout=600)
    assert not th.is_alive(), "the pipeline did not finish after Selection done"
    assert "error" not in box, box.get("error")
    result = box["result"]

    assert result["review"]["accepted"] == 6 and result["review"]["reviewer"] == "alice"
    frozen = result["freeze"]
    assert frozen["count"] == 6 and frozen["resolution"] == 64 and Path(frozen["path"]).is_file()
    trained = result["train"]
    assert trained["skipped"] is False
    G = load_generator(trained["snapshot"])
    assert G.img_resolution == 64
    with workspace.session() as s:
        assert s.scalars(select(DatasetVersion)).one().sha256 == frozen["sha256"]
        run = s.scalars(select(TrainingRun)).one()
        assert run.status == "completed" and run.dataset_sha256 == frozen["sha256"]

    # The freeze announced itself with the archive and its digest.
    events = wait_for(lambda: _events("ghosts.dataset.faces.v1"), timeout=30, what="the frozen event")
    payload = events[0]["payload"]
    assert payload["archive"] == frozen["path"] and payload["sha256"] == frozen["sha256"]
    assert (
        payload["workspace"] == str(workspace.root) and payload["count"] == 6 and payload["created"] is True
    )
    assert frozen["event_id"] == events[0]["id"]

    # Freezing the same selection again: the same version, announced again (training dedupes on sha256).
    again = freeze(name="faces", resolution=64, data=str(workspace.root))
    assert (again["version"], again["sha256"], again["created"]) == (1, frozen["sha256"], False)
    assert read_artifact("dataset-faces").type == "markdown"
