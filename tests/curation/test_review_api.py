"""The review app over HTTP (FastAPI TestClient on a real workspace): pages, decisions, undo, rounds, safety."""

from __future__ import annotations

import base64
import hashlib
import json
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import QUALITY_COLUMNS, Decision, Face, Image, ReviewRound
from curation.review import make_config
from curation.review.app import create_app
from curation.review.config import ReviewConfig
from curation.review.routers import pages
from tests.curation.test_review_support import fast_get, insert_faces, link_duplicates, make_catalog


def client_for(ws, **cfg) -> TestClient:
    cfg.setdefault("reviewer", "ann")
    return TestClient(create_app(ws, ReviewConfig(**cfg)), base_url="http://127.0.0.1")


def csrf_of(client: TestClient, path: str = "/") -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return re.search(r'data-csrf="([0-9a-f]+)"', r.text).group(1)


def tile_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'class="tile[^"]*" data-face-id="(\d+)"', html)]


@pytest.fixture
def cat(workspace):
    return make_catalog(workspace)


@pytest.fixture
def client(workspace, cat):
    with client_for(workspace, target=5) as c:
        yield c


# --- the grid --------------------------------------------------------------------------------------------------


def test_grid_lists_faces_best_first_with_counter(client, cat, workspace, monkeypatch):
    monkeypatch.setattr(pages, "INLINE_PREVIEWS", 8)  # (12 by default: all of these 12 faces)
    r = client.get("/")
    ids = tile_ids(r.text)
    assert sorted(ids) == sorted(cat["faces"])
    with workspace.session() as s:
        scores = [s.get(Face, i).score for i in ids]
    assert scores == sorted(scores, reverse=True)
    assert re.search(r'id="count-accepted">0<', r.text) and re.search(r'id="count-target">5<', r.text)
    # The first row's previews come inside the page (they paint with it), the same bytes as their route;
    # the next ones load eagerly, the rest lazily.
    srcs = re.findall(r'<img src="([^"]+)" (loading="\w+")', r.text)
    assert len(srcs) == len(ids) == 12
    for fid, (src, _) in zip(ids[:8], srcs[:8]):
        assert src.startswith(("data:image/jpeg;base64,", "data:image/png;base64,"))
        assert base64.b64decode(src.split(",", 1)[1]) == client.get(f"/faces/{fid}/preview").content
    assert [s for s, _ in srcs[8:]] == [f"/faces/{fid}/preview" for fid in ids[8:]]
    assert {how for _, how in srcs} == {'loading="eager"'}  # 12 faces: all within the first 14
    # The stylesheet is inline too, allowed by its hash alone.
    style = re.search(r"<style>(.*?)</style>", r.text, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'self' 'sha256-{digest}'" in r.headers["content-security-policy"]


def test_grid_sorts_filters_and_pages(workspace, cat):
    with client_for(workspace, per_page=12) as c:
        by_likes = tile_ids(c.get("/?sort=likes").text)
        with workspace.session() as s:
            likes = [s.get(Image, s.get(Face, i).image_id).likes for i in by_likes]
        assert likes == sorted(likes, reverse=True)
        flagged = tile_ids(c.get("/?flag=flagged").text)
        assert len(flagged) == 6 and all(i in cat["faces"] for i in flagged)
        assert len(tile_ids(c.get("/?flag=upscaled").text)) == 6
        assert len(tile_ids(c.get("/?tag=selfie").text)) == 4
        assert tile_ids(c.get("/?min_score=0.95").text) == []
        assert c.get("/?sort=nonsense").status_code == 422
        # The filter form sends empty fields for "no threshold".
        blank = "/?sort=score&decision=all&flag=any&tag=&source=&min_score=&max_padding=&max_pose="
        assert sorted(tile_ids(c.get(blank).text)) == sorted(cat["faces"])
        assert len(tile_ids(c.get("/?min_score=0.5&max_padding=0.2&max_pose=20").text)) > 0
        assert c.get("/?page=0").status_code == 422
    with client_for(workspace, per_page=12) as c:
        page1, page2 = tile_ids(c.get("/?sort=id").text), tile_ids(c.get("/?sort=id&page=2").text)
    assert page1 == sorted(cat["faces"])  # 12 faces, one page
    assert page2 == []


def test_flag_filters_use_the_analysis_thresholds(workspace):
    """blurry / padding / pose filters and tile hints agree with alignment.quality's flag thresholds."""
    from alignment.quality import BLUR_FLAG, PADDING_FLAG, YAW_FLAG
    from tests.curation.test_review_support import add_face, make_catalog

    img = make_catalog(workspace, photos=1, faces_per_photo=0)["images"][0]
    plain = add_face(workspace, img, index=0)
    soft = add_face(workspace, img, index=1, blur=BLUR_FLAG / 2)
    padded = add_face(workspace, img, index=2, padding=PADDING_FLAG * 2)
    turned = add_face(workspace, img, index=3, yaw=-(YAW_FLAG + 5))
    with client_for(workspace) as c:
        assert tile_ids(c.get("/?flag=blurry").text) == [soft]
        assert tile_ids(c.get("/?flag=padded").text) == [padded]
        assert tile_ids(c.get("/?flag=profile").text) == [turned]
        assert plain in tile_ids(c.get("/").text)


def test_upscaled_follows_the_workspace_target_size(workspace):
    """One workspace setting (default 512) decides `upscaled`: a 400 px crop is small for 512, fine for 256."""
    from alignment.quality import DEFAULT_TARGET_SIZE, TARGET_SIZE_SETTING
    from curation.catalog.schema import get_setting
    from tests.curation.test_review_support import add_face, make_catalog

    img = make_catalog(workspace, photos=1, faces_per_photo=0)["images"][0]
    mid = add_face(workspace, img, index=0, box=[0.0, 0.0, 400.0, 400.0], upscaled=True)
    big = add_face(workspace, img, index=1, box=[0.0, 0.0, 600.0, 600.0], upscaled=True)
    assert DEFAULT_TARGET_SIZE == 512
    with client_for(workspace) as c:
        assert tile_ids(c.get("/?flag=upscaled").text) == [mid]
        assert "flags @512px" in c.get("/").text
    with client_for(workspace, target_size=256) as c:  # `ghosts review --target-size 256`
        assert tile_ids(c.get("/?flag=upscaled").text) == []
        assert sorted(tile_ids(c.get("/?flag=clean").text)) == sorted([mid, big])
        assert "upscaled" not in c.get(f"/images/{img}/panel?face={mid}").text.split("quality measures")[0]
    with workspace.session() as s:
        assert get_setting(s, TARGET_SIZE_SETTING) == 256
    with client_for(workspace, target_size=1024) as c:
        assert sorted(tile_ids(c.get("/?flag=upscaled").text)) == sorted([mid, big])


def next_link(html: str) -> str | None:
    m = re.search(r'rel="next" href="([^"]+)"', html)
    return m.group(1).replace("&amp;", "&") if m else None


def test_grid_pages_cover_every_face_once(workspace):
    make_catalog(workspace, photos=13, faces_per_photo=2)  # 26 faces, pages of 12
    with client_for(workspace, per_page=12) as c:
        pages, url = [], "/"
        while url:
            html = c.get(url).text
            pages.append(tile_ids(html))
            url = next_link(html)
        assert [len(p) for p in pages] == [12, 12, 2]
        assert len({f for p in pages for f in p}) == 26
        assert re.search(r'rel="next" href="/\?page=2&amp;snap=[\w-]+"', c.get("/").text)


def test_deciding_while_paging_an_undecided_filter_skips_nobody(workspace):
    """Decide every face of each page of "undecided", then page on: every face is seen exactly once."""
    cat = make_catalog(workspace, photos=20, faces_per_photo=2)  # 40 faces, pages of 12
    with client_for(workspace, per_page=12) as c:
        h = {"x-csrf-token": csrf_of(c)}
        seen, url = [], "/?decision=undecided"
        while url:
            html = c.get(url).text
            ids = tile_ids(html)
            seen += ids
            assert (
                c.post(
                    "/api/decisions", json={"face_ids": ids, "decision": "accepted"}, headers=h
                ).status_code
                == 200
            )
            url = next_link(html)
        assert sorted(seen) == sorted(cat["faces"]) and len(seen) == len(set(seen))
        snap = re.search(r"snap=([\w-]+)", c.get("/?decision=accepted").text).group(1)
        assert sorted(c.get(f"/api/snapshots/{snap}").json()["ids"]) == sorted(cat["faces"])
        assert c.get("/api/snapshots/nosuchsnapshot").status_code == 404
        assert c.get("/?snap=bad!").status_code == 422


def test_decision_filter_and_json_api(client, cat):
    csrf = csrf_of(client)
    a, b = cat["faces"][:2]
    client.post(
        "/api/decisions", json={"face_ids": [a], "decision": "accepted"}, headers={"x-csrf-token": csrf}
    )
    client.post(
        "/api/decisions", json={"face_ids": [b], "decision": "rejected"}, headers={"x-csrf-token": csrf}
    )
    assert tile_ids(client.get("/?decision=accepted").text) == [a]
    assert tile_ids(client.get("/?decision=rejected").text) == [b]
    assert len(tile_ids(client.get("/?decision=undecided").text)) == len(cat["faces"]) - 2
    data = client.get("/api/faces?decision=accepted").json()
    assert data["total"] == 1 and data["faces"][0]["id"] == a and data["faces"][0]["decision"] == "accepted"
    states = client.get(f"/api/faces/state?ids={a},{b}").json()
    assert {s["id"]: s["decision"] for s in states} == {a: "accepted", b: "rejected"}


# --- decisions, undo, counter ----------------------------------------------------------------------------------


def test_decide_and_undo_over_http(client, cat, workspace):
    csrf = csrf_of(client)
    h = {"x-csrf-token": csrf}
    f1, f2, f3 = cat["faces"][:3]
    r = client.post("/api/decisions", json={"face_ids": [f1], "decision": "accepted"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["accepted"] == 1 and r.json()["changes"] == [
        {"face_id": f1, "decision": "accepted", "previous": "undecided", "rating": None}
    ]
    client.post(
        "/api/decisions", json={"face_ids": [f2, f3], "decision": "rejected", "reason": "blurry"}, headers=h
    )
    with workspace.session() as s:
        assert s.get(Face, f2).decision == "rejected" and s.get(Face, f2).reason == "blurry"
        assert s.get(Face, f2).reviewer == "ann"
    undo = client.post("/api/undo", headers=h).json()  # the bulk reject is one step
    assert sorted(c["face_id"] for c in undo["changes"]) == [f2, f3]
    assert undo["counts"]["rejected"] == 0 and undo["counts"]["accepted"] == 1
    undo = client.post("/api/undo", headers=h).json()
    assert undo["changes"][0]["face_id"] == f1 and undo["counts"]["accepted"] == 0
    assert client.post("/api/undo", headers=h).status_code == 409
    with workspace.session() as s:
        assert all(s.get(Face, f).decision == "undecided" for f in (f1, f2, f3))
        assert s.scalar(select(Decision.id).where(Decision.reason == "undo #1")) is not None


def test_decisions_typed_fast_go_together_but_undo_one_by_one(client, cat):
    h = {"x-csrf-token": csrf_of(client)}
    f1, f2 = cat["faces"][:2]
    items = [
        {"face_ids": [f1], "decision": "accepted"},
        {"face_ids": [f2], "decision": "rejected"},
        {"face_ids": [f1], "decision": "skipped"},
    ]
    out = client.post("/api/decisions/many", json={"items": items}, headers=h).json()
    assert [(c["face_id"], c["decision"]) for c in out["changes"]] == [
        (f1, "accepted"),
        (f2, "rejected"),
        (f1, "skipped"),
    ]
    assert out["counts"]["skipped"] == 1 and out["counts"]["rejected"] == 1
    assert client.post("/api/undo", headers=h).json()["changes"] == [
        {"face_id": f1, "decision": "accepted", "previous": "skipped", "rating": None}
    ]


def test_bad_decisions_are_refused_with_a_message(client, cat):
    h = {"x-csrf-token": csrf_of(client)}
    assert (
        client.post("/api/decisions", json={"face_ids": [], "decision": "accepted"}, headers=h).status_code
        == 422
    )
    assert (
        client.post(
            "/api/decisions", json={"face_ids": [cat["faces"][0]], "decision": "maybe"}, headers=h
        ).status_code
        == 422
    )
    r = client.post(
        "/api/decisions",
        json={"face_ids": [cat["faces"][0]], "decision": "accepted", "reason": "<script>"},
        headers=h,
    )
    assert r.status_code == 422 and "short tag" in r.text
    r = client.post("/api/decisions", json={"face_ids": [999999], "decision": "accepted"}, headers=h)
    assert r.status_code == 200 and r.json()["kept"] == [999999] and r.json()["changes"] == []


def test_two_reviewers_last_write_wins(workspace, cat):
    face = cat["faces"][0]
    with client_for(workspace, reviewer="ann") as ann, client_for(workspace, reviewer="bob") as bob:
        ha, hb = {"x-csrf-token": csrf_of(ann)}, {"x-csrf-token": csrf_of(bob)}
        ann.post("/api/decisions", json={"face_ids": [face], "decision": "accepted"}, headers=ha)
        bob.post("/api/decisions", json={"face_ids": [face], "decision": "rejected"}, headers=hb)
        for c in (ann, bob):  # both see bob's later write on refresh
            html = c.get("/").text
            assert re.search(rf'data-face-id="{face}" data-image-id="\d+" data-decision="rejected"', html)
        # Ann's undo must not overwrite Bob's newer decision.
        out = ann.post("/api/undo", headers=ha).json()
        assert out["changes"] == [] and out["kept"] == [face]
        assert bob.get(f"/api/faces/state?ids={face}").json()[0]["decision"] == "rejected"


def test_delete_a_wrong_detection(client, cat, workspace):
    h = {"x-csrf-token": csrf_of(client)}
    face = cat["faces"][0]
    before = client.get("/api/counts").json()["total"]
    assert client.post(f"/api/faces/{face}/delete", headers=h).json()["total"] == before - 1
    assert face not in tile_ids(client.get("/").text)
    with workspace.session() as s:
        assert s.get(Face, face).deleted
    assert client.post("/api/faces/999999/delete", headers=h).status_code == 404


def test_taken_down_photos_leave_the_review(client, workspace, cat):
    gone = cat["images"][0]
    with workspace.session() as s:
        gone_faces = list(s.scalars(select(Face.id).where(Face.image_id == gone)))
        s.get(Image, gone).status = "excluded"
    assert not set(gone_faces) & set(tile_ids(client.get("/").text))
    assert client.get("/api/counts").json()["total"] == len(cat["faces"]) - len(gone_faces)
    assert client.get(f"/faces/{gone_faces[0]}/preview").status_code == 404
    assert client.get(f"/images/{gone}/photo").status_code == 404
    assert client.get(f"/images/{gone}").status_code == 404
    assert f'data-image-id="{gone}"' not in client.get("/photos?status=all").text


# --- rounds ----------------------------------------------------------------------------------------------------


def test_selection_done_closes_the_round(client, cat, workspace):
    h = {"x-csrf-token": csrf_of(client)}
    client.post("/api/decisions", json={"face_ids": cat["faces"][:3], "decision": "accepted"}, headers=h)
    out = client.post("/api/rounds/complete", headers=h).json()
    assert (
        out["done"] and out["accepted"] == 3 and out["target"] == 5 and "3 faces accepted" in out["message"]
    )
    with workspace.session() as s:
        rnd = s.get(ReviewRound, out["id"])
        assert rnd.done_at is not None and rnd.reviewer == "ann"
    # Decisions after that open a new round with the same target.
    client.post("/api/decisions", json={"face_ids": [cat["faces"][3]], "decision": "accepted"}, headers=h)
    now = client.get("/api/round").json()
    assert now["id"] != out["id"] and not now["done"] and now["target"] == 5


# --- detail view -----------------------------------------------------------------------------------------------


def test_detail_panel_shows_faces_measures_provenance_and_duplicates(client, cat, workspace):
    img_a, img_b = cat["images"][:2]
    link_duplicates(workspace, img_b, img_a, distance=4)
    with workspace.session() as s:
        faces_a = list(s.scalars(select(Face.id).where(Face.image_id == img_a)))
        faces_b = list(s.scalars(select(Face.id).where(Face.image_id == img_b)))
    html = client.get(f"/images/{img_a}/panel?face={faces_a[0]}").text
    assert html.count("<rect ") == len(faces_a)  # every face boxed
    assert html.count("<circle ") >= 68 * len(faces_a)  # and its landmarks drawn
    assert 'href="https://www.instagram.com/p/SC0/"' in html and "@user0" in html and "#portrait" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html  # captions are escaped
    assert "sharpness" in html and "upscaled" in html  # the quality measures
    assert "distance 4" in html and all(f'data-face-id="{f}"' in html for f in faces_b)
    page = client.get(f"/images/{img_a}")
    assert page.status_code == 200 and 'class="panel"' in page.text
    assert client.get("/images/999999").status_code == 404


def test_unsafe_post_links_are_not_rendered(client, workspace, cat):
    with workspace.session() as s:
        s.get(Image, cat["images"][0]).post_url = "javascript:alert(1)"
    assert "javascript:" not in client.get(f"/images/{cat['images'][0]}/panel").text


def test_photos_view_lists_photos_without_faces(client, workspace, cat):
    with workspace.session() as s:
        s.get(Image, cat["images"][0]).status = "no_face"
    html = client.get("/photos").text
    assert re.findall(r'data-image-id="(\d+)"', html) == [str(cat["images"][0])]
    assert (
        len(re.findall(r'class="tile photo-tile" data-image-id', client.get("/photos?status=all").text)) == 6
    )
    assert client.get("/photos?status=bogus").status_code == 422


# --- manual crop -----------------------------------------------------------------------------------------------


def _points(box):
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    return {
        "eye_left": [x0 + 0.3 * w, y0 + 0.4 * h],
        "eye_right": [x0 + 0.7 * w, y0 + 0.4 * h],
        "mouth_left": [x0 + 0.35 * w, y0 + 0.75 * h],
        "mouth_right": [x0 + 0.65 * w, y0 + 0.75 * h],
    }


def test_manual_crop_preview_then_save(client, workspace, cat):
    from alignment.align import quad_from_points

    h = {"x-csrf-token": csrf_of(client)}
    image = cat["images"][0]
    pts = _points([100, 60, 220, 200])
    r = client.post(f"/api/images/{image}/manual/preview", json=pts, headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
    quad = json.loads(r.headers["x-ghosts-quad"])
    expected = quad_from_points(pts["eye_left"], pts["eye_right"], pts["mouth_left"], pts["mouth_right"])
    assert np.allclose(quad, expected, atol=0.01)  # the one FFHQ formula, not a copy of it
    with workspace.session() as s:
        n_before = s.scalar(select(func.count(Face.id)))
    out = client.post(f"/api/images/{image}/manual", json=pts, headers=h).json()
    with workspace.session() as s:
        assert s.scalar(select(func.count(Face.id))) == n_before + 1
        face = s.get(Face, out["face_id"])
        assert face.manual and face.detector == "manual" and face.image_id == image
        assert face.points == {k: [float(v) for v in p] for k, p in pts.items()}
        assert np.allclose(face.quad, expected) and face.decision == "undecided"
        assert face.preview_path and workspace.abspath(face.preview_path).is_file()
        # Measured like a detected face, so it sorts and filters with the rest.
        assert 0 < face.score <= 1 and face.blur > 0 and face.padding is not None and face.eye_dist > 0
        assert face.quality["source"] == "manual crop" and "factors" in face.quality
        assert {k: getattr(face, k) for k in QUALITY_COLUMNS} == {k: face.quality[k] for k in QUALITY_COLUMNS}
    assert out["face_id"] in tile_ids(client.get("/?flag=manual").text)
    assert client.get(f"/faces/{out['face_id']}/preview").status_code == 200
    panel = client.get(f"/images/{image}/panel?face={out['face_id']}").text
    assert "cropped by hand" in panel


def test_manual_crop_refuses_bad_points(client, cat):
    h = {"x-csrf-token": csrf_of(client)}
    image = cat["images"][0]
    outside = _points([100, 60, 220, 200]) | {"eye_left": [5000, 10]}
    r = client.post(f"/api/images/{image}/manual/preview", json=outside, headers=h)
    assert r.status_code == 422 and "outside" in r.json()["detail"]
    same = _points([100, 60, 220, 200]) | {"eye_right": [130, 116]}
    same["eye_left"] = [130, 116]
    assert (
        "almost the same" in client.post(f"/api/images/{image}/manual", json=same, headers=h).json()["detail"]
    )
    missing = {"eye_left": [1, 2]}
    assert client.post(f"/api/images/{image}/manual", json=missing, headers=h).status_code == 422
    nan = _points([100, 60, 220, 200]) | {"mouth_left": ["nan", 3]}
    assert client.post(f"/api/images/{image}/manual", json=nan, headers=h).status_code == 422
    assert (
        client.post("/api/images/999999/manual", json=_points([1, 1, 50, 50]), headers=h).status_code == 404
    )
    line = {
        "eye_left": [100, 100],
        "eye_right": [140, 101],
        "mouth_left": [180, 102],
        "mouth_right": [220, 103],
    }
    r = client.post(f"/api/images/{image}/manual/preview", json=line, headers=h)
    assert r.status_code == 422 and "one line" in r.json()["detail"]
    raw = json.dumps(_points([100, 60, 220, 200])).replace("[136.0, 116.0]", "[NaN, Infinity]", 1)
    assert "NaN" in raw
    for bad in (
        raw,
        '{"eye_left": [1e400, 2], "eye_right": [1, 2], "mouth_left": [1, 2], "mouth_right": [1, 9]}',
    ):
        r = client.post(
            f"/api/images/{image}/manual/preview",
            content=bad,
            headers=h | {"content-type": "application/json"},
        )
        assert r.status_code == 422, (bad, r.text)


def test_manual_points_are_named_by_geometry_whatever_the_click_order(client, cat):
    h = {"x-csrf-token": csrf_of(client)}
    image = cat["images"][0]
    pts = _points([100, 60, 220, 200])
    right = client.post(f"/api/images/{image}/manual/preview", json=pts, headers=h)
    assert right.headers["x-ghosts-reordered"] == "0"
    names = list(pts)
    for order in ([3, 2, 1, 0], [2, 0, 3, 1], [1, 3, 0, 2]):
        shuffled = {names[k]: pts[names[j]] for k, j in enumerate(order)}
        r = client.post(f"/api/images/{image}/manual/preview", json=shuffled, headers=h)
        assert r.status_code == 200 and r.headers["x-ghosts-reordered"] == "1"
        assert np.allclose(json.loads(r.headers["x-ghosts-quad"]), json.loads(right.headers["x-ghosts-quad"]))


# --- pictures --------------------------------------------------------------------------------------------------


def test_previews_and_photos_by_id_with_cache_headers(client, cat):
    r = client.get(f"/faces/{cat['faces'][0]}/preview")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert "max-age" in r.headers["cache-control"] and r.content[:4] == b"\x89PNG"
    r = client.get(f"/images/{cat['images'][0]}/photo")
    assert r.status_code == 200 and r.content[:2] == b"\xff\xd8"
    r = client.get(f"/images/{cat['images'][0]}/photo?size=thumb")
    assert r.status_code == 200
    assert client.get("/faces/999999/preview").status_code == 404


TRAVERSALS = (
    "/faces/..%2F..%2Fcatalog.sqlite/preview",
    "/faces/%2e%2e/preview",
    "/faces/1/../../catalog.sqlite",
    "/faces/-1/preview",
    "/faces/1.0/preview",
    "/images/..%2Fcatalog.sqlite/photo",
    "/images/1/photo/..%2F..%2Fcatalog.sqlite",
    "/static/..%2F..%2F..%2Fcatalog.sqlite",
    "/static/%2e%2e/app.py",
    "/previews/test/1.png",
    "/catalog.sqlite",
)


def test_traversal_attempts_get_404(client, cat):
    for path in TRAVERSALS:
        assert client.get(path).status_code == 404, path


def test_preview_path_outside_previews_is_not_served(client, cat, workspace):
    with workspace.session() as s:
        s.get(Face, cat["faces"][0]).preview_path = "../../etc/passwd"
        s.get(Face, cat["faces"][1]).preview_path = "catalog.sqlite"
    assert client.get(f"/faces/{cat['faces'][0]}/preview").status_code == 404
    assert client.get(f"/faces/{cat['faces'][1]}/preview").status_code == 404


# --- safety ----------------------------------------------------------------------------------------------------


def test_security_headers(client):
    r = client.get("/")
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert client.get("/static/review.js").headers["x-content-type-options"] == "nosniff"


def test_state_changes_need_post_and_csrf(client, cat):
    body = {"face_ids": [cat["faces"][0]], "decision": "accepted"}
    assert client.post("/api/decisions", json=body).status_code == 403
    csrf = csrf_of(client)
    assert client.post("/api/decisions", json=body, headers={"x-csrf-token": "0" * 64}).status_code == 403
    evil = {"x-csrf-token": csrf, "origin": "http://evil.example"}
    assert client.post("/api/decisions", json=body, headers=evil).status_code == 403
    assert client.post("/api/decisions", json=body, headers={"x-csrf-token": csrf}).status_code == 200
    assert client.get("/api/decisions").status_code == 405  # no state change by GET
    # Another browser (its own CSRF cookie) cannot replay this page's token.
    with TestClient(client.app, base_url="http://127.0.0.1") as other:
        other.get("/")
        assert other.post("/api/decisions", json=body, headers={"x-csrf-token": csrf}).status_code == 403


def test_a_restarted_server_hands_out_a_fresh_csrf_token(workspace, cat):
    body = {"face_ids": [cat["faces"][0]], "decision": "accepted"}
    with client_for(workspace) as first:
        old = csrf_of(first)
        cookies = dict(first.cookies)
    # The same browser (same cookies) against a restarted server (new secret).
    with TestClient(
        create_app(workspace, ReviewConfig(reviewer="ann")), base_url="http://127.0.0.1", cookies=cookies
    ) as c:
        assert c.post("/api/decisions", json=body, headers={"x-csrf-token": old}).status_code == 403
        fresh = c.get("/api/csrf").json()["csrf"]
        assert fresh != old
        assert c.post("/api/decisions", json=body, headers={"x-csrf-token": fresh}).status_code == 200


def test_loopback_server_refuses_foreign_host_header(client):
    assert client.get("/", headers={"host": "evil.example:8765"}).status_code == 400
    assert client.get("/", headers={"host": "localhost:8765"}).status_code == 200


def test_non_loopback_host_needs_a_token():
    with pytest.raises(GhostsError, match="without an access token"):
        make_config(host="0.0.0.0")
    with pytest.raises(GhostsError, match="at least 16"):
        make_config(host="0.0.0.0", token="short")
    assert make_config(host="0.0.0.0", token="t" * 20).token == "t" * 20
    assert make_config(host="::1").token is None  # loopback: no token needed


def test_token_checked_on_every_request(workspace, cat, caplog, monkeypatch):
    monkeypatch.setattr(pages, "INLINE_PREVIEWS", 4)  # some tiles load their preview by (signed) URL
    token = "s3cret-token-for-tests"
    face = cat["faces"][0]
    with client_for(workspace, host="0.0.0.0", token=token) as c:
        for path in ("/", "/api/counts", f"/faces/{face}/preview", "/images/1/photo"):
            assert c.get(path).status_code == 401, path
        assert c.get("/static/js/main.js").status_code == 200  # the page's own code: nothing private
        assert c.get("/", headers={"x-ghosts-token": "wrong-token-wrong-token"}).status_code == 401
        assert c.get("/", headers={"authorization": f"Bearer {token}"}).status_code == 200
        with caplog.at_level("WARNING", logger="ghosts.review"):
            assert c.get("/?token=wrong").status_code == 401
        assert any("refused GET /" in r.message and "testclient" in r.message for r in caplog.records)
        # The printed URL opens the page itself: no redirect, and no cookie but the CSRF one.
        r = c.get(f"/?sort=likes&token={token}", follow_redirects=False)
        assert r.status_code == 200
        assert all(not v.startswith("ghosts_token") for v in r.headers.get_list("set-cookie"))
        assert token not in re.sub(r'data-token-once="[^"]*"', "", r.text)  # links and images are signed
        assert c.get("/api/counts").status_code == 401  # no cookie carries the token
        signed = re.search(r'src="(/faces/\d+/preview\?exp=\d+&amp;sig=[0-9a-f]+)"', r.text).group(1)
        assert c.get(signed.replace("&amp;", "&")).status_code == 200
        assert c.get(signed.replace("&amp;", "&").replace("/preview", "/../1/preview")).status_code in (
            401,
            404,
        )
        other = re.sub(r"/faces/\d+/", f"/faces/{cat['faces'][1]}/", signed.replace("&amp;", "&"))
        assert c.get(other).status_code == 401  # a signature is bound to its path
        expired = re.sub(r"exp=\d+", "exp=1000", signed.replace("&amp;", "&"))
        assert c.get(expired).status_code == 401
        auth = {"authorization": f"Bearer {token}"}
        assert c.get("/api/sign?url=/photos", headers=auth).json()["url"].startswith("/photos?exp=")
        for bad in ("//host.example", "/\\host.example", "https://host.example"):
            assert c.get("/api/sign", params={"url": bad}, headers=auth).status_code == 422, bad
        r = c.get("http://127.0.0.1//host.example", headers=auth, follow_redirects=False)
        assert r.status_code == 404 and "location" not in r.headers  # never an off-site redirect
        csrf = csrf_of(c, f"/?token={token}")
        r = c.post(
            "/api/decisions",
            json={"face_ids": [face], "decision": "accepted"},
            headers={"x-csrf-token": csrf} | auth,
        )
        assert r.status_code == 200
        r = c.post(
            "/api/decisions",
            json={"face_ids": [face], "decision": "accepted"},
            headers={"x-csrf-token": csrf},
            params={"token": token},
        )
        assert r.status_code == 401  # a state change needs the header, not a URL


def test_bodies_are_capped_and_bad_input_is_a_4xx(client, cat, caplog):
    h = {"x-csrf-token": csrf_of(client)}
    big = b'{"face_ids": [' + b"1," * 600_000 + b'1], "decision": "accepted"}'
    r = client.post("/api/decisions", content=big, headers=h | {"content-type": "application/json"})
    assert r.status_code == 413 and "body" in r.json()["detail"]

    def chunks():
        for _ in range(20):
            yield b" " * 100_000

    r = client.post("/api/decisions", content=chunks(), headers=h | {"content-type": "application/json"})
    assert r.status_code == 413  # no Content-Length: capped while reading
    for body in (
        {"face_ids": [2**70], "decision": "accepted"},
        {"face_ids": [-1], "decision": "accepted"},
        {"face_ids": [1], "decision": "accepted", "rating": 9},
        {"face_ids": "1", "decision": "x"},
    ):
        r = client.post("/api/decisions", json=body, headers=h)
        assert r.status_code == 422 and r.json()["detail"].startswith("bad request"), (body, r.text)
    for path in (
        "/?page=0",
        "/?page=99999999999999999999",
        "/?min_score=nan",
        "/?max_pose=1e999",
        f"/images/{2**70}",
        f"/faces/{2**70}/preview",
        "/api/faces/state?ids=1,x",
        f"/api/faces/state?ids={2**80}",
        "/images/1?face=abc",
        f"/images/{2**64}/panel",
    ):
        r = client.get(path)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:200])
    assert client.post(f"/api/faces/{2**70}/delete", headers=h).status_code in (404, 422)


def test_access_log_behind_log_requests(workspace, cat, caplog):
    with client_for(workspace, log_requests=True) as c, caplog.at_level("INFO", logger="ghosts.review"):
        c.get("/api/counts?secret=x")
    line = next(r.message for r in caplog.records if "/api/counts" in r.message)
    assert line.startswith("GET /api/counts 200") and "secret" not in line
    with client_for(workspace) as c, caplog.at_level("INFO", logger="ghosts.review"):
        caplog.clear()
        c.get("/api/counts")
    assert not [r for r in caplog.records if "/api/counts" in r.message]


# --- scale -----------------------------------------------------------------------------------------------------


def test_ten_thousand_faces_open_fast(workspace):
    """The first grid page of 10,000 candidates is one indexed query: well under a second."""
    ids = make_catalog(workspace, photos=2, faces_per_photo=1)["images"]
    with workspace.session() as s:
        insert_faces(
            s,
            ids,
            10_000,
            flagged=lambda i: i % 5 == 0,
            quad_size=lambda i: 200.0 if i % 5 == 0 else 900.0,
            decision="undecided",
            upscaled=lambda i: i % 5 == 0,
        )
    with client_for(workspace) as c:
        c.get("/")  # warm the templates
        for path in ("/", "/?sort=likes", "/?sort=date&decision=undecided", "/?flag=flagged&page=16"):
            assert len(tile_ids(fast_get(c, path).text)) == 120, path
