"""Descriptors and people on real faces: the collage of four men (six photos each), Tom Cruise, the PASCAL
crowds; clustering groups the same person, separates different people, and keeps ids through new photos,
merges and splits."""

from __future__ import annotations

import numpy as np
import pytest

from alignment.align import align_face, ffhq_quad
from alignment.identity import (
    SAME_PERSON,
    People,
    cluster_people,
    crop_descriptor,
    crop_face_score,
    distances,
    face_descriptor,
    face_descriptors,
    faces_like,
    merge_people,
    people_from,
    remove_faces,
    split_faces,
    suggest_merges,
)

from .conftest import BALD, CRUISE

# Labelled by hand, looking at bald_guys.jpg: the centre (x, y, source pixels) of each face and who it is.
COLLAGE = {
    "diesel": [(134, 1371), (148, 166), (148, 473), (381, 297), (634, 200), (655, 525)],
    "statham": [(148, 781), (401, 528), (395, 115), (501, 944), (944, 202), (962, 491)],
    "willis": [(130, 1070), (449, 1360), (872, 917), (872, 1328), (1143, 853), (1179, 1143)],
    "johnson": [(1161, 1396), (1523, 1414), (1602, 257), (1712, 745), (1884, 1378), (1880, 493)],
}
PASCAL = ["2007_007763.jpg", "2008_001009.jpg", "2008_001322.jpg", "2008_002079.jpg", "2008_002470.jpg"]


def _who(box) -> str:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    name, d = min(
        ((n, np.hypot(cx - x, cy - y)) for n, pts in COLLAGE.items() for x, y in pts), key=lambda t: t[1]
    )
    assert d < 40, f"a face at ({cx:.0f}, {cy:.0f}) that the hand labels do not list"
    return name


@pytest.fixture(scope="module")
def collage(photo, detections):
    """face id -> (descriptor, true name, aligned 256-px crop) for every face of the collage."""
    img = photo(BALD)
    faces = detections(BALD)
    vectors = face_descriptors(img, faces)
    out = {}
    for i, (f, v) in enumerate(zip(faces, vectors)):
        out[f"bald/{i}"] = (v, _who(f.box), align_face(img, ffhq_quad(f.landmarks), 256))
    assert sorted(n for _, n, _ in out.values()) == sorted(n for n, pts in COLLAGE.items() for _ in pts)
    return out


@pytest.fixture(scope="module")
def others(photo, detections):
    """face id -> descriptor for Tom Cruise and the PASCAL crowds (none of them in the collage)."""
    out = {}
    for name in [CRUISE, *PASCAL]:
        for i, v in enumerate(face_descriptors(photo(name), detections(name))):
            out[f"{name}/{i}"] = v
    return out


def _groups(people: People, ids) -> list[set]:
    by: dict[int, set] = {}
    for f in ids:
        by.setdefault(people.faces[f], set()).add(f)
    return sorted(by.values(), key=min)


def _truth(collage, ids) -> list[set]:
    by: dict[str, set] = {}
    for f in ids:
        by.setdefault(collage[f][1], set()).add(f)
    return sorted(by.values(), key=min)


def test_descriptor_distances_separate_people(collage):
    ids = list(collage)
    v = np.stack([collage[f][0] for f in ids])
    names = np.array([collage[f][1] for f in ids])
    d = distances(v, v)
    same = names[:, None] == names[None, :]
    off = ~np.eye(len(ids), dtype=bool)
    assert v.shape == (24, 128) and v.dtype == np.float32
    assert np.median(d[same & off]) < 0.45 < np.median(d[~same])
    assert (d[same & off] < SAME_PERSON).mean() > 0.9
    assert (d[~same] >= SAME_PERSON).mean() > 0.97


def test_one_face_descriptor_matches_the_batch(photo, detections):
    img, f = photo(CRUISE), detections(CRUISE)[0]
    one = face_descriptor(img, f.landmarks, f.box)
    assert np.allclose(one, face_descriptors(img, [f])[0], atol=1e-5)
    assert np.linalg.norm(face_descriptor(img, f.landmarks) - one) < 0.05  # no box: the landmarks' bounds


def test_crop_descriptor_agrees_with_the_photo(collage, photo, detections):
    gaps = [np.linalg.norm(crop_descriptor(crop) - v) for v, _, crop in collage.values()]
    assert np.median(gaps) < 0.1 and max(gaps) < 0.3
    # smaller crops drift further, but stay on the same person
    f = detections(CRUISE)[0]
    small = align_face(photo(CRUISE), ffhq_quad(f.landmarks), 64)
    assert np.linalg.norm(crop_descriptor(small) - face_descriptors(photo(CRUISE), [f])[0]) < 0.35


def test_crop_face_score_tells_faces_from_blobs(collage):
    assert min(crop_face_score(crop) for _, _, crop in collage.values()) > 0
    rng = np.random.default_rng(0)
    blob = np.clip(rng.normal(128, 40, (1, 1, 3)) + rng.normal(0, 8, (256, 256, 3)), 0, 255).astype(np.uint8)
    assert crop_face_score(blob) < 0


def test_clustering_groups_the_collage_and_keeps_strangers_apart(collage, others):
    descriptors = {f: v for f, (v, _, _) in collage.items()} | others
    people = cluster_people(descriptors)
    assert _groups(people, collage) == _truth(collage, collage)
    collage_people = {people.faces[f] for f in collage}
    assert not collage_people & {people.faces[f] for f in others}
    assert people.faces[f"{CRUISE}/0"] not in {people.faces[f] for f in others if not f.startswith(CRUISE)}
    assert people.count >= 4 + len(PASCAL) and people.next_id == people.count + 1
    assert cluster_people(descriptors) == people  # deterministic


def test_clustering_crops_groups_the_collage(collage):
    people = cluster_people({f: crop_descriptor(crop) for f, (_, _, crop) in collage.items()})
    assert _groups(people, collage) == _truth(collage, collage)


def test_new_faces_keep_old_ids(collage, others):
    ids = list(collage)
    first = {f: collage[f][0] for f in ids[::2]}  # half the collage arrives first
    before = cluster_people(first)
    all_faces = {f: v for f, (v, _, _) in collage.items()} | others
    after = cluster_people(all_faces, before)
    assert {f: after.faces[f] for f in first} == before.faces  # nobody renumbered
    assert _groups(after, collage) == _truth(collage, collage)  # late faces joined the right person
    assert set(before.faces.values()) == {after.faces[f] for f in collage}
    assert min(after.faces[f] for f in others) >= before.next_id  # new people get new ids
    assert cluster_people(all_faces, after) == after  # nothing new: nothing moves


def test_merge_and_split_survive_new_faces(collage, others):
    ids = list(collage)
    descriptors = {f: v for f, (v, _, _) in collage.items()}
    people = cluster_people({f: descriptors[f] for f in ids[:18]})
    statham = sorted(f for f in ids[:18] if collage[f][1] == "statham")
    willis = people.faces[next(f for f in ids[:18] if collage[f][1] == "willis")]
    diesel = people.faces[next(f for f in ids[:18] if collage[f][1] == "diesel")]

    # a reviewer says two of Statham's photos are someone else, and that Willis and Diesel are one person
    people, new_id = split_faces(people, statham[:2])
    assert new_id == people.next_id - 1 and set(people.members(new_id)) == set(statham[:2])
    people = merge_people(people, diesel, willis)
    assert diesel not in people.sizes()

    later = cluster_people(descriptors | others, people)
    assert {f: later.faces[f] for f in people.faces} == people.faces
    for f in ids[18:]:  # late photos follow the reviewed people
        name = collage[f][1]
        expect = {"willis": willis, "diesel": willis}.get(name)
        if expect:
            assert later.faces[f] == expect
    assert later.faces[statham[0]] != later.faces[statham[2]]  # the split holds
    assert diesel not in later.faces.values()  # a merged-away id is never reused


def test_edit_errors(collage):
    people = cluster_people({f: v for f, (v, _, _) in collage.items()})
    a, b = list(people.sizes())[:2]
    with pytest.raises(KeyError):
        merge_people(people, 999, a)
    with pytest.raises(ValueError, match="one person at a time"):
        split_faces(people, [people.members(a)[0], people.members(b)[0]])
    with pytest.raises(KeyError):
        split_faces(people, ["no such face"])


def test_removal_by_face_finds_that_person_only(collage, photo, detections):
    descriptors = {f: v for f, (v, _, _) in collage.items()}
    query_face = next(f for f in collage if collage[f][1] == "johnson")
    matches = faces_like(descriptors[query_face], descriptors)
    assert {m.face for m in matches} == {f for f in collage if collage[f][1] == "johnson"}
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    people = cluster_people(descriptors)
    left = remove_faces(people, [m.face for m in matches])
    assert left.count == 3 and left.next_id == people.next_id
    cruise = face_descriptors(photo(CRUISE), detections(CRUISE))[0]
    assert faces_like(cruise, descriptors) == []


def test_suggested_merges_and_round_trip(collage):
    descriptors = {f: v for f, (v, _, _) in collage.items()}
    people = cluster_people(descriptors)
    statham = [f for f in collage if collage[f][1] == "statham"]
    split, new_id = split_faces(people, statham[:3])
    suggestions = suggest_merges(split, descriptors)
    assert suggestions and {suggestions[0][0], suggestions[0][1]} == {people.faces[statham[0]], new_id}
    assert suggest_merges(people, descriptors) == []
    assert People.from_dict(split.to_dict()) == split
    assert people_from(split.faces).next_id == max(split.faces.values()) + 1
    assert people.largest_share() == pytest.approx(0.25)
