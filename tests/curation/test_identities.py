"""Identities in a real workspace: analysis describes every face and groups the collage of four men (six
photos each) into its four people; a rerun is resumable and keeps every id; a face cropped by hand is
described too."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select, update

from curation.analysis.analyze import analyze_workspace
from curation.analysis.identities import from_bytes, identity_counts, update_identities
from curation.catalog.schema import Face, Image, Person
from curation.sources.ingest import ingest_paths
from tests.alignment.conftest import BALD, CRUISE
from tests.alignment.test_identity import _who


@pytest.fixture(scope="module")
def analysed(tmp_path_factory, faces_dir):
    from curation.catalog.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("ids") / "ws")
    ingest_paths(ws, [faces_dir / BALD, faces_dir / CRUISE], progress=False)
    started = time.monotonic()
    summary = analyze_workspace(ws, workers=1, progress=False)
    yield ws, summary, time.monotonic() - started
    ws.close()


def _faces(ws):
    with ws.session() as s:
        return s.execute(
            select(Face.id, Face.person_id, Face.descriptor, Face.box, Image.source_ref)
            .join(Image, Image.id == Face.image_id)
            .order_by(Face.id)
        ).all()


def test_analysis_groups_the_collage_into_its_four_people(analysed):
    ws, summary, _ = analysed
    rows = _faces(ws)
    # The faces are recorded first; the second phase describes every one of them, then groups them.
    assert summary.identities["clustered"] == len(rows) == 25 and summary.identities["undescribed"] == 0
    assert summary.identities["described"] == 25
    assert 0 < summary.faces_seconds < summary.seconds
    assert all(from_bytes(r.descriptor).shape == (128,) for r in rows)
    collage = [r for r in rows if r.source_ref.endswith(BALD)]
    cruise = [r for r in rows if r.source_ref.endswith(CRUISE)]
    by_name: dict[str, set] = {}
    for r in collage:
        by_name.setdefault(_who(r.box), set()).add(r.person_id)
    assert all(len(p) == 1 for p in by_name.values()), by_name  # each man is one person
    assert len({next(iter(p)) for p in by_name.values()}) == 4  # and four different people
    assert cruise[0].person_id not in {next(iter(p)) for p in by_name.values()}
    assert summary.identities["people"] == 5
    with ws.session() as s:
        counts = identity_counts(s)
        assert s.scalar(select(Person.id).order_by(Person.id.desc())) == 5
    assert counts["people"] == 5 and counts["largest_person_faces"] == 6
    assert counts["largest_person_share"] == pytest.approx(6 / 25)


def test_rerun_describes_only_what_is_missing_and_keeps_every_id(analysed):
    ws, _, _ = analysed
    before = {r.id: r.person_id for r in _faces(ws)}
    again = update_identities(ws)
    assert (again.described, again.clustered, again.new_people) == (0, 0, 0)
    one = next(iter(before))
    with ws.session() as s:  # as if a run had stopped after describing the others
        s.execute(update(Face).where(Face.id == one).values(descriptor=None, person_id=None))
    resumed = update_identities(ws)
    assert (resumed.described, resumed.clustered, resumed.new_people) == (1, 1, 0)
    assert {r.id: r.person_id for r in _faces(ws)} == before


def test_a_face_cropped_by_hand_joins_its_person(analysed):
    from curation.review.manual import add_manual_face

    ws, _, _ = analysed
    rows = [r for r in _faces(ws) if r.source_ref.endswith(CRUISE)]
    with ws.session() as s:
        face = s.get(Face, rows[0].id)
        lm = face.landmarks
        image_id = face.image_id
    eye = lambda pts: [sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)]
    points = {
        "eye_left": eye(lm[36:42]),
        "eye_right": eye(lm[42:48]),
        "mouth_left": lm[48],
        "mouth_right": lm[54],
    }
    manual = add_manual_face(ws, image_id, points, "tester")
    summary = update_identities(ws)
    assert (summary.described, summary.clustered, summary.new_people) == (1, 1, 0)
    with ws.session() as s:
        assert s.get(Face, manual.id).person_id == rows[0].person_id


def test_analysis_can_leave_identities_out(workspace, faces_dir):
    ingest_paths(workspace, [faces_dir / CRUISE], progress=False)
    summary = analyze_workspace(workspace, workers=1, progress=False, identities=False)
    assert summary.identities is None
    with workspace.session() as s:
        assert s.scalars(select(Face.descriptor)).all() == [None]


def test_descriptor_phase_in_worker_processes_matches_one_photo_at_a_time(workspace, faces_dir):
    """The faces recorded without descriptors get, from `describe_faces` in two worker processes, the
    descriptors computed straight from each photo and its landmarks; a face deleted meanwhile is left out."""
    import numpy as np

    from alignment.identity import face_descriptors
    from curation.analysis.identities import describe_faces
    from curation.catalog.imaging import load_rgb

    ingest_paths(workspace, [faces_dir / CRUISE, faces_dir / "2008_001322.jpg"], progress=False)
    analyze_workspace(workspace, workers=1, progress=False, identities=False)
    with workspace.session() as s:
        rows = s.execute(
            select(Face.id, Face.landmarks, Face.box, Image.path).join(Image).order_by(Face.id)
        ).all()
        s.execute(update(Face).where(Face.id == rows[-1].id).values(deleted=True))
    assert len(rows) >= 3
    described, left = describe_faces(workspace, workers=2)
    assert (described, left) == (len(rows) - 1, 0)
    with workspace.session() as s:
        stored = dict(s.execute(select(Face.id, Face.descriptor)).all())
    assert stored[rows[-1].id] is None
    for r in rows[:-1]:
        rgb = load_rgb(workspace.abspath(r.path))
        want = face_descriptors(rgb, [(np.asarray(r.landmarks, float), r.box)])[0]
        assert np.abs(from_bytes(stored[r.id]) - want).max() < 1e-5


def test_status_shows_the_people_and_the_largest_share(analysed):
    from click.testing import CliRunner

    from flows.cli import main

    ws, _, _ = analysed
    result = CliRunner().invoke(main, ["status", "--data", str(ws.root)])
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("people"))
    with ws.session() as s:
        grouped = s.scalar(select(func.count()).select_from(Face).where(Face.person_id.is_not(None)))
    assert line == f"people   5  largest 6 faces = {100 * 6 / grouped:.1f}% of {grouped} grouped faces"


def test_auto_accept_caps_each_person(analysed):
    from curation.review.autoaccept import apply_rule, parse_rule

    ws, _, _ = analysed
    assert str(parse_rule("score>=0,max_per_person=2")) == "score>=0,max_per_person=2"
    first = apply_rule(ws, "max_per_person=2")
    with ws.session() as s:
        sizes = dict(s.execute(select(Face.person_id, func.count()).group_by(Face.person_id)).all())
        accepted = dict(
            s.execute(
                select(Face.person_id, func.count())
                .where(Face.decision == "accepted")
                .group_by(Face.person_id)
            ).all()
        )
    assert accepted == {p: min(n, 2) for p, n in sizes.items()}
    assert len(first.accepted) == sum(accepted.values())
    assert apply_rule(ws, "max_per_person=2").accepted == []  # faces accepted before count
    assert len(apply_rule(ws, "max_per_person=3").accepted) == sum(1 for n in sizes.values() if n >= 3)


def test_freeze_warns_above_the_person_cap_and_the_card_states_the_shares(analysed):
    from curation.datasets.freeze import freeze_dataset
    from curation.datasets.reader import open_archive

    ws, _, _ = analysed
    with ws.session() as s:
        s.execute(update(Face).where(Face.manual.is_(False)).values(decision="accepted"))
        s.execute(update(Face).where(Face.manual.is_(True)).values(decision="undecided"))
        n = s.scalar(select(func.count()).select_from(Face).where(Face.decision == "accepted"))
    r = freeze_dataset(ws, "people", resolution=32, progress=False, max_person_share=0.2)
    assert r.count == n == 25
    assert len(r.warnings) == 1 and "6 of the 25 faces (24.0%), above the 20.0% cap" in r.warnings[0]
    assert freeze_dataset(ws, "people", resolution=32, progress=False, max_person_share=0.3).warnings == []
    with open_archive(r.path) as arc:
        card = arc.card
    assert "- People: 5 " in card and "- Largest person: 24.0% of the images" in card
    assert "- Cap used: max person share 20.0%" in card
