"""The review page as a culling tool, in headless Chromium against a real server over a real workspace:
paging while deciding, selections, rounds on record, ratings, restore, manual crops in any click order, touch,
and concurrent decisions from several clients."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from curation.catalog.schema import Decision, Face, ReviewRound
from curation.review import ReviewConfig
from curation.review.app import create_app
from curation.review.server import serving
from tests.browser.test_review_browser import (
    best_landmarked_face,
    click_photo,
    reset_decisions,
    start_manual_crop,
    wait_saved,
    wait_until,
)
from tests.curation.test_review_support import hammer, make_catalog

pytestmark = pytest.mark.browser
PER_PAGE = 12


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """40 faces on 20 photos (pages of 12): enough to page through."""
    from curation.catalog.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("culling") / "ws")
    cat = make_catalog(ws, photos=20, faces_per_photo=2)
    app = create_app(ws, ReviewConfig(reviewer="culler", target=30, per_page=PER_PAGE))
    with serving(app) as url:
        yield ws, cat["faces"], url
    ws.close()


def fresh(ws) -> None:
    reset_decisions(ws)
    with ws.session() as s:
        for f in s.scalars(select(Face)):
            f.rating, f.deleted = None, False
        for d in s.scalars(select(Decision)):
            s.delete(d)


def tile_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.faceId)")]


def open_grid(page, url: str, path: str = "/") -> list[int]:
    """The grid at `path`, once its cursor is placed: the face ids of its tiles, in order."""
    page.goto(url + path)
    page.wait_for_selector(".tile.cursor")
    return tile_ids(page)


def decisions(ws, ids) -> list[str]:
    with ws.session() as s:
        return [s.get(Face, i).decision for i in ids]


def settled(page) -> None:
    wait_until(page, "window.ghostsReview && window.ghostsReview.pending === 0")


def test_deciding_whole_pages_of_undecided_reaches_every_face_once(page, many):
    ws, faces, url = many
    fresh(ws)
    page.goto(url + "/?decision=undecided")
    seen = []
    while True:
        page.wait_for_selector(".tile.cursor")
        ids = tile_ids(page)
        seen += ids
        page.keyboard.press("Control+a")  # the whole page selected, one decision
        wait_until(page, f"document.querySelectorAll('.tile.selected').length === {len(ids)}")
        page.keyboard.press("a")
        for fid in ids:
            wait_saved(page, fid, "accepted")
        if not page.locator('.pager a[rel="next"]').count():
            break
        page.keyboard.press("n")
        page.wait_for_url(f"**page={len(seen) // PER_PAGE + 1}**")
    assert sorted(seen) == sorted(faces) and len(seen) == len(set(seen)) == 40
    assert set(decisions(ws, faces)) == {"accepted"}
    with ws.session() as s:  # one decision per page, so one undo step per page
        assert len({d.decided_at for d in s.scalars(select(Decision))}) == 4


def test_ctrl_click_shift_click_and_select_all_are_one_undo_step_each(page, many):
    ws, faces, url = many
    fresh(ws)
    ids = open_grid(page, url)
    page.click(f'.tile[data-face-id="{ids[2]}"]')  # A: a plain click puts the cursor on it
    page.click(f'.tile[data-face-id="{ids[5]}"]', modifiers=["Control"])  # then ctrl-click B
    page.keyboard.press("r")
    wait_saved(page, ids[2], "rejected")
    wait_saved(page, ids[5], "rejected")
    assert decisions(ws, ids[:7]) == [
        "undecided",
        "undecided",
        "rejected",
        "undecided",
        "undecided",
        "rejected",
        "undecided",
    ]
    page.click(f'.tile[data-face-id="{ids[7]}"]')
    page.click(f'.tile[data-face-id="{ids[10]}"]', modifiers=["Shift"])  # a range of four
    page.keyboard.press("s")
    for fid in ids[7:11]:
        wait_saved(page, fid, "skipped")
    page.keyboard.press("u")  # the range, in one step
    for fid in ids[7:11]:
        wait_saved(page, fid, "undecided")
    assert decisions(ws, [ids[2], ids[5]]) == ["rejected", "rejected"]
    page.keyboard.press("Control+Shift+a")  # every face the filter matches, all 40 over 4 pages
    page.wait_for_selector("#selection-info:has-text('40 selected')")
    page.keyboard.press("a")
    settled(page)
    assert set(decisions(ws, faces)) == {"accepted"}
    page.keyboard.press("u")
    settled(page)
    assert decisions(ws, [ids[2], ids[5]]) == ["rejected", "rejected"]
    assert sorted(decisions(ws, faces)).count("undecided") == 38


def test_deciding_the_last_tile_of_a_page_moves_on(page, many):
    ws, _faces, url = many
    fresh(ws)
    last = open_grid(page, url)[-1]
    page.click(f'.tile[data-face-id="{last}"]')
    page.keyboard.press("a")
    page.wait_for_url("**page=2**")
    page.wait_for_selector(".tile.cursor")
    assert decisions(ws, [last]) == ["accepted"]


def test_rounds_are_on_record_and_a_closed_round_is_immutable(browser, many):
    ws, _faces, url = many
    fresh(ws)
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()  # its own page: the refused undo's 409 is logged by Chromium, and rightly so
    ids = open_grid(page, url)
    for _ in range(3):
        page.keyboard.press("a")
    wait_saved(page, ids[2], "accepted")
    first = page.inner_text("#round")
    assert first.startswith("round ") and first.endswith(" open")
    page.click("#btn-done")
    page.click("#btn-done")  # armed, then confirmed
    page.wait_for_selector("#round[data-state='closed']")
    assert "closed by culler with 3 accepted" in page.inner_text("#round")
    with ws.session() as s:
        closed = s.scalars(select(ReviewRound).order_by(ReviewRound.id.desc())).first()
        assert (closed.accepted, closed.closed_by) == (3, "culler") and closed.done_at is not None
    page.keyboard.press("u")  # the closed round's decisions stay
    page.wait_for_selector(".toast:has-text('closed')")
    assert decisions(ws, ids[:3]) == ["accepted"] * 3
    page.keyboard.press("a")  # goes into the next round, visibly
    wait_saved(page, ids[3], "accepted")
    page.wait_for_selector(f"#round[data-state='open']:has-text('round {closed.id + 1} open')")
    with ws.session() as s:
        assert s.scalars(select(Decision).order_by(Decision.id.desc())).first().round_id == closed.id + 1
        assert s.get(ReviewRound, closed.id).accepted == 3
    ctx.close()


def test_ratings_by_key_are_kept_sorted_and_filtered(page, many):
    ws, _faces, url = many
    fresh(ws)
    ids = open_grid(page, url)
    page.keyboard.press("4")
    page.wait_for_selector(f'.tile[data-face-id="{ids[0]}"][data-rating="4"]')
    assert page.inner_text(f'.tile[data-face-id="{ids[0]}"] .stars') == "★★★★"
    page.keyboard.press("a")  # the rating stays with the decision
    wait_saved(page, ids[0], "accepted")
    with ws.session() as s:
        assert (s.get(Face, ids[0]).rating, s.get(Face, ids[0]).decision) == (4, "accepted")
    page.goto(url + "/?sort=rating&min_rating=3")
    page.wait_for_selector(".tile")
    assert tile_ids(page) == [ids[0]]


def test_restore_a_deleted_face_from_the_detail_view(page, many):
    ws, _faces, url = many
    fresh(ws)
    fid = open_grid(page, url)[0]
    page.keyboard.press("Enter")
    btn = page.locator(f'#overlay .face-card [data-action="delete"][data-face-id="{fid}"]')
    btn.click()
    btn.click()  # "really delete?"
    restore = page.locator(f'#overlay [data-action="restore"][data-face-id="{fid}"]')
    restore.wait_for()
    with ws.session() as s:
        assert s.get(Face, fid).deleted
    restore.click()
    page.wait_for_selector(f'#overlay .face-card [data-action="delete"][data-face-id="{fid}"]')
    with ws.session() as s:
        assert not s.get(Face, fid).deleted


def swipe(page, selector: str, dx: float) -> None:
    box = page.locator(selector).first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    for kind, px in (("pointerdown", x), ("pointerup", x + dx)):
        page.dispatch_event(
            selector,
            kind,
            {
                "pointerType": "touch",
                "clientX": px,
                "clientY": y,
                "bubbles": True,
                "isPrimary": True,
                "pointerId": 7,
            },
        )


def test_touch_swipes_decide_on_the_grid_and_in_the_detail_view(browser, many):
    ws, _faces, url = many
    fresh(ws)
    ctx = browser.new_context(viewport={"width": 1024, "height": 768}, has_touch=True, is_mobile=True)
    page = ctx.new_page()
    ids = open_grid(page, url)
    swipe(page, f'.tile[data-face-id="{ids[1]}"]', 120)
    wait_saved(page, ids[1], "accepted")
    swipe(page, f'.tile[data-face-id="{ids[2]}"]', -120)
    wait_saved(page, ids[2], "rejected")
    page.locator(f'.tile[data-face-id="{ids[4]}"]').tap()
    page.keyboard.press("Enter")
    page.locator("#overlay .panel").wait_for()
    swipe(page, "#overlay .photo-col", 150)
    wait_until(page, "window.ghostsReview.pending === 0")
    assert decisions(ws, [ids[4]]) == ["accepted"]
    ctx.close()


def test_manual_points_in_any_click_order_give_the_same_face(page, server, review_ws):
    face_id, _image_id, points, before = best_landmarked_face(review_ws)
    _svg, w, h, box = start_manual_crop(page, server, face_id)
    for key in ("mouth_right", "eye_right", "mouth_left", "eye_left"):  # an unexpected order
        click_photo(page, box, w, h, points[key])
    page.wait_for_selector("#overlay .manual-hint:has-text('named by where they lie')")
    page.click('#overlay [data-action="manual-save"]')
    page.wait_for_selector(".toast:has-text('cropped by hand')")
    with review_ws.session() as s:
        new = s.scalars(select(Face).where(Face.id.not_in(before))).one()
        new_points, new_id = new.points, new.id
        s.get(Face, new_id).deleted = True  # leave the shared workspace as it was
    px = w / box["width"]
    for key in points:  # named by geometry: the crop is upright, not rotated
        assert np.allclose(new_points[key], points[key], atol=1.5 * px), key
    page.keyboard.press("Escape")


def test_concurrent_decisions_from_many_clients_keep_history_right(many, page):
    """Several clients post at once on the same faces of the live server: every history row's `previous` is
    the state the row before it left, and undo walks back to the start."""
    ws, faces, url = many
    fresh(ws)
    page.goto(url + "/")
    csrf = page.get_attribute("body", "data-csrf")
    cookie = {c["name"]: c["value"] for c in page.context.cookies()}["ghosts_csrf"]
    h = {"x-csrf-token": csrf, "cookie": f"ghosts_csrf={cookie}"}
    posted = ("accepted", "rejected", "skipped", "rejected")
    assert not hammer(lambda: httpx.Client(base_url=url, headers=h), faces[:2], posted, h)  # a client each
    with ws.session() as s:
        for fid in faces[:2]:
            state = "undecided"
            for row in s.scalars(select(Decision).where(Decision.face_id == fid).order_by(Decision.id)):
                assert row.previous == state
                state = row.decision
            assert s.get(Face, fid).decision == state
    with httpx.Client(base_url=url, headers=h) as c:
        for _ in range(120):
            assert c.post("/api/undo").status_code == 200
    assert decisions(ws, faces[:2]) == ["undecided", "undecided"]


def test_duplicates_together_keep_best_loupe_compare_and_owner_counts(page, many):
    from tests.curation.test_review_support import link_duplicates

    ws, faces, url = many
    fresh(ws)
    with ws.session() as s:
        best = s.scalars(select(Face).order_by(Face.score.desc(), Face.id)).first().image_id
        photos = [best] + [i for i in sorted({s.get(Face, f).image_id for f in faces}) if i != best][:2]
        group = [
            f.id
            for f in s.scalars(
                select(Face).where(Face.image_id.in_(photos)).order_by(Face.score.desc(), Face.id)
            )
        ]
    link_duplicates(ws, photos[0], photos[1])
    link_duplicates(ws, photos[1], photos[2])  # one group of three photos, six faces
    ids = open_grid(page, url, "/?sort=group")
    pos = sorted(ids.index(f) for f in group)
    assert pos == list(range(6))  # shown together, the best group first
    page.click(f'.tile[data-face-id="{group[3]}"]')
    page.keyboard.press("d")
    wait_saved(page, group[0], "accepted")
    for fid in group[1:]:
        wait_saved(page, fid, "rejected")
    with ws.session() as s:
        assert {s.get(Face, f).reason for f in group[1:]} == {"duplicate"}
    page.keyboard.press("u")  # one step
    for fid in group:
        wait_saved(page, fid, "undecided")
    page.keyboard.press("z")
    page.wait_for_selector("#overlay .views.loupe img")
    wait_until(page, "[...document.querySelectorAll('#overlay .views img')].every(i => i.naturalWidth > 0)")
    widths = page.eval_on_selector_all("#overlay .views img", "els => els.map(e => e.naturalWidth)")
    assert widths[0] == 512 and widths[1] > 50  # the aligned crop at the dataset side, the photo's own pixels
    page.keyboard.press("Escape")
    page.click(f'.tile[data-face-id="{ids[0]}"]')
    page.click(f'.tile[data-face-id="{ids[1]}"]', modifiers=["Shift"])
    page.click(f'.tile[data-face-id="{ids[2]}"]', modifiers=["Control"])
    page.keyboard.press("c")
    page.wait_for_selector("#overlay .views.compare")
    assert page.locator("#overlay .views.compare figure").count() == 3
    page.keyboard.press("Escape")
    page.keyboard.press("a")  # owners and tags beside the counter
    settled(page)
    wait_until(page, "document.querySelector('#spread').textContent.includes('@user')")
