"""The Instagram source never stops a tag for one bad download: a server that drips bytes is cut off at the
download's total deadline, one that stalls at the per-read timeout, retries stop at the deadline too; each
such image is listed as failed (and its post finished next run), the rest of the tag comes in, and the
summary comes at the end.

Instagram's endpoints are faked with `responses` (tests/curation/test_instagram.py); the slow image servers are
real sockets on 127.0.0.1 (tests/curation/test_url_faults.py's Loopback), let through by `responses`."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass

import instaloader
import pytest
import responses

from curation.sources.instagram.scraper import NO_SHORTCODE, scrape_tags

# ruff: noqa: F811 - the fixtures imported from test_instagram are named as test arguments
from tests.curation.test_instagram import (  # noqa: F401 - fixtures
    TAG,
    USER,
    FakeInstagram,
    FakePost,
    cli,
    loader_factory,
    logged_in,
    rows,
    standard_pages,
    waits,
)
from tests.curation.test_url_faults import Loopback

SLOW = "C0eeeeeeee5"  # a single-image post on the second page of the standard feed


@dataclass
class ServedElsewhere(FakePost):
    """A post whose image is served by a test server instead of the fake CDN."""

    image_url: str = ""

    def url(self, i: int) -> str:
        return self.image_url


def fake_with_slow_image(server: Loopback, path: str) -> FakeInstagram:
    pages = standard_pages()
    pages[1][0] = ServedElsewhere(SLOW, ["image"], owner="eve", image_url=server.url(path))
    return FakeInstagram(pages)


@pytest.fixture
def dripping():
    s = Loopback(drip_s=0.4)  # each byte well within any read timeout: only a total deadline stops it
    yield s
    s.close()


@pytest.fixture
def stalling():
    s = Loopback(drip_s=30)  # the first byte, then nothing for 30 s
    yield s
    s.close()


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru("http://127.0.0.1")
        yield rsps


def _scrape(ws, loader, **kw):
    return scrape_tags(
        ws, [TAG], session=USER, loader=loader, progress=False, sleep=lambda s: None, **kw
    ).tags[0]


def _only_the_slow_one_failed(ws, t, reason_start):
    assert t.added == 7 and t.stopped is None and t.rejected == [], t  # the other 7 images of the tag came in
    assert [f["url"] for f in t.failed] == [f"https://www.instagram.com/p/{SLOW}/"], t.failed
    assert t.failed[0]["reason"].startswith(reason_start), t.failed[0]["reason"]
    assert t.incomplete == 1  # finished first on the next run
    assert SLOW not in {im.shortcode for im in rows(ws)}


def test_a_dripping_image_is_cut_off_at_the_deadline_and_the_tag_goes_on(
    logged_in, mocked, dripping, loader_factory
):
    fake_with_slow_image(dripping, "drip.jpg").install(mocked)
    started = time.monotonic()
    t = _scrape(logged_in, loader_factory(), download_deadline_s=2.0)
    took = time.monotonic() - started
    _only_the_slow_one_failed(logged_in, t, "too slow:")
    assert "within its deadline" in t.failed[0]["reason"]
    assert took < 2.0 + 10, took  # one deadline, not one per attempt, nor the body's 0.4 s x its bytes


def test_an_image_server_dripping_its_headers_is_cut_off_at_the_deadline_and_the_tag_goes_on(
    logged_in, mocked, dripping, loader_factory
):
    fake_with_slow_image(dripping, "driphead.jpg").install(mocked)  # one header byte every 0.5 s
    started = time.monotonic()
    t = _scrape(logged_in, loader_factory(), download_deadline_s=2.0)
    took = time.monotonic() - started
    _only_the_slow_one_failed(logged_in, t, "too slow:")
    assert "within its deadline" in t.failed[0]["reason"]
    assert took < 2.0 + 10, took  # the status line and headers alone would take about 40 s


def test_a_stalled_image_is_cut_off_at_the_read_timeout_and_the_tag_goes_on(
    logged_in, mocked, stalling, loader_factory
):
    fake_with_slow_image(stalling, "drip.jpg").install(mocked)
    started = time.monotonic()
    t = _scrape(logged_in, loader_factory(request_timeout=1.0))
    _only_the_slow_one_failed(logged_in, t, "download failed after 3 attempts")
    assert "timed out" in t.failed[0]["reason"].lower()
    assert time.monotonic() - started < 30


def test_retries_stop_at_the_deadline(logged_in, mocked, loader_factory):
    """A download that keeps failing (nothing listens on its port) is retried with backoff, but never past
    its deadline."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # closed again: connecting is refused at once
    pages = standard_pages()
    pages[1][0] = ServedElsewhere(SLOW, ["image"], owner="eve", image_url=f"http://127.0.0.1:{port}/x.jpg")
    FakeInstagram(pages).install(mocked)
    naps = []
    t = scrape_tags(
        logged_in,
        [TAG],
        session=USER,
        loader=loader_factory(),
        progress=False,
        sleep=lambda s: (naps.append(s), time.sleep(s)),
        download_deadline_s=1.0,
    ).tags[0]
    _only_the_slow_one_failed(logged_in, t, "download failed (")
    assert "gave up after the 1 s deadline (attempt 1 of 3)" in t.failed[0]["reason"]
    assert naps == [pytest.approx(1.0, abs=0.2)]  # the backoff (2 s) cut to what was left of the deadline


def test_cli_reports_the_failed_image_and_ends_with_the_summary(logged_in, mocked, dripping, monkeypatch):
    monkeypatch.setattr(instaloader.InstaloaderContext, "do_sleep", lambda self: None)
    fake_with_slow_image(dripping, "drip.jpg").install(mocked)
    r = cli(["scrape", "--tag", TAG, "--deadline", "2", "--json", "--data", str(logged_in.root)])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["added"] == 7 and doc["stopped"] == []
    assert [f["reason"].split(":")[0] for f in doc["failed"]] == ["too slow"]
    r = cli(["scrape", "--tag", TAG, "--deadline", "2", "--data", str(logged_in.root)])
    lines = r.stdout.splitlines()
    assert r.exit_code == 0 and lines[0].startswith(f"#{TAG} (recent")
    assert "failed 1," in lines[0]  # the post left from the first run is tried first, and fails the same way
    assert any(line.startswith(f"  https://www.instagram.com/p/{SLOW}/: too slow") for line in lines)


@dataclass
class Malformed(FakePost):
    """A post whose feed entry holds data instaloader cannot make sense of."""

    bad: dict | None = None

    def feed_node(self) -> dict:
        return {**super().feed_node(), **(self.bad or {})}

    def media(self) -> dict:
        m = super().media()
        if "taken_at_timestamp" in (self.bad or {}):
            m["taken_at"] = self.bad["taken_at_timestamp"]
        return m


@pytest.mark.parametrize(
    "bad",
    [{"taken_at_timestamp": "yesterday"}, {"taken_at_timestamp": 10**30}, {"shortcode": None}],
    ids=["date-text", "date-huge", "no-shortcode"],
)
def test_one_malformed_post_is_one_failed_item_and_the_tag_goes_on(logged_in, mocked, loader_factory, bad):
    pages = standard_pages()
    pages[1][0] = Malformed(SLOW, ["image"], owner="eve", bad=bad)
    FakeInstagram(pages).install(mocked)
    t = _scrape(logged_in, loader_factory())
    assert t.added == 7 and t.stopped is None, t
    [failed] = t.failed  # reported as that post, with why
    named = NO_SHORTCODE if bad.get("shortcode", SLOW) is None else f"https://www.instagram.com/p/{SLOW}/"
    assert failed["url"] == named and failed["reason"].startswith(("malformed post data", "TypeError")), (
        failed
    )
