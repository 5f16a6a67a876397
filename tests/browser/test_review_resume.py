""" "Selection done" in headless Chromium when the waiting pipeline run cannot be resumed: the page says why and
how to resume it, and the round stays open when pressing again may work."""

from __future__ import annotations

import uuid

import pytest

from curation.catalog.schema import ReviewRound
from curation.review import ReviewConfig
from curation.review.app import create_app
from curation.review.selection import open_round
from curation.review.server import serving
from flows.review_gate import make_resume, record_run_api
from tests.curation.test_review_support import make_catalog

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def gated(tmp_path_factory):
    """A review page served as `ghosts review` serves it: resuming each run on the API it was recorded on."""
    from curation.catalog.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("resume") / "ws")
    make_catalog(ws, photos=2, faces_per_photo=1)
    app = create_app(ws, ReviewConfig(reviewer="rita", target=2), resume=make_resume(ws))
    with serving(app) as url:
        yield ws, url
    ws.close()


def _press_done(page) -> None:
    page.click("#btn-done")
    page.click("#btn-done")  # armed, then confirmed


def test_selection_done_shows_why_the_run_was_not_resumed_and_how_to(browser, gated):
    ws, url = gated
    run_id = str(uuid.uuid4())
    rnd = open_round(ws, target=2, flow_run_id=run_id)
    record_run_api(ws, run_id, "http://127.0.0.1:9/api")  # the run's server: nothing listens there now
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    page = ctx.new_page()  # its own page: Chromium logs the refused request's 400, and rightly so
    page.goto(url + "/")
    page.wait_for_selector(".tile")
    _press_done(page)
    text = page.wait_for_selector("#toast.error:has-text('does not answer')").inner_text()
    assert f"the Prefect API at http://127.0.0.1:9/api, where flow run {run_id} waits" in text
    assert f"ghosts run resume {run_id}" in text and f"http://127.0.0.1:9/runs/flow-run/{run_id}" in text
    assert "round is still open" in text
    with ws.session() as s:
        assert s.get(ReviewRound, rnd.id).done_at is None

    with ws.session() as s:  # the same round, now with no run recorded
        s.get(ReviewRound, rnd.id).flow_run_id = None
    page.wait_for_selector("#toast", state="hidden", timeout=15_000)
    _press_done(page)
    text = page.wait_for_selector("#toast.info:has-text('no pipeline run is recorded')").inner_text()
    assert "so none was resumed" in text and "ghosts run resume RUN_ID" in text
    with ws.session() as s:
        assert s.get(ReviewRound, rnd.id).done_at is not None
    ctx.close()
