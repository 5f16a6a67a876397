"""Rounds on record, ratings kept with decisions, and decisions serialised per face under concurrent requests."""

from __future__ import annotations

import contextlib

import pytest
from sqlalchemy import select

from curation.catalog.schema import Decision, Face, ReviewRound
from curation.review import complete_selection, decide, open_round, undo_last
from curation.review.decisions import RoundClosed
from curation.review.selection import review_counts, round_history
from tests.curation.test_review_api import client_for, csrf_of
from tests.curation.test_review_support import hammer, make_catalog


@pytest.fixture
def faces(workspace):
    return make_catalog(workspace, photos=4, faces_per_photo=3)["faces"]


def test_a_closed_round_is_immutable_and_later_decisions_open_the_next(workspace, faces):
    first = open_round(workspace, target=4, reviewer="ann")
    decide(workspace, faces[:3], "accepted", "ann")
    done = complete_selection(workspace, "bob")
    assert (done.id, done.accepted, done.closed_by, done.reviewer) == (first.id, 3, "bob", "ann")
    with pytest.raises(RoundClosed, match=f"round {first.id}"):
        undo_last(workspace, "ann")  # the closed round keeps its 3
    with workspace.session() as s:
        assert sum(f.decision == "accepted" for f in s.scalars(select(Face))) == 3
        assert s.get(ReviewRound, first.id).accepted == 3
    batch = decide(workspace, faces[3:4], "accepted", "ann")  # goes into round 2, visibly
    assert batch.round_id != first.id
    counts = review_counts(workspace)
    assert counts["round_id"] == batch.round_id and counts["round_open"] and counts["accepted"] == 4
    assert undo_last(workspace, "ann").changes[0].face_id == faces[3]  # inside the open round: fine
    with pytest.raises(RoundClosed):
        undo_last(workspace, "ann")
    with workspace.session() as s:
        rounds = round_history(s)
        assert [r["id"] for r in rounds] == [batch.round_id, first.id]
        assert rounds[1]["closed_by"] == "bob" and rounds[1]["accepted"] == 3 and rounds[1]["decisions"] == 3
        assert rounds[0]["closed"] is None and rounds[0]["target"] == 4 and rounds[0]["decisions"] == 2


def test_ratings_are_kept_with_the_decision_and_undone(workspace, faces):
    f = faces[0]
    decide(workspace, [f], "accepted", "ann", rating=4)
    decide(workspace, [f], None, "ann", rating=2)  # a rating step keeps the decision
    with workspace.session() as s:
        assert (s.get(Face, f).decision, s.get(Face, f).rating) == ("accepted", 2)
    undo_last(workspace, "ann")
    with workspace.session() as s:
        assert (s.get(Face, f).decision, s.get(Face, f).rating) == ("accepted", 4)
    undo_last(workspace, "ann")
    with workspace.session() as s:
        assert (s.get(Face, f).decision, s.get(Face, f).rating) == ("undecided", None)
    with pytest.raises(Exception, match="rating must be 1 to 5"):
        decide(workspace, [f], None, "ann", rating=9)


def test_concurrent_posts_keep_history_and_undo_right(workspace, faces):
    """Two tabs hammer the same faces: every history row's `previous` is the state the row before it left."""
    with client_for(workspace, target=5) as c:
        h = {"x-csrf-token": csrf_of(c)}
        posted = ("accepted", "rejected", "skipped", "accepted")
        assert not hammer(lambda: contextlib.nullcontext(c), faces[:3], posted, h)  # tabs share a client
        with workspace.session() as s:
            for fid in faces[:3]:
                rows = s.scalars(select(Decision).where(Decision.face_id == fid).order_by(Decision.id)).all()
                assert len(rows) == 40
                state = "undecided"
                for row in rows:
                    assert row.previous == state, (fid, row.id)
                    state = row.decision
                assert s.get(Face, fid).decision == state
        for _ in range(120):  # undo everything, newest first: every face ends where it started
            assert c.post("/api/undo", headers=h).status_code == 200
        assert c.post("/api/undo", headers=h).status_code == 409
        with workspace.session() as s:
            assert {s.get(Face, f).decision for f in faces[:3]} == {"undecided"}


def test_rating_and_restore_over_http(workspace, faces):
    with client_for(workspace, target=5) as c:
        h = {"x-csrf-token": csrf_of(c)}
        r = c.post("/api/decisions", json={"face_ids": [faces[0]], "rating": 5}, headers=h)
        assert r.status_code == 200 and r.json()["changes"][0]["rating"] == 5
        assert c.post("/api/decisions", json={"face_ids": [faces[0]]}, headers=h).status_code == 422
        assert c.post(f"/api/faces/{faces[1]}/delete", headers=h).status_code == 200
        assert faces[1] in [g["id"] for g in c.get("/api/faces/deleted").json()]
        before = c.get("/api/counts").json()["total"]
        assert c.post(f"/api/faces/{faces[1]}/restore", headers=h).json()["total"] == before + 1
        assert faces[1] not in [g["id"] for g in c.get("/api/faces/deleted").json()]
