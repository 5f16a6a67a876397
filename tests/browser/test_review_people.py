"""The people view in headless Chromium against a real server: merge two people by keys, show one person's
faces in the grid, accept them past the per-person cap (the counter warns), split two faces off into a new
person, and check every count on the page and in the catalog."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from curation.analysis.identities import cluster_workspace
from curation.catalog.people import caps_status, people_counts, set_caps
from curation.catalog.schema import Face
from curation.review import ReviewConfig
from curation.review.app import create_app
from curation.review.server import serving
from tests.browser.test_review_browser import wait_saved, wait_until
from tests.curation.test_identity_edits import GROUPS, _near
from tests.curation.test_review_support import make_catalog

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def people_ws(tmp_path_factory):
    """12 faces on 6 photos, described as three people of four faces, clustered; at most 1 accepted each."""
    from curation.catalog.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("people") / "ws")
    cat = make_catalog(ws)
    with ws.session() as s:
        for k, fid in enumerate(cat["faces"]):
            s.get(Face, fid).descriptor = _near(k % GROUPS, seed=k)
    assert cluster_workspace(ws) == (12, 3)
    with ws.session() as s:
        set_caps(s, max_per_person=1)
    app = create_app(ws, ReviewConfig(reviewer="sorter", target=10))
    with serving(app) as url:
        yield ws, url
    ws.close()


def cards(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all(".person", "els => els.map(e => e.dataset.personId)")]


def card_text(page, person: int, part: str) -> str:
    return page.inner_text(f'.person[data-person-id="{person}"] .{part}')


def faces_of(ws) -> dict[int, int]:
    with ws.session() as s:
        return {p.id: p.faces for p in people_counts(s)}


def test_filter_merge_split_and_the_counts(page, people_ws):
    ws, url = people_ws
    page.goto(url + "/people")
    page.wait_for_selector(".person.cursor")
    first, second, third = cards(page)
    assert (
        card_text(page, first, "n-faces") == "4 faces"
        and card_text(page, first, "n-accepted") == "0 accepted"
    )

    # Merge by keys: mark the second person (l, x), back onto the first (h), m arms, m merges.
    page.keyboard.press("l")
    page.keyboard.press("x")
    page.keyboard.press("h")
    page.keyboard.press("m")
    assert "press m again" in page.inner_text("#people-info")
    assert len(cards(page)) == 3  # nothing merged yet
    page.keyboard.press("m")
    wait_until(page, "document.querySelectorAll('.person').length === 2")
    assert cards(page) == [first, third] and card_text(page, first, "n-faces") == "8 faces"
    assert faces_of(ws) == {first: 8, third: 4}

    # Enter: the merged person's faces in the grid, and only theirs.
    page.keyboard.press("Enter")
    page.wait_for_selector("#person-bar")
    wait_until(page, "document.querySelector('#person-bar .bar-faces').textContent === '8 faces'")
    ids = [int(x) for x in page.eval_on_selector_all(".tile", "els => els.map(e => e.dataset.faceId)")]
    with ws.session() as s:
        assert sorted(ids) == sorted(s.scalars(select(Face.id).where(Face.person_id == first)))

    # Accept two of their faces: the bar counts them, the counter warns (the cap is 1 per person).
    assert page.get_attribute("#caps", "data-over") in ("", None)
    page.keyboard.press("a")
    wait_saved(page, ids[0], "accepted")
    page.keyboard.press("a")
    wait_saved(page, ids[1], "accepted")
    wait_until(page, "document.querySelector('#caps').dataset.over === '1'")
    assert f"per person: most 2 (person {first}) / max 1 ⚠ 1 over" in page.inner_text("#caps")
    assert page.get_attribute("#caps .cap:last-child", "data-over") == ""  # no account cap set
    wait_until(page, "document.querySelector('#person-bar .bar-accepted').textContent === '2 accepted'")

    # Split: shift+l selects the next two faces, x moves them out into a new person.
    page.keyboard.press("Shift+l")
    assert page.locator(".tile.selected").count() == 2
    page.keyboard.press("x")
    wait_until(page, "document.querySelector('#person-bar .bar-faces').textContent === '6 faces'")
    assert page.locator(".tile.moved").count() == 2
    moved = {
        int(x) for x in page.eval_on_selector_all(".tile.moved", "els => els.map(e => e.dataset.faceId)")
    }
    assert moved == set(ids[2:4])
    with ws.session() as s:
        new = {s.get(Face, f).person_id for f in moved}
    assert len(new) == 1 and new.isdisjoint({first, second, third})
    (new,) = new
    assert faces_of(ws) == {first: 6, third: 4, new: 2}

    # Sorted by person: each tile labelled with its person, the first face of each person marked.
    page.goto(url + "/?sort=person")
    page.wait_for_selector(".tile .hint-person")
    shown = page.eval_on_selector_all(
        ".tile", "els => els.map(e => [Number(e.dataset.faceId), e.dataset.person])"
    )
    with ws.session() as s:
        assert all(str(s.get(Face, f).person_id) == p for f, p in shown)
    starts = page.eval_on_selector_all(".tile.person-start", "els => els.map(e => e.dataset.person)")
    assert starts == sorted({p for _, p in shown}, key=int) == [str(p) for p in sorted([first, third, new])]
    page.goto(url + f"/?person={first}")
    page.wait_for_selector("#person-bar")

    # g: back to the people view, with the new person and everyone's counts.
    page.keyboard.press("g")
    page.wait_for_selector(f'.person[data-person-id="{new}"]')
    assert sorted(cards(page)) == sorted([first, third, new])
    assert (
        card_text(page, first, "n-faces") == "6 faces"
        and card_text(page, first, "n-accepted") == "2 accepted"
    )
    assert card_text(page, new, "n-faces") == "2 faces"
    assert page.get_attribute(f'.person[data-person-id="{first}"]', "data-over") == "1"
    wait_until(page, "document.querySelector('#caps').dataset.over === '1'")

    # The caps from the page: a per-account cap, and none per person (the warning goes, the card's mark too).
    page.fill('#caps-form input[name="max_per_person"]', "")
    page.fill('#caps-form input[name="max_per_owner"]', "5")
    page.press('#caps-form input[name="max_per_owner"]', "Enter")
    wait_until(page, "document.querySelector('#caps').textContent.includes('/ max 5')")
    page.wait_for_selector(f'.person[data-person-id="{first}"]:not([data-over="1"])')
    with ws.session() as s:
        assert caps_status(s)["max_per_person"] is None and caps_status(s)["max_per_owner"] == 5
    assert page.get_attribute("#caps", "data-over") == ""
    with ws.session() as s:
        set_caps(s, max_per_person=1, max_per_owner=None)


def test_touch_marks_and_the_merge_button(browser, people_ws):
    """On a touch screen: a tap marks a person, a second tap on another moves the cursor, the button twice
    merges."""
    ws, url = people_ws
    ctx = browser.new_context(viewport={"width": 800, "height": 900}, has_touch=True, is_mobile=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(url + "/people")
        page.wait_for_selector(".person.cursor")
        before = cards(page)
        a, b = before[-1], before[0]
        page.tap(f'.person[data-person-id="{a}"] img')  # marks a (and puts the cursor on it)
        page.tap(f'.person[data-person-id="{b}"] .meta')  # marks b, cursor on b
        page.tap(f'.person[data-person-id="{b}"] .meta')  # unmarks b: the cursor stays, a stays marked
        page.tap("#btn-merge")
        assert "press m again" in page.inner_text("#people-info")
        page.tap("#btn-merge")
        wait_until(page, f"document.querySelectorAll('.person').length === {len(before) - 1}")
        assert a not in cards(page)
        assert faces_of(ws)[b] == int(card_text(page, b, "n-faces").split()[0])
    finally:
        ctx.close()
    assert not errors, errors
