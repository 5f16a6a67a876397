"""The feeds in order, the diagnosis of a refused feed, and what the messages say (issue 18).

Same fake Instagram as test_instagram.py: `responses` answers instaloader's real requests (and ours to the
hashtag sections endpoint) with JSON shaped like Instagram's, paged with `more_available` true.
"""

from __future__ import annotations

import json

import requests

from curation.sources.instagram.diagnosis import check_endpoints
from curation.sources.instagram.scraper import scrape_tags
from curation.sources.instagram.session import load_session
from curation.sources.instagram.state import TagState
from tests.curation import test_instagram as base
from tests.curation.test_instagram import (
    TAG,
    USER,
    FakeInstagram,
    FakePost,
    fake_page,
    network_down_for_probe,
    rows,
    scrape,
    standard_pages,
)

# The fixtures of the Instagram tests, shared.
fake, waits, loader_factory, logged_in = base.fake, base.waits, base.loader_factory, base.logged_in

PLEASE_WAIT = (
    401,
    {"message": "Please wait a few minutes before you try again.", "require_login": True, "status": "fail"},
)


def revoke_query_hash(fake: FakeInstagram) -> None:
    """The legacy query_hash of the recent feed, revoked: Instagram answers 401 "Please wait" whatever the
    session (as upstream issue reports show for revoked ids)."""
    fake.fault("feed", *[PLEASE_WAIT] * 5)


def test_a_revoked_recent_feed_falls_back_to_the_sections_endpoint_with_pagination(
    logged_in, fake, loader_factory
):
    revoke_query_hash(fake)
    t = scrape(logged_in, loader_factory).tags[0]
    assert (t.feed, t.finished, t.stopped, t.added) == ("sections", True, None, 8)
    # The probe told the dead endpoint from a rate limit: one request to current_user, then the fallback.
    assert fake.count("current_user") == 1 and len(t.notes) == 1
    assert "gone or changed, not a rate limit" in t.notes[0] and "accounts/current_user" in t.notes[0]
    # Two pages of the sections endpoint: page 2 asked with the cursor, page and media ids page 1 gave.
    assert fake.keys("sections_recent") == ["0", "1"]
    assert {im.provenance["feed"] for im in rows(logged_in)} == {"sections"}
    assert {im.owner for im in rows(logged_in)} == {"anna", "ben", "dan", "eve", "fred", "gus"}
    assert fake.count("media") == 0  # the sections answer carries owners and captions
    assert TagState.load(logged_in, TAG).feed == "sections"


def test_empty_sections_with_more_available_go_on_to_the_next_page(logged_in, loader_factory):
    import responses

    pages = standard_pages()
    ig = FakeInstagram([pages[0], [], pages[1]])  # the middle page has no sections at all
    revoke_query_hash(ig)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ig.install(rsps)
        t = scrape(logged_in, loader_factory).tags[0]
    assert t.feed == "sections" and t.finished and t.added == 8
    assert ig.keys("sections_recent") == ["0", "1", "2"]


def test_resume_on_the_sections_feed(logged_in, fake, loader_factory):
    revoke_query_hash(fake)

    def network_goes_down():
        network_down_for_probe(fake)  # from now on the probe finds no network either
        raise requests.ConnectionError("Failed to establish a new connection")

    fake.fault(
        "sections_recent",
        lambda: fake.sections_normal(0),
        network_goes_down,
        *[requests.ConnectionError("Failed to establish a new connection")] * 2,
    )
    first = scrape(logged_in, loader_factory).tags[0]
    assert first.stop_kind == "network" and first.added == 4 and not first.finished
    assert (
        "Kept: 4 new images from #ghostfaces" in first.stopped
        and "Retry once the network is back" in first.stopped
    )
    state = TagState.load(logged_in, TAG)
    assert state.feed == "sections" and state.frozen["max_id"] is None and state.frozen["skip"] == 3

    fake.calls.clear()
    revoke_query_hash(fake)
    second = scrape(logged_in, loader_factory).tags[0]
    # Resumed on the feed that holds the position: the dead recent feed is not asked again.
    assert second.feed == "sections" and second.resumed and second.finished and second.added == 4
    assert fake.count("feed") == 0 and fake.keys("sections_recent") == ["0", "1"]
    assert second.posts_known == 1  # the post in flight, re-given by the saved position, is already in
    shas = [im.sha256 for im in rows(logged_in)]
    assert len(shas) == 8 == len(set(shas))


def test_top_posts_page_through_the_sections_endpoint_and_resume(logged_in, loader_factory):
    import responses

    top = [FakePost("C0hhhhhhhh8", ["image"], owner="hana"), FakePost("C0iiiiiiii9", ["image"], owner="ivo")]
    more = [
        [FakePost("C0jjjjjjjj0", ["image"], owner="jo")],
        [FakePost("C0kkkkkkkkA", ["image"], owner="kim")],
    ]
    ig = FakeInstagram(standard_pages(), top=top, top_pages=more)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ig.install(rsps)
        t = scrape(logged_in, loader_factory, top_only=True, limit=3).tags[0]
        assert t.feed == "top" and t.added == 3 and not t.finished
        # The first top page came with web_info; the second from sections tab=top with its cursor.
        assert ig.keys("sections_top") == ["1"] and ig.count("feed") == 0
        state = TagState.load(logged_in, TAG)
        assert state.feed == "top" and state.frozen["max_id"] == "top1"
        ig.calls.clear()
        t2 = scrape(logged_in, loader_factory, top_only=True).tags[0]
        assert t2.resumed and t2.finished and t2.added == 1
        assert ig.keys("sections_top") == ["1", "2"]
    assert {im.owner for im in rows(logged_in)} == {"hana", "ivo", "jo", "kim"}


def test_a_404_on_page_two_is_not_no_such_hashtag(logged_in, fake, loader_factory):
    fake.fault("feed", lambda: fake_page(fake, 0), *[(404, "<html>not found</html>")] * 3)
    t = scrape(logged_in, loader_factory).tags[0]
    assert "no such hashtag" not in " ".join(t.notes) and t.stopped is None
    assert "refused a later page after 4 posts" in t.notes[0] and "kept" in t.notes[0]
    # It went on with the sections endpoint; the posts it already had cost no download.
    assert t.feed == "sections" and t.finished and len(rows(logged_in)) == 8
    assert len(fake.keys("cdn")) == 8


def _scrape_two_tags(ws, make):
    """TAG, then "othertag": what a stop on the first does to the second."""
    return scrape_tags(
        ws, [TAG, "othertag"], session=USER, loader=make(), progress=False, sleep=lambda s: None
    )


def test_a_rate_limited_account_stops_with_what_was_kept_and_when_to_retry(logged_in, fake, loader_factory):
    fake.fault("feed", lambda: fake_page(fake, 0), PLEASE_WAIT)
    fake.fault(
        "current_user", PLEASE_WAIT
    )  # the probe is refused the same way: the account, not the endpoint
    summary = _scrape_two_tags(logged_in, loader_factory)
    t = summary.tags[0]
    assert t.stop_kind == "wait" and t.added == 4 and summary.skipped_tags == ["othertag"]
    assert "rate limited" in t.stopped and "Kept: 4 new images" in t.stopped and "Retry after" in t.stopped
    assert "position in the recent feed is saved" in t.stopped
    assert fake.count("sections_recent") == 0  # no fallback hammering a blocked account


def test_a_logged_out_session_and_a_checkpoint_on_the_probe(logged_in, fake, loader_factory):
    revoke_query_hash(fake)
    fake.fault("current_user", (200, {"user": None, "status": "ok"}))
    t = scrape(logged_in, loader_factory).tags[0]
    assert (
        t.stop_kind == "logged_out"
        and f"ghosts login {USER}" in t.stopped
        and fake.count("sections_recent") == 0
    )

    fake.calls.clear()
    revoke_query_hash(fake)
    fake.fault(
        "current_user",
        *[(400, {"message": "checkpoint_required", "checkpoint_url": "/challenge/A/", "status": "fail"})] * 3,
    )
    t = scrape(logged_in, loader_factory).tags[0]
    assert t.stop_kind == "checkpoint" and "--cookies firefox" in t.stopped


def test_network_down_is_its_own_diagnosis(logged_in, fake, loader_factory):
    fake.fault("feed", *[requests.ConnectionError("Failed to establish a new connection")] * 3)
    network_down_for_probe(fake)
    t = scrape(logged_in, loader_factory).tags[0]
    assert t.stop_kind == "network" and "could not reach Instagram at all" in t.stopped


def test_every_feed_gone_points_to_another_scraper(logged_in, fake, loader_factory):
    revoke_query_hash(fake)
    fake.gone.update({"sections_recent", "sections_top"})
    # web_info without its top section (twice: instaloader asks again for a key it lacks).
    bare = (200, {"data": {"id": "17843853986012965", "name": TAG, "media_count": 7}, "status": "ok"})
    fake.fault("web_info", bare, bare)
    summary = _scrape_two_tags(logged_in, loader_factory)
    t = summary.tags[0]
    assert t.stop_kind == "gone" and "import-scraped" in t.stopped and summary.skipped_tags == ["othertag"]
    assert len(t.notes) == 3 and summary.nothing_fetched_because_refused
    assert fake.keys("sections_top") == ["0"] * 3  # top posts asked of the sections endpoint (404, retried)


def test_a_dead_tag_page_is_not_a_rate_limit_and_the_feeds_go_on_without_it(logged_in, fake, loader_factory):
    fake.fault("web_info", *[PLEASE_WAIT] * 2)  # web_info revoked; the probe (current_user) answers
    t = scrape(logged_in, loader_factory).tags[0]
    assert t.stopped is None and t.feed == "recent" and t.finished and t.added == 8
    assert "tag's page (tags/web_info) refused" in t.notes[0] and "not a rate limit" in t.notes[0]


def test_no_such_hashtag_is_only_said_of_the_tag_page(logged_in, fake, loader_factory):
    fake.fault("web_info", *[(404, {"message": "Page not found", "status": "fail"})] * 3)
    t = scrape(logged_in, loader_factory).tags[0]
    assert t.stop_kind == "not_found" and "no such hashtag" in t.stopped and fake.count("current_user") == 0


def test_login_check_lists_which_endpoints_answer(logged_in, fake, loader_factory):
    revoke_query_hash(fake)
    fake.fault("whoami", PLEASE_WAIT)  # instaloader's test_login query_hash: refused like the feed's
    L = loader_factory()
    load_session(logged_in, L, USER)
    checks = {c.name: c for c in check_endpoints(L, TAG)}
    assert checks["accounts/current_user (i.instagram.com)"].ok
    assert checks["accounts/current_user (i.instagram.com)"].detail == f"logged in as {USER}"
    assert not checks["test_login query_hash (graphql)"].ok
    assert checks[f"tags/web_info #{TAG}"].ok
    assert not checks["recent-posts feed (GraphQL query_hash)"].ok
    assert checks["hashtag sections endpoint (tab=recent)"].ok
    assert checks["hashtag sections endpoint (tab=recent)"].detail == "first post C0aaaaaaaa1"
    assert json.dumps([c.__dict__ for c in checks.values()])  # plain data, printable as JSON


def test_login_check_cli(logged_in, fake, monkeypatch):
    import instaloader

    from tests.curation.test_instagram import cli

    monkeypatch.setattr(instaloader.InstaloaderContext, "do_sleep", lambda self: None)
    revoke_query_hash(fake)
    r = cli(["login", USER, "--check", "--data", str(logged_in.root)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert f"answers  accounts/current_user (i.instagram.com): logged in as {USER}" in lines
    assert any(line.startswith("refused  recent-posts feed") and "wait" in line for line in lines)
    assert any(line.startswith("answers  hashtag sections endpoint") for line in lines)

    fake.fault("current_user", (302, "", {"Location": "https://www.instagram.com/accounts/login/"}))
    r = cli(["login", USER, "--check", "--data", str(logged_in.root)])
    assert r.exit_code == 1 and f"the saved session of {USER} is not logged in" in r.stderr
    assert "refused  accounts/current_user" in r.stdout
