"""The --auto-accept rule: parsing with clear errors, and applying it to a real catalog."""

from __future__ import annotations

import pytest

from curation.catalog.schema import Decision, Face, Image
from curation.review.autoaccept import AcceptRule, Condition, RuleError, apply_rule, parse_rule
from curation.review.decisions import decide


def test_parse_rule_reads_every_clause_kind():
    rule = parse_rule(" score >= 0.6, max=200 ,yaw<20, flagged=no")
    assert rule == AcceptRule((Condition("score", ">=", 0.6), Condition("yaw", "<", 20.0)), 200, "no")
    assert str(rule) == "score>=0.6,yaw<20,max=200,flagged=no"
    assert parse_rule("max=5") == AcceptRule((), 5, "any")
    assert parse_rule("Score>0.5").conditions == (Condition("score", ">", 0.5),)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "needs a rule"),
        ("score>=0.6,,max=2", "empty clause"),
        ("score>=0.6,", "empty clause"),
        ("beauty>=3", "unknown measure 'beauty'"),
        ("score=0.6", "compare with"),
        ("score>=high", "'high' is not a number"),
        ("score>=nan", "finite"),
        ("max=0", "at least 1"),
        ("max=2.5", "whole number"),
        ("max=2,max=3", "once"),
        ("max>=2", "write max=N"),
        ("flagged=maybe", "flagged=no"),
        ("score 0.6", "cannot read"),
    ],
)
def test_parse_rule_errors_say_what_is_wrong(text, fragment):
    with pytest.raises(RuleError) as e:
        parse_rule(text)
    assert fragment in str(e.value)


def _faces(ws, scores: list[float | None], flagged: set[int] = frozenset()) -> list[int]:
    """One image per face, with real catalog rows."""
    ids = []
    with ws.session() as s:
        for i, score in enumerate(scores):
            im = Image(
                sha256=f"{i:064x}", path=f"images/{i:02x}/x.jpg", source_kind="local", status="analyzed"
            )
            s.add(im)
            s.flush()
            f = Face(image_id=im.id, index=0, detector="hog", score=score, flagged=i in flagged, yaw=float(i))
            s.add(f)
            s.flush()
            ids.append(f.id)
    return ids


def test_apply_rule_takes_the_best_undecided_faces_up_to_max(workspace):
    ids = _faces(workspace, [0.9, 0.5, 0.7, None, 0.95, 0.65])
    res = apply_rule(workspace, "score>=0.6,max=3")
    assert res.candidates == 4  # 0.9, 0.7, 0.95, 0.65
    assert res.accepted == [ids[4], ids[0], ids[2]]  # best score first
    with workspace.session() as s:
        accepted = {f.id for f in s.query(Face).filter(Face.decision == "accepted")}
        rows = s.query(Decision).all()
    assert accepted == {ids[4], ids[0], ids[2]}
    assert {r.reviewer for r in rows} == {"auto-accept"} and len(rows) == 3

    # max counts what is accepted already: running the same rule again accepts nothing more.
    again = apply_rule(workspace, "score>=0.6,max=3")
    assert again.accepted == [] and again.accepted_before == 3 and again.accepted_total == 3


def test_apply_rule_never_overrides_a_person(workspace):
    ids = _faces(workspace, [0.9, 0.8, 0.7], flagged={1})
    decide(workspace, [ids[0]], "rejected", "alice", "blurry")
    res = apply_rule(workspace, parse_rule("score>=0.5,flagged=no"))
    assert res.accepted == [ids[2]]  # 0 was rejected by alice, 1 is flagged
    with workspace.session() as s:
        assert s.get(Face, ids[0]).decision == "rejected" and s.get(Face, ids[0]).reviewer == "alice"
        assert s.get(Face, ids[1]).decision == "undecided"


def test_apply_rule_with_no_match_changes_nothing(workspace):
    _faces(workspace, [0.1, 0.2])
    res = apply_rule(workspace, "score>=0.6")
    assert res.accepted == [] and res.candidates == 0
    assert res.as_dict() == {
        "rule": "score>=0.6",
        "candidates": 0,
        "accepted_before": 0,
        "accepted_now": 0,
        "accepted_total": 0,
    }


def test_apply_rule_takes_the_caps_it_leaves_out_from_the_workspace(workspace):
    from curation.catalog.people import set_caps

    ids = _faces(workspace, [0.9, 0.8, 0.7, 0.6, 0.5])
    with workspace.session() as s:
        for face_id, owner in zip(ids, ["ann", "ann", "ann", "bob", "Bob"], strict=True):
            s.get(Image, s.get(Face, face_id).image_id).owner = owner
        set_caps(s, max_per_owner=2)  # as `ghosts people --max-per-owner 2` does
    # The rule's own cap wins over the workspace's: one face per account.
    assert apply_rule(workspace, "score>=0,max_per_owner=1").accepted == [ids[0], ids[3]]
    # A rule naming no cap gets the workspace's: a second face per account, ann's third stays undecided.
    res = apply_rule(workspace, "score>=0")
    assert res.accepted == [ids[1], ids[4]] and res.rule == "score>=0,max_per_owner=2"
    with workspace.session() as s:
        assert s.get(Face, ids[2]).decision == "undecided"
        set_caps(s, max_per_owner=None)
    assert apply_rule(workspace, "score>=0").accepted == [ids[2]]  # no cap anywhere: the rest
