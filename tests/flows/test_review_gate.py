"""The review gate pauses the flow run and is resumed by "Selection done" (the review page's own call)."""

from __future__ import annotations

import threading

from curation.catalog.schema import Face, Image, ReviewRound
from curation.review.decisions import decide
from flows.review_gate import complete_selection
from tests.flows.conftest import flow_run_state, read_artifact, wait_for


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


def _start_gate(ws, **kw):
    from flows.review_gate import review_gate

    box: dict = {}

    def target():
        try:
            box["result"] = review_gate(data=str(ws.root), poll_interval=1, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread, whose assertion reports it
            box["error"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()

    def paused_run():
        with ws.session() as s:
            rnd = s.query(ReviewRound).filter(ReviewRound.done_at.is_(None)).one_or_none()
            run_id = rnd.flow_run_id if rnd else None
        return run_id if run_id and flow_run_state(run_id).is_paused() else None

    run_id = wait_for(paused_run, timeout=90, what="the review gate to pause")
    return th, box, run_id


def test_gate_pauses_until_selection_done(prefect_api, workspace):
    ids = _faces(workspace, 5)
    th, box, run_id = _start_gate(workspace, target=3)
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
    th, box, run_id = _start_gate(workspace, target=10)
    resume_flow_run(run_id, run_input={"reviewer": "bob"})  # the UI form: only the reviewer filled in
    th.join(timeout=180)
    assert "error" not in box, box.get("error")
    assert box["result"]["accepted"] == 1 and box["result"]["reviewer"] == "bob"
    with workspace.session() as s:
        rnd = s.get(ReviewRound, box["result"]["round_id"])
        assert rnd.done_at is not None and rnd.reviewer == "bob" and rnd.accepted == 1
