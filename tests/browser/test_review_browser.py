"""The review page in headless Chromium, on a workspace built from ../shared/testdata/faces.

Keyboard decisions, undo, the counter, persistence across reloads, the detail view, a manual crop, the token
off loopback and the image route's refusal of traversal. The run also refreshes the two screenshots in docs/.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from curation.catalog.schema import Face
from curation.catalog.store import atomic_write_bytes
from curation.review import ReviewConfig
from curation.review.app import create_app
from curation.review.server import serving

pytestmark = pytest.mark.browser
DOCS = Path(__file__).resolve().parents[2] / "docs"


def reset_decisions(ws) -> None:
    with ws.session() as s:
        for f in s.scalars(select(Face)):
            f.decision, f.reviewer, f.reason, f.decided_at = "undecided", None, None, None


def tile(page, i):
    return page.locator(".tile").nth(i)


def counter(page) -> int:
    return int(page.inner_text("#count-accepted"))


def wait_saved(page, face_id: int, decision: str) -> None:
    page.wait_for_selector(f'.tile[data-face-id="{face_id}"][data-decision="{decision}"][data-saved="1"]')


def wait_until(page, js: str, timeout: float = 10.0) -> None:
    """Poll a JS expression from the test side (page.wait_for_function would eval inside the page, which our
    Content-Security-Policy rightly forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({js})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {js}")
        time.sleep(0.02)


def decision_in_db(ws, face_id: int) -> str:
    with ws.session() as s:
        return s.get(Face, face_id).decision


def test_keyboard_accept_reject_undo_and_reload(page, server, review_ws):
    reset_decisions(review_ws)
    page.goto(server + "/")
    page.wait_for_selector(".tile.cursor")
    ids = [int(x) for x in page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.faceId)")]
    assert len(ids) >= 4, "the test photos should give at least four faces"
    assert page.inner_text("#count-target") == "5" and counter(page) == 0

    page.keyboard.press("a")  # accept the first face, the cursor moves on
    wait_saved(page, ids[0], "accepted")
    assert counter(page) == 1
    page.keyboard.press("r")  # reject the second
    wait_saved(page, ids[1], "rejected")
    assert decision_in_db(review_ws, ids[1]) == "rejected"
    page.keyboard.press("u")  # undo the reject
    wait_saved(page, ids[1], "undecided")
    assert counter(page) == 1 and decision_in_db(review_ws, ids[1]) == "undecided"

    # Bulk: shift+→ twice selects three faces, `a` accepts them in one step, `u` undoes that step.
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    assert page.locator(".tile.selected").count() == 3
    page.keyboard.press("a")
    for fid in ids[2:5] if len(ids) >= 5 else ids[2:4]:
        wait_saved(page, fid, "accepted")
    bulk = min(3, len(ids) - 2)
    wait_until(page, f"document.querySelector('#count-accepted').textContent === '{1 + bulk}'")
    DOCS.mkdir(exist_ok=True)
    page.evaluate("() => { document.querySelector('#toast').hidden = true; }")  # a passing message
    atomic_write_bytes(DOCS / "review-grid.png", page.screenshot())
    page.keyboard.press("u")
    wait_until(page, "document.querySelector('#count-accepted').textContent === '1'")

    # Shift+R rejects with a reason tag, picked by digit.
    target = int(page.get_attribute(".tile.cursor", "data-face-id"))
    page.keyboard.press("Shift+R")
    assert page.locator("#reasons").is_visible()
    page.keyboard.press("1")
    wait_saved(page, target, "rejected")
    with review_ws.session() as s:
        assert s.get(Face, target).reason == "blurry"

    page.keyboard.press("?")  # the keys are one key away
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")

    page.reload()  # nothing lived only in the browser
    page.wait_for_selector(".tile")
    assert page.get_attribute(f'.tile[data-face-id="{ids[0]}"]', "data-decision") == "accepted"
    assert page.get_attribute(f'.tile[data-face-id="{ids[1]}"]', "data-decision") == "undecided"
    assert counter(page) == 1

    # The filter form (its empty threshold fields included) narrows the grid to the accepted face.
    page.select_option("select[name=decision]", "accepted")
    with page.expect_navigation():
        page.click(".filters button[type=submit]")
    assert page.eval_on_selector_all(".tile", "els => els.map(e => Number(e.dataset.faceId))") == [ids[0]]


def _eye_mouth(landmarks) -> dict[str, list[float]]:
    lm = np.asarray(landmarks, dtype=np.float64)
    return {
        "eye_left": lm[36:42].mean(0).tolist(),
        "eye_right": lm[42:48].mean(0).tolist(),
        "mouth_left": lm[48].tolist(),
        "mouth_right": lm[54].tolist(),
    }


def test_detail_view(page, server, review_ws):
    with review_ws.session() as s:
        # The best face of a photo with few faces: a readable detail view for the screenshot.
        faces = s.scalars(select(Face).where(Face.landmarks.is_not(None), Face.deleted.is_(False))).all()
        per_photo = {f.image_id: sum(g.image_id == f.image_id for g in faces) for f in faces}
        face = min(faces, key=lambda f: (per_photo[f.image_id], -(f.score or 0)))
        face_id, image_id = face.id, face.image_id
    page.goto(server + "/")
    page.click(f'.tile[data-face-id="{face_id}"]')
    page.keyboard.press(" ")  # the detail view
    panel = page.locator("#overlay .panel")
    panel.wait_for()
    assert int(panel.get_attribute("data-image-id")) == image_id
    wait_until(page, "document.querySelector('#overlay img.photo').naturalWidth > 0")
    assert page.locator("#overlay .marks rect").count() >= 1  # faces boxed
    assert page.locator("#overlay .marks circle").count() >= 68  # landmarks drawn
    assert page.locator("#overlay .face-card").count() >= 1
    assert "Provenance" in panel.inner_text() and "Near duplicates" in panel.inner_text()
    atomic_write_bytes(DOCS / "review-detail.png", page.screenshot())

    # In the detail view → accepts and moves to the next face; Esc goes back to the grid.
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f'#overlay .panel:not([data-focus="{face_id}"])')
    wait_saved(page, face_id, "accepted")
    page.keyboard.press("Escape")
    assert page.locator("#overlay").is_hidden()

    # Quick keys in the detail view each act on the next face, never twice on one still loading.
    reset_decisions(review_ws)
    page.reload()
    ids = [int(x) for x in page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.faceId)")][:3]
    page.keyboard.press("Enter")
    page.locator("#overlay .panel").wait_for()
    for key in ("ArrowRight", "ArrowLeft", "a"):
        page.keyboard.press(key)
    for fid, decision in zip(ids, ("accepted", "rejected", "accepted"), strict=True):
        wait_saved(page, fid, decision)
    page.keyboard.press("Escape")


def best_landmarked_face(ws) -> tuple[int, int, dict, set[int]]:
    """The best-scored live face with landmarks: its id, its photo's id, its eye and mouth points, and the ids
    of every face now (to find the one a manual crop adds)."""
    with ws.session() as s:
        face = s.scalars(
            select(Face)
            .where(Face.landmarks.is_not(None), Face.deleted.is_(False))
            .order_by(Face.score.desc())
        ).first()
        return face.id, face.image_id, _eye_mouth(face.landmarks), set(s.scalars(select(Face.id)))


def start_manual_crop(page, server: str, face_id: int):
    """Open the face's photo in the detail view and press m: the marks layer, the photo's width and height,
    and the layer's box on screen."""
    page.goto(server + "/")
    page.click(f'.tile[data-face-id="{face_id}"]')
    page.keyboard.press("Enter")
    panel = page.locator("#overlay .panel")
    panel.wait_for()
    wait_until(page, "document.querySelector('#overlay img.photo').naturalWidth > 0")
    page.keyboard.press("m")
    svg = page.locator("#overlay svg.marks")
    w, h = float(panel.get_attribute("data-width")), float(panel.get_attribute("data-height"))
    return svg, w, h, svg.bounding_box()


def click_photo(page, box, w: float, h: float, xy) -> None:
    """Click the photo point `xy` (photo pixels) on its on-screen `box`."""
    x, y = xy
    page.mouse.click(box["x"] + x / w * box["width"], box["y"] + y / h * box["height"])


def test_manual_crop_adds_a_face_to_the_grid(page, server, review_ws):
    from alignment.align import quad_from_points  # the FFHQ quad, from the alignment room

    face_id, image_id, points, before = best_landmarked_face(review_ws)
    # The manual crop: m, then the two eye centres and the two mouth corners of the same face.
    svg, w, h, box = start_manual_crop(page, server, face_id)
    for key in ("eye_left", "eye_right", "mouth_left", "mouth_right"):
        click_photo(page, box, w, h, points[key])
        assert svg.bounding_box() == box, "the photo moved while clicking"
    page.wait_for_selector('#overlay [data-action="manual-save"]:not([hidden])')
    wait_until(page, "document.querySelector('#overlay .manual-preview').naturalWidth > 0")
    page.click('#overlay [data-action="manual-save"]')
    page.wait_for_selector(".toast:has-text('cropped by hand')")
    with review_ws.session() as s:
        new = [f for f in s.scalars(select(Face).where(Face.id.not_in(before)))]
    assert len(new) == 1 and new[0].manual and new[0].detector == "manual" and new[0].image_id == image_id
    px = w / box["width"]  # photo pixels per screen pixel: clicks land on whole screen pixels
    for key in points:
        assert np.allclose(new[0].points[key], points[key], atol=1.5 * px), key
    p = new[0].points
    assert np.allclose(
        new[0].quad, quad_from_points(p["eye_left"], p["eye_right"], p["mouth_left"], p["mouth_right"])
    )
    page.keyboard.press("Escape")  # back to the grid, which reloads with the new face in it
    page.wait_for_selector(f'.tile[data-face-id="{new[0].id}"]')


def test_token_required_off_loopback(browser, review_ws):
    token = "browser-test-token-0123456789"
    app = create_app(review_ws, ReviewConfig(host="0.0.0.0", token=token, reviewer="tester"))
    with serving(app, host="0.0.0.0") as url:
        ctx = browser.new_context()
        pg = ctx.new_page()
        resp = pg.goto(url + "/")
        assert resp.status == 401 and "access token required" in pg.content()
        resp = pg.goto(url + "/api/counts")
        assert resp.status == 401
        resp = pg.goto(f"{url}/?token={token}")  # the printed URL: the page keeps the token, not a cookie
        assert resp.status == 200
        pg.wait_for_selector(".tile")
        wait_until(pg, "!location.search.includes('token=')")
        assert not [c for c in ctx.cookies() if token in c["value"]]
        assert pg.request.get(url + "/api/counts").status == 401  # nothing but the page's script carries it
        first = int(pg.eval_on_selector(".tile", "e => e.dataset.faceId"))
        pg.keyboard.press("a")  # a decision goes out with the Authorization header
        wait_saved(pg, first, "accepted")
        images = pg.eval_on_selector_all(".tile img", "els => els.map(e => e.naturalWidth)")
        assert images and all(w > 0 for w in images[:3])  # signed image URLs load
        pg.keyboard.press("u")
        wait_saved(pg, first, "undecided")
        if pg.locator('.pager a[rel="next"]').count():
            pg.keyboard.press("n")  # a link followed: re-signed, still no token in the URL
            pg.wait_for_url("**page=2**")
            assert "token=" not in pg.url and "sig=" in pg.url
            pg.wait_for_selector(".tile")
        ctx.close()


def test_image_route_refuses_traversal(page, server):
    for path in (
        "/faces/..%2F..%2Fcatalog.sqlite/preview",
        "/faces/..%2Fcatalog.sqlite/preview",
        "/images/..%2F..%2Fcatalog.sqlite/photo",
        "/static/..%2F..%2Fcatalog.sqlite",
    ):
        assert page.request.get(server + path).status == 404, path


def test_loupe_and_compare_on_the_analysed_photos(page, server, review_ws):
    reset_decisions(review_ws)
    page.goto(server + "/")
    page.wait_for_selector(".tile.cursor")
    page.keyboard.press("z")  # 100%: the aligned crop at the workspace's target size, the photo's own pixels
    page.wait_for_selector("#overlay .views.loupe img")
    wait_until(
        page,
        "[...document.querySelectorAll('#overlay .views img')].every(i => i.complete && i.naturalWidth > 0)",
    )
    sizes = page.eval_on_selector_all("#overlay .views img", "els => els.map(e => [e.naturalWidth, e.width])")
    assert sizes[0] == [512, 512] and sizes[1][0] == sizes[1][1]  # drawn at 100%
    atomic_write_bytes(DOCS / "review-loupe.png", page.screenshot())
    page.keyboard.press("Escape")
    tile(page, 0).click()
    tile(page, 2).click(modifiers=["Shift"])
    page.keyboard.press("c")
    page.wait_for_selector("#overlay .views.compare")
    wait_until(
        page,
        "[...document.querySelectorAll('#overlay .views img')].every(i => i.complete && i.naturalWidth > 0)",
    )
    assert page.locator("#overlay .views.compare figure").count() == 3
    atomic_write_bytes(DOCS / "review-compare.png", page.screenshot())
    page.keyboard.press("Escape")
