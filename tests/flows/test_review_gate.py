"""The review gate pauses the flow run and is resumed by "Selection done" (the review page's own call), which
otherwise says exactly why it could not resume the run and how to (real Prefect API where a run is involved)."""

from __future__ import annotations

import uuid

import pytest
from prefect.states import Cancelled, Completed, Crashed, Running

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Face, Image, ReviewRound
from curation.review.decisions import decide
from curation.review.selection import open_round
from flows.review_gate import complete_selection
from tests.flows.conftest import flow_run_state, read_artifact, start_gate


def _faces(ws, n: int) -> list[int]:
    ids = []
    with ws.session() as s:
        for i in range(n):
            im = Image(
                sha256=f"{i:064x}", path=f"images/{i:02x}/x.jpg", source_kind="local", status="analyzed"
            )
            s.add(im)
            s.flush()
            face = Face(image_id=im.id, index=0, detector="hog", score=0.5)
            s.add(face)
            s.flush()
            ids.append(face.id)
    return ids


def test_gate_pauses_until_selection_done(prefect_api, workspace):
    ids = _faces(workspace, 5)
    th, box, run_id = start_gate(workspace, target=3)
    assert th.is_alive()  # paused, waiting for a person

    art = read_artifact("review-gate")
    assert art is not None and art.type == "markdown" and str(art.flow_run_id) == run_id
    assert (
        "0 of 3 faces accepted" in art.data
        and "Selection done" in art.data
        and str(workspace.root) in art.data
    )

    decide(workspace, ids[:3], "accepted", "alice")
    decide(workspace, ids[3:4], "rejected", "alice", "blurry")
    rnd = complete_selection(workspace, reviewer="alice")  # what the page's "Selection done" button calls
    th.join(timeout=180)
    assert not th.is_alive(), "the gate did not finish after Selection done"
    assert "error" not in box, box.get("error")
    assert box["result"] == {"round_id": rnd.id, "accepted": 3, "reviewer": "alice", "target": 3}
    assert flow_run_state(run_id).is_completed()
    assert rnd.done_at is not None and rnd.accepted == 3


def test_gate_resumed_from_the_prefect_ui_closes_the_round(prefect_api, workspace):
    from prefect.flow_runs import resume_flow_run

    ids = _faces(workspace, 2)
    decide(workspace, ids[:1], "accepted", "bob")
    th, box, run_id = start_gate(workspace, target=10)
    resume_flow_run(run_id, run_input={"reviewer": "bob"})  # the UI form: only the reviewer filled in
    th.join(timeout=180)
    assert "error" not in box, box.get("error")
    assert box["result"]["accepted"] == 1 and box["result"]["reviewer"] == "bob"
    with workspace.session() as s:
        rnd = s.get(ReviewRound, box["result"]["round_id"])
        assert rnd.done_at is not None and rnd.reviewer == "bob" and rnd.accepted == 1


# --- "Selection done" that cannot resume: the page says exactly why, and how to resume ------------------------


def _done(ws, reviewer: str = "rita"):
    """What the review page's "Selection done" runs (`ghosts review` passes make_resume(ws))."""
    from curation.review.selection import finish_round
    from flows.review_gate import make_resume

    return finish_round(ws, reviewer, make_resume(ws))


def test_selection_done_on_a_round_without_a_run_says_none_is_recorded(workspace):
    open_round(workspace, target=2)
    done = _done(workspace)
    assert not done.resumed and done.round.done_at is not None
    assert "no pipeline run is recorded for this round, so none was resumed" in done.note
    assert "`ghosts run resume RUN_ID`" in done.note


@pytest.mark.parametrize(
    "state, why",
    [
        (Completed, "is Completed, not Paused: it went on already"),
        (Crashed, "is Crashed, not Paused: it cannot be resumed; run the pipeline again"),
        (Cancelled, "is Cancelled, not Paused: it cannot be resumed; run the pipeline again"),
        (Running, "is Running, not Paused: it was resumed already and is going on"),
    ],
)
def test_selection_done_names_the_state_of_a_run_that_is_not_paused(prefect_api, workspace, state, why):
    from prefect import get_client

    from flows.review_gate import record_run_api, review_gate

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(review_gate, state=state())
    run_id = str(run.id)
    open_round(workspace, target=2, flow_run_id=run_id)
    record_run_api(workspace, run_id, prefect_api)
    done = _done(workspace)
    assert not done.resumed and done.round.done_at is not None  # nothing waits on it: the round is closed
    assert f"pipeline run {run_id} not resumed: flow run {run_id} on {prefect_api} {why}" in done.note


def test_selection_done_says_the_page_and_the_run_are_on_different_apis(prefect_api, workspace):
    from flows.review_gate import record_run_api

    run_id = str(uuid.uuid4())
    rnd = open_round(workspace, target=2, flow_run_id=run_id)
    record_run_api(workspace, run_id, "http://127.0.0.1:9/api")  # the run's server: nothing listens now
    with pytest.raises(GhostsError) as e:
        _done(workspace)
    msg = str(e.value)
    assert (
        f"the Prefect API at http://127.0.0.1:9/api, where flow run {run_id} waits (this page talks to "
        f"{prefect_api}), does not answer: start that server again" in msg
    )
    assert f"`PREFECT_API_URL=http://127.0.0.1:9/api ghosts run resume {run_id}`" in msg
    assert f"http://127.0.0.1:9/runs/flow-run/{run_id}" in msg  # the run's page in that server's UI
    assert "round is still open" in msg
    with workspace.session() as s:
        assert s.get(ReviewRound, rnd.id).done_at is None


def test_selection_done_says_a_foreground_runs_server_went_with_its_command(
    prefect_api, workspace, monkeypatch
):
    from flows.local_api import TEMPORARY_API_ENV
    from flows.review_gate import record_run_api

    run_id, gone = str(uuid.uuid4()), "http://127.0.0.1:9/api"
    open_round(workspace, target=2, flow_run_id=run_id)
    monkeypatch.setenv(TEMPORARY_API_ENV, gone)  # as while a foreground command runs on its own server
    record_run_api(workspace, run_id, gone)
    monkeypatch.delenv(TEMPORARY_API_ENV)
    with pytest.raises(GhostsError) as e:
        _done(workspace)
    assert (
        "does not answer: the foreground command that ran it ended, and its temporary server with it: "
        "run the pipeline again" in str(e.value)
    )


def test_selection_done_says_an_unrecorded_run_is_not_on_the_pages_api(prefect_api, workspace):
    run_id = str(uuid.uuid4())  # no record, and the page's API has never seen it
    open_round(workspace, target=2, flow_run_id=run_id)
    with pytest.raises(GhostsError) as e:
        _done(workspace)
    msg = str(e.value)
    assert (
        f"flow run {run_id} is not on the Prefect API at {prefect_api}: no API was recorded for it, so it ran "
        "on another server" in msg
    )
    assert f"`PREFECT_API_URL=<its server's API> ghosts run resume {run_id}`" in msg


def test_selection_done_says_no_api_is_known(workspace):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    run_id = str(uuid.uuid4())
    open_round(workspace, target=2, flow_run_id=run_id)
    with temporary_settings(restore_defaults={PREFECT_API_URL}), pytest.raises(GhostsError) as e:
        _done(workspace)
    assert (
        f"no Prefect API is known for flow run {run_id}: none was recorded for it in this workspace and this "
        "process has no PREFECT_API_URL" in str(e.value)
    )
