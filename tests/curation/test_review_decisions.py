"""The review's plain functions on a real catalog: decide, multi-level undo, rounds and "Selection done"."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Decision, Face, ReviewRound
from curation.review import complete_selection, decide, delete_face, open_round, undo_last
from curation.review.decisions import ON_ACCEPTED, keep_best
from curation.review.selection import DEFAULT_TARGET, review_counts
from tests.curation.test_review_support import link_duplicates, make_catalog


@pytest.fixture
def faces(workspace):
    return make_catalog(workspace, photos=3, faces_per_photo=2)["faces"]


def state(ws, fid):
    with ws.session() as s:
        f = s.get(Face, fid)
        return f.decision, f.reviewer, f.reason


def test_decide_writes_history_and_current_state(workspace, faces):
    batch = decide(workspace, [faces[0], faces[1], faces[0]], "accepted", "ann", reason="Sharp")
    assert [c.face_id for c in batch.changes] == faces[:2]  # duplicates collapse
    assert state(workspace, faces[0]) == ("accepted", "ann", "sharp")
    with workspace.session() as s:
        rows = s.scalars(select(Decision).order_by(Decision.id)).all()
        f = s.get(Face, faces[0])
        assert f.decided_at is not None
    assert [(r.face_id, r.decision, r.previous, r.reviewer) for r in rows] == [
        (faces[0], "accepted", "undecided", "ann"),
        (faces[1], "accepted", "undecided", "ann"),
    ]
    assert rows[0].decided_at == rows[1].decided_at  # one batch, one timestamp


def test_decide_refuses_nonsense(workspace, faces):
    with pytest.raises(GhostsError, match="unknown decision"):
        decide(workspace, faces[:1], "maybe", "ann")
    with pytest.raises(GhostsError, match="no faces"):
        decide(workspace, [], "accepted", "ann")
    with pytest.raises(GhostsError, match="short tag"):
        decide(workspace, faces[:1], "accepted", "ann", reason="undo #1")  # cannot fake an undo marker
    with pytest.raises(GhostsError, match="reviewer"):
        decide(workspace, faces[:1], "accepted", "")


def test_deleted_and_unknown_faces_are_kept_out(workspace, faces):
    delete_face(workspace, faces[0], "ann")
    batch = decide(workspace, [faces[0], 123456, faces[1]], "rejected", "ann")
    assert batch.kept == [faces[0], 123456] and [c.face_id for c in batch.changes] == [faces[1]]
    assert review_counts(workspace)["total"] == len(faces) - 1


def test_undo_walks_back_batch_by_batch(workspace, faces):
    f1, f2, f3 = faces[:3]
    decide(workspace, [f1], "accepted", "ann")
    decide(workspace, [f2, f3], "rejected", "ann", reason="blurry")
    decide(workspace, [f1], "skipped", "ann")
    assert undo_last(workspace, "ann").undone is not None
    assert state(workspace, f1) == ("accepted", "ann", None)  # back to the earlier decision, with its author
    second = undo_last(workspace, "ann")
    assert sorted(c.face_id for c in second.changes) == [f2, f3]
    assert state(workspace, f2) == ("undecided", None, None)
    undo_last(workspace, "ann")
    assert state(workspace, f1) == ("undecided", None, None)
    assert undo_last(workspace, "ann") is None
    # Deciding again after undoing starts a new step that undo reaches first.
    decide(workspace, [f3], "accepted", "ann")
    assert [c.face_id for c in undo_last(workspace, "ann").changes] == [f3]
    with workspace.session() as s:  # nothing was deleted from the history
        assert s.scalar(select(Decision.id).order_by(Decision.id.desc()).limit(1)) == 10


def test_undo_is_per_reviewer_and_never_overwrites_a_newer_decision(workspace, faces):
    f1, f2 = faces[:2]
    decide(workspace, [f1, f2], "accepted", "ann")
    decide(workspace, [f1], "rejected", "bob")  # last write wins
    assert state(workspace, f1) == ("rejected", "bob", None)
    out = undo_last(workspace, "ann")
    assert out.kept == [f1] and [c.face_id for c in out.changes] == [f2]
    assert state(workspace, f1) == ("rejected", "bob", None)
    assert undo_last(workspace, "ann") is None  # ann's batch counts as undone
    undo_last(workspace, "bob")
    assert state(workspace, f1)[0] == "accepted"  # bob's undo restores what ann had set


def test_rounds_open_once_and_close_with_counts(workspace, faces):
    rnd = open_round(workspace, target=3)
    assert rnd.target == 3 and rnd.done_at is None
    assert open_round(workspace).id == rnd.id  # joined, not duplicated
    run_id = str(uuid.uuid4())
    assert open_round(workspace, flow_run_id=run_id).flow_run_id == run_id
    with pytest.raises(GhostsError, match="not a Prefect flow run id"):
        open_round(workspace, flow_run_id="not-a-uuid")
    with pytest.raises(GhostsError, match="at least 1"):
        open_round(workspace, target=0)
    with workspace.session() as s:  # this test has no Prefect server: drop the run id again
        s.get(ReviewRound, rnd.id).flow_run_id = None
    decide(workspace, faces[:2], "accepted", "ann")
    decide(workspace, faces[2:3], "rejected", "ann")
    done = complete_selection(workspace, "ann")
    assert (done.id, done.accepted, done.reviewer) == (rnd.id, 2, "ann") and done.done_at is not None
    nxt = open_round(workspace)
    assert nxt.id != rnd.id and nxt.target == 3  # the target carries over
    assert review_counts(workspace)["round_open"]


def test_complete_without_a_round_creates_and_closes_one(workspace, faces):
    done = complete_selection(workspace, "ann")
    assert done.accepted == 0 and done.target == DEFAULT_TARGET and done.done_at is not None


def test_unreachable_prefect_keeps_the_round_open(workspace, faces):
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    from flows.review_gate import resume_waiting_run

    rnd = open_round(workspace, target=2, flow_run_id=str(uuid.uuid4()))
    decide(workspace, faces[:1], "accepted", "ann")
    unreachable = {
        PREFECT_API_URL: "http://127.0.0.1:9/api",
        PREFECT_CLIENT_MAX_RETRIES: 0,
    }  # nothing listens
    with (
        temporary_settings(updates=unreachable),
        pytest.raises(GhostsError, match="could not resume .* still open"),
    ):
        complete_selection(workspace, "ann", resume=resume_waiting_run)
    with workspace.session() as s:
        assert s.get(ReviewRound, rnd.id).done_at is None  # pressing the button again retries


def test_a_round_closes_even_when_nothing_can_resume_its_run(workspace, faces):
    from curation.review.selection import finish_round

    rnd = open_round(workspace, target=2, flow_run_id=str(uuid.uuid4()))
    decide(workspace, faces[:1], "accepted", "ann")
    done = finish_round(workspace, "ann")  # no `resume`: the review room never reaches Prefect itself
    assert (
        not done.resumed and "not resumed: this review page was started without a way to reach" in done.note
    )
    assert f"`ghosts run resume {rnd.flow_run_id}`" in done.note  # and how to resume it
    assert (done.round.id, done.round.accepted) == (rnd.id, 1) and done.round.done_at is not None


def test_on_accepted_hooks_hear_of_every_face_a_batch_accepts(workspace, faces):
    heard: list[list[int]] = []
    ON_ACCEPTED.append(lambda ws, ids: heard.append(sorted(ids)))
    try:
        decide(workspace, faces[:2], "rejected", "ann")
        decide(workspace, faces[:1], None, "ann", rating=4)  # a rating step accepts nothing
        assert heard == []
        decide(workspace, faces[2:4], "accepted", "ann")
        decide(workspace, faces[2:4], None, "ann", rating=5)  # rating accepted faces accepts nothing new
        assert heard == [sorted(faces[2:4])]
        decide(workspace, faces[:1], "accepted", "ann")
        undo_last(workspace, "ann")  # back to rejected: nothing accepted
        assert heard == [sorted(faces[2:4]), [faces[0]]]
        decide(workspace, faces[2:3], "rejected", "ann")
        undo_last(workspace, "ann")  # back to accepted: the face is accepted again
        assert heard[-1] == [faces[2]]
        with workspace.session() as s:  # keep-best accepts the best face of a near-duplicate group
            a, b = (s.get(Face, f).image_id for f in (faces[0], faces[4]))
        link_duplicates(workspace, a, b)
        batch = keep_best(workspace, faces[0], "ann")
        assert heard[-1] == [c.face_id for c in batch.changes if c.decision == "accepted"]
        assert len(heard[-1]) == 1
    finally:
        ON_ACCEPTED.pop()
