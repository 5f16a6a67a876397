"""A reviewer's merges and splits of people, over the review API, and that the next clustering keeps them; the
per-person and per-owner caps beside the counter; the grid filtered and sorted by person.

Descriptors are synthetic here (three tight groups of 128-D vectors), so the clustering's answer is known;
tests/curation/test_identities.py groups real faces."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from curation.analysis.identities import cluster_workspace, load_people, save_people, to_bytes
from curation.catalog.people import caps_status, merged_into, people_counts, set_caps
from curation.catalog.schema import Face, Image
from tests.curation.test_review_api import client_for, csrf_of, tile_ids
from tests.curation.test_review_support import add_face, fast_get, insert_faces, make_catalog

GROUPS = 3  # people in the catalog: faces 0, 3, 6, ... are group 0; 1, 4, ... group 1; 2, 5, ... group 2


def _centre(group: int) -> np.ndarray:
    v = np.random.RandomState(100 + group).normal(size=128)
    return v / np.linalg.norm(v)


def _near(group: int, seed: int) -> bytes:
    """A descriptor 0.1 or so from the group's centre (the groups are about 1.4 apart)."""
    noise = np.random.RandomState(seed).normal(size=128)
    return to_bytes(_centre(group) + 0.1 * noise / np.linalg.norm(noise))


@pytest.fixture
def grouped(workspace):
    """12 faces on 6 photos, described as three people, then clustered: {group: person id}, face ids."""
    cat = make_catalog(workspace)
    with workspace.session() as s:
        for k, fid in enumerate(cat["faces"]):
            s.get(Face, fid).descriptor = _near(k % GROUPS, seed=k)
    clustered, new = cluster_workspace(workspace)
    assert (clustered, new) == (12, 3)
    with workspace.session() as s:
        pid = {fid: s.get(Face, fid).person_id for fid in cat["faces"]}
    person = {g: pid[cat["faces"][g]] for g in range(GROUPS)}
    assert all(pid[f] == person[k % GROUPS] for k, f in enumerate(cat["faces"]))
    return person, cat


def _people(client) -> dict[int, dict]:
    r = client.get("/api/people")
    assert r.status_code == 200, r.text
    return {p["id"]: p for p in r.json()["people"]}


def test_people_api_counts_faces_and_accepted_and_filters_the_grid(workspace, grouped):
    person, cat = grouped
    faces = cat["faces"]
    with client_for(workspace, target=5) as c:
        h = {"x-csrf-token": csrf_of(c)}
        ids0 = [f for k, f in enumerate(faces) if k % GROUPS == 0]
        assert c.post(
            "/api/decisions", json={"face_ids": ids0[:2], "decision": "accepted"}, headers=h
        ).is_success
        people = _people(c)
        assert {p: (v["faces"], v["accepted"]) for p, v in people.items()} == {
            person[0]: (4, 2),
            person[1]: (4, 0),
            person[2]: (4, 0),
        }
        assert c.get(f"/api/people/{person[0]}").json()["undecided"] == 2
        assert c.get("/api/people/999").status_code == 404
        # The grid filtered to a person shows their faces only, with the person bar; sorted by person, together.
        page = c.get(f"/?person={person[1]}")
        assert sorted(tile_ids(page.text)) == sorted(f for k, f in enumerate(faces) if k % GROUPS == 1)
        assert 'id="person-bar"' in page.text
        listed = c.get("/api/faces?sort=person").json()["faces"]
        with workspace.session() as s:
            order = [s.get(Face, t["id"]).person_id for t in listed]
        assert order == sorted(order) and len(order) == 12
        assert c.get("/api/faces?person=0").status_code == 422
        # Whose faces: [face id, person id] for the grid's labels.
        got = dict(map(tuple, c.get(f"/api/people/of?ids={','.join(map(str, faces))}").json()))
        assert got == {f: person[k % GROUPS] for k, f in enumerate(faces)}
        assert c.get("/api/people/of?ids=1,x").status_code == 422
        # The people page: one card per person, its counts.
        html = c.get("/people").text
        assert html.count('class="tile person"') == 3 and "2 accepted" in html


def test_merge_and_split_over_the_api_and_the_next_clustering_keeps_them(workspace, grouped):
    person, cat = grouped
    faces = cat["faces"]
    with client_for(workspace) as c:
        h = {"x-csrf-token": csrf_of(c)}
        r = c.post("/api/people/merge", json={"target": person[0], "sources": [person[1]]}, headers=h)
        assert r.status_code == 200, r.text
        assert r.json()["moved"] == 4 and r.json()["person"]["faces"] == 8
        assert set(_people(c)) == {person[0], person[2]}
        # Split two faces of group 2 off (they are as close to the rest as any: only the reviewer knows).
        off = [f for k, f in enumerate(faces) if k % GROUPS == 2][:2]
        r = c.post("/api/people/split", json={"face_ids": off}, headers=h)
        assert r.status_code == 200, r.text
        new = r.json()["person"]["id"]
        assert new not in person.values() and r.json()["from"]["faces"] == 2
        assert {p: v["faces"] for p, v in _people(c).items()} == {person[0]: 8, person[2]: 2, new: 2}
        # Refused: faces of two people at once, every face of a person, a person with no faces left.
        both = [off[0], faces[0]]
        assert c.post("/api/people/split", json={"face_ids": both}, headers=h).status_code == 400
        assert c.post("/api/people/split", json={"face_ids": off}, headers=h).status_code == 400
        gone = c.post("/api/people/merge", json={"target": person[1], "sources": [new]}, headers=h)
        assert gone.status_code == 400 and f"no person {person[1]}" in gone.json()["detail"]
        assert c.post("/api/people/merge", json={"target": 1, "sources": [1]}, headers=h).status_code == 400
        assert c.post("/api/people/split", json={"face_ids": off}).status_code == 403  # no CSRF token

    # New photos: a face like group 1 goes to the person group 1 was merged into; faces like the split-off
    # ones join whichever of the two people they are closest to, and no old face moves.
    with workspace.session() as s:
        before = dict(s.execute(select(Face.id, Face.person_id)).all())
        image_id = s.scalar(select(Image.id).order_by(Image.id))
    like1 = add_face(workspace, image_id, index=7, descriptor=_near(1, seed=501))
    like2 = add_face(workspace, image_id, index=8, descriptor=_near(2, seed=502))
    assert cluster_workspace(workspace) == (2, 0)
    with workspace.session() as s:
        after = dict(s.execute(select(Face.id, Face.person_id)).all())
    assert {f: after[f] for f in before} == before
    assert after[like1] == person[0]
    assert after[like2] in (person[2], new)


def test_a_merge_made_while_clustering_runs_is_not_written_over(workspace, grouped):
    person, cat = grouped
    with workspace.session() as s:
        image_id = s.scalar(select(Image.id).order_by(Image.id))
    late = add_face(workspace, image_id, index=9, descriptor=_near(1, seed=777))
    # The clustering reads the grouping, a reviewer merges group 1 into group 0, then the clustering saves.
    with workspace.session() as s:
        from alignment.identity import cluster_people

        people, descriptors = load_people(s)
        grouped_now = cluster_people(descriptors, people)
    assert grouped_now.faces[late] == person[1]
    from curation.catalog.people import merge_person

    assert merge_person(workspace, [person[1]], person[0]) == 4
    with workspace.session() as s:
        assert save_people(s, grouped_now) == 1  # only the new face is written
        assert merged_into(s) == {person[1]: person[0]}
    with workspace.session() as s:
        owners = {s.get(Face, f).person_id for k, f in enumerate(cat["faces"]) if k % GROUPS in (0, 1)}
        assert owners == {person[0]} and s.get(Face, late).person_id == person[0]
        assert {p.id: p.faces for p in people_counts(s)} == {person[0]: 9, person[2]: 4}


def test_caps_beside_the_counter_warn_above_the_cap(workspace, grouped):
    person, cat = grouped
    faces = cat["faces"]
    with client_for(workspace) as c:
        h = {"x-csrf-token": csrf_of(c)}
        assert c.get("/api/people/caps").json()["max_per_person"] is None
        r = c.post("/api/people/caps", json={"max_per_person": 2, "max_per_owner": 1}, headers=h)
        assert r.status_code == 200 and r.json()["max_per_person"] == 2
        assert c.post("/api/people/caps", json={"max_per_person": 0}, headers=h).status_code == 422
        ids0 = [f for k, f in enumerate(faces) if k % GROUPS == 0]  # group 0: 4 faces on 4 photos
        c.post("/api/decisions", json={"face_ids": ids0[:3], "decision": "accepted"}, headers=h)
        c.post("/api/decisions", json={"face_ids": [faces[1]], "decision": "accepted"}, headers=h)
        st = c.get("/api/people/caps").json()
        assert st["accepted"] == 4
        assert st["top_persons"][0] == [person[0], 3] and st["over_person"] == [[person[0], 3]]
        # faces 0 and 1 are the two faces of the first photo (owner user0): two accepted, cap 1.
        assert st["over_owner"] == [["user0", 2]]
        assert _people(c)[person[0]]["over_cap"] is True and _people(c)[person[1]]["over_cap"] is False
        assert 'data-over="1"' in c.get("/people").text
        # Clearing a cap clears its warnings.
        assert (
            c.post("/api/people/caps", json={"max_per_person": None}, headers=h).json()["over_person"] == []
        )
    with workspace.session() as s:
        assert caps_status(s)["max_per_owner"] == 1
        with pytest.raises(Exception, match="whole number"):
            set_caps(s, max_per_person=-3)


def test_ten_thousand_faces_in_five_hundred_people_count_fast(workspace):
    """The people view and the caps beside the counter over 10,000 faces (500 people, 2,000 accepted): a few
    grouped queries, well under a second each (prints the times; -s shows them)."""

    from sqlalchemy import insert

    from curation.catalog.schema import Person

    ids = make_catalog(workspace, photos=4, faces_per_photo=1)["images"]
    with workspace.session() as s:
        s.execute(insert(Person), [{"id": p} for p in range(1, 501)])
        insert_faces(
            s,
            ids,
            10_000,
            decision=lambda i: "accepted" if i % 5 == 0 else "undecided",
            person_id=lambda i: 1 + i % 500,
        )
        set_caps(s, max_per_person=3)
    with client_for(workspace) as c:
        c.get("/people")  # warm the templates
        for path in ("/people", "/api/people", "/api/people/caps", "/?person=7"):
            fast_get(c, path)
        caps = c.get("/api/people/caps").json()
    # Every fifth face accepted: people 1, 6, 11, ... hold 20 accepted each, above the cap of 3.
    assert caps["accepted"] == 2000 and len(caps["over_person"]) == 100
    assert caps["top_persons"][0] == [1, 20] and caps["over_person"][-1] == [496, 20]
