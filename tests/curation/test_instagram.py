"""The Instagram hashtag source, run through instaloader's real HTTP code against a fake Instagram.

`responses` intercepts requests on the real endpoints (i.instagram.com/api/v1/tags/web_info/, the
www.instagram.com/graphql/query hashtag feed and post metadata queries, CDN image URLs) and answers with
JSON shaped like Instagram's. Faults are scripted per endpoint: 429, 401 "Please wait", login redirects,
checkpoints, truncated bodies, connection drops.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import signal
import stat
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import instaloader
import numpy as np
import pytest
import requests
import responses
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select

from curation.catalog.schema import Image, Takedown
from curation.sources.instagram.scraper import (
    TagScraper,
    TagState,
    classify,
    make_loader,
    rate_controller,
    scrape_each_tag,
    scrape_tags,
    unique_tags,
)
from curation.sources.instagram.session import load_session, save_session

REPO = Path(__file__).resolve().parents[2]
TAG = "ghostfaces"
USER = "ghostuser"
HASHTAG_QUERY = "9b498c08113f1e09617a1703c22b2f32"  # instaloader 4.x's hashtag feed query_hash
WHOAMI_QUERY = "d6f4427fbe92d846298cf93df0b937d3"
MEDIA_DOC_ID = "27128499623469141"  # instaloader 4.16's post metadata doc_id
CDN = "https://scontent-ams2-1.cdninstagram.com/v/t51.2885-15/"
GRAPHQL = "https://www.instagram.com/graphql/query"
WEB_INFO = "https://i.instagram.com/api/v1/tags/web_info/"
CURRENT_USER = "https://i.instagram.com/api/v1/accounts/current_user/"
SECTIONS = f"https://www.instagram.com/api/v1/tags/{TAG}/sections/"


def jpeg(seed: int, size: int = 72) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * (seed % 7 + 1), yy * (seed % 5 + 2), (xx ^ yy) * (seed % 3 + 1)], -1) % 256
    img = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, "JPEG", quality=92)
    return buf.getvalue()


@dataclass
class FakePost:
    shortcode: str
    items: list[str]  # "image" or "video" per item; more than one item makes a sidecar
    owner: str = "someone"
    owner_id: str = "5150"
    caption: str = "a portrait #ghostfaces #Film"
    likes: int = 12
    taken_at: int = 1_700_000_000

    @property
    def pk(self) -> str:
        return str(instaloader.Post.shortcode_to_mediaid(self.shortcode))

    @property
    def sidecar(self) -> bool:
        return len(self.items) > 1

    @property
    def is_video(self) -> bool:
        return not self.sidecar and self.items[0] == "video"

    def url(self, i: int) -> str:
        ext = "mp4" if self.items[i] == "video" else "jpg"
        # Signed CDN URLs, like Instagram's: the digits and parameters are part of the test (see _statuses).
        return f"{CDN}{self.shortcode}_{i}_n.{ext}?stp=dst-jpg_e35&_nc_ht=scontent&oh=00_AfA401x&oe=6650A429"

    def feed_node(self) -> dict:
        """A post as the hashtag feed lists it (the owner comes as an id only, like Instagram's)."""
        return {
            "__typename": "GraphSidecar"
            if self.sidecar
            else ("GraphVideo" if self.is_video else "GraphImage"),
            "id": self.pk,
            "shortcode": self.shortcode,
            "display_url": self.url(0),
            "is_video": self.is_video,
            "taken_at_timestamp": self.taken_at,
            "dimensions": {"height": 1080, "width": 1080},
            "edge_media_to_caption": {"edges": [{"node": {"text": self.caption}}]},
            "edge_media_to_comment": {"count": 3},
            "edge_liked_by": {"count": self.likes},
            "edge_media_preview_like": {"count": self.likes},
            "owner": {"id": self.owner_id},
            "thumbnail_src": self.url(0),
            "comments_disabled": False,
            "accessibility_caption": "Photo by someone.",
        }

    def media(self) -> dict:
        """The same post as Instagram's media web_info / mobile API returns it."""

        def version(i):
            d = {
                "image_versions2": {"candidates": [{"url": self.url(i), "width": 1080, "height": 1080}]},
                "media_type": 2 if self.items[i] == "video" else 1,
            }
            if self.items[i] == "video":
                d["video_versions"] = [{"url": self.url(i).replace("_n.mp4", "_v.mp4"), "type": 101}]
            return d

        m = {
            **version(0),  # the cover image; media_type below is the post's own
            "code": self.shortcode,
            "pk": self.pk,
            "id": f"{self.pk}_{self.owner_id}",
            "media_type": 8 if self.sidecar else (2 if self.is_video else 1),
            "taken_at": self.taken_at,
            "like_count": self.likes,
            "comment_count": 3,
            "has_liked": False,
            "caption": {"text": self.caption, "pk": "1790"},
            "user": {
                "pk": self.owner_id,
                "username": self.owner,
                "full_name": self.owner.title(),
                "is_private": False,
                "profile_pic_url": CDN + "pp.jpg",
            },
        }
        if self.sidecar:
            m["carousel_media"] = [version(i) for i in range(len(self.items))]
        if self.is_video:
            m["video_duration"], m["view_count"] = 7.5, 100
        return m


@dataclass
class FakeInstagram:
    pages: list[list[FakePost]]
    top: list[FakePost] = field(default_factory=list)
    top_pages: list[list[FakePost]] = field(default_factory=list)  # further top pages (sections tab=top)
    username: str = USER
    faults: dict[str, list] = field(default_factory=dict)  # endpoint -> answers to give before the real one
    feed_answer: dict | None = None  # replaces the feed page body (e.g. the hashtag gone from the answer)
    calls: list[tuple[str, str]] = field(default_factory=list)  # (endpoint, key)
    bodies: dict[str, bytes] = field(default_factory=dict)  # URL path -> image bytes
    gone: set[str] = field(
        default_factory=set
    )  # endpoints that answer 404 to everything (removed by Instagram)

    def __post_init__(self):
        self.posts = {}
        for p in [p for page in self.pages + self.top_pages for p in page] + self.top:
            self._register(p)

    def _register(self, post: FakePost) -> None:
        self.posts[post.shortcode] = post
        for i in range(len(post.items)):
            self.bodies[urlsplit(post.url(i)).path] = jpeg(len(self.bodies) + 1)

    def publish(self, post: FakePost) -> None:
        """A new post on the tag: it appears first in the recent feed."""
        self.pages[0].insert(0, post)
        self._register(post)

    def fault(self, endpoint: str, *answers) -> None:
        self.faults.setdefault(endpoint, []).extend(answers)

    def _answer(self, endpoint: str, key: str, normal):
        self.calls.append((endpoint, key))
        if endpoint in self.gone:
            return (
                404,
                {"Content-Type": "text/html"},
                "<html><body>Sorry, this page isn't available.</body></html>",
            )
        queue = self.faults.get(endpoint)
        if queue:
            a = queue.pop(0)
            if isinstance(a, BaseException):
                raise a
            if callable(a):
                return a()
            status, body, *rest = a
            headers = rest[0] if rest else {}
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = {"Content-Type": "application/json", **headers}
            return status, headers, body
        return normal()

    def count(self, endpoint: str) -> int:
        return sum(1 for e, _ in self.calls if e == endpoint)

    def keys(self, endpoint: str) -> list[str]:
        return [k for e, k in self.calls if e == endpoint]

    # -- endpoints

    def web_info(self, request):
        def normal():
            section = {
                "layout_type": "media_grid",
                "feed_type": "media",
                "layout_content": {"medias": [{"media": p.media()} for p in self.top]},
            }
            data = {
                "id": "17843853986012965",
                "name": TAG,
                "media_count": sum(map(len, self.pages)),
                "profile_pic_url": CDN + "tag.jpg",
                "allow_following": 1,
                "following": 0,
                "top": {
                    "sections": [section] if self.top else [],
                    "more_available": bool(self.top_pages),
                    "next_max_id": "top1" if self.top_pages else None,
                    "next_page": 1 if self.top_pages else None,
                    "next_media_ids": [p.pk for p in self.top[-2:]] if self.top_pages else [],
                },
                "recent": self.section_page(
                    self.pages[0] if self.pages else [],
                    len(self.pages) > 1,
                    "recent1" if len(self.pages) > 1 else None,
                    1 if len(self.pages) > 1 else None,
                ),
            }
            return 200, {"Content-Type": "application/json"}, json.dumps({"data": data, "status": "ok"})

        return self._answer("web_info", parse_qs(urlsplit(request.url).query)["tag_name"][0], normal)

    def current_user(self, request):
        return self._answer(
            "current_user",
            "",
            lambda: (
                200,
                {"Content-Type": "application/json"},
                json.dumps(
                    {"user": {"pk": "4242", "username": self.username, "full_name": "Ghost"}, "status": "ok"}
                ),
            ),
        )

    @staticmethod
    def section_page(posts, more: bool, cursor: str | None, page: int | None = None) -> dict:
        """One page of the sections endpoint: rows of three medias, like the grid Instagram sends."""
        rows = [posts[i : i + 3] for i in range(0, len(posts), 3)]
        return {
            "sections": [
                {
                    "layout_type": "media_grid",
                    "feed_type": "media",
                    "layout_content": {"medias": [{"media": p.media()} for p in row]},
                }
                for row in rows
            ],
            "more_available": more,
            "next_max_id": cursor,
            "next_page": page,
            "next_media_ids": [p.pk for p in posts[-2:]] if more else [],
            "status": "ok",
        }

    def _tab_pages(self, tab: str) -> list[list[FakePost]]:
        return self.pages if tab == "recent" else [self.top] + self.top_pages

    def sections_normal(self, page: int, tab: str = "recent"):
        """The sections endpoint's answer for one page of a tab."""
        pages = self._tab_pages(tab)
        more = page + 1 < len(pages)
        body = self.section_page(
            pages[page], more, f"{tab}{page + 1}" if more else None, page + 1 if more else None
        )
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def sections(self, request):
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        tab = form["tab"][0]
        page = int(form.get("page", ["0"])[0]) if "max_id" in form else 0
        if "max_id" in form:
            # The next page is asked with what the last one gave: its cursor, page number and media ids.
            assert form["max_id"][0] == f"{tab}{page}"
            assert json.loads(form["next_media_ids"][0]) == [
                p.pk for p in self._tab_pages(tab)[page - 1][-2:]
            ]
        return self._answer("sections_" + tab, str(page), lambda: self.sections_normal(page, tab))

    def graphql_get(self, request):
        q = parse_qs(urlsplit(request.url).query)
        variables = json.loads(q["variables"][0])
        if q["query_hash"][0] == WHOAMI_QUERY:
            return self._answer(
                "whoami",
                "",
                lambda: (
                    200,
                    {},
                    json.dumps({"data": {"user": {"username": self.username, "id": "4242"}}, "status": "ok"}),
                ),
            )
        assert q["query_hash"][0] == HASHTAG_QUERY and variables["tag_name"] == TAG
        page = int(variables.get("after", "cursor0")[len("cursor") :])

        def normal():
            posts = self.pages[page]
            more = page + 1 < len(self.pages)
            conn = {
                "count": sum(map(len, self.pages)),
                "page_info": {"has_next_page": more, "end_cursor": f"cursor{page + 1}" if more else None},
                "edges": [{"node": p.feed_node()} for p in posts],
            }
            body = self.feed_answer or {
                "data": {"hashtag": {"name": TAG, "edge_hashtag_to_media": conn}},
                "status": "ok",
            }
            return 200, {"Content-Type": "application/json"}, json.dumps(body)

        return self._answer("feed", str(page), normal)

    def graphql_post(self, request):
        form = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
        assert form["doc_id"][0] == MEDIA_DOC_ID
        shortcode = json.loads(form["variables"][0])["shortcode"]

        def normal():
            body = {
                "data": {
                    "xdt_api__v1__media__shortcode__web_info": {"items": [self.posts[shortcode].media()]}
                },
                "extensions": {"is_final": True},
                "status": "ok",
            }
            return 200, {"Content-Type": "application/json"}, json.dumps(body)

        return self._answer("media", shortcode, normal)

    def cdn(self, request):
        path = urlsplit(request.url).path
        assert not path.endswith(".mp4"), "a video was downloaded"
        return self._answer(
            "cdn", path.rsplit("/", 1)[-1], lambda: (200, {"Content-Type": "image/jpeg"}, self.bodies[path])
        )

    def install(self, rsps: responses.RequestsMock) -> None:
        rsps.add_callback(responses.GET, WEB_INFO, callback=self.web_info)
        rsps.add_callback(responses.GET, GRAPHQL, callback=self.graphql_get)
        rsps.add_callback(responses.POST, GRAPHQL, callback=self.graphql_post)
        rsps.add_callback(responses.GET, CURRENT_USER, callback=self.current_user)
        rsps.add_callback(responses.POST, SECTIONS, callback=self.sections)
        rsps.add_callback(
            responses.GET,
            "https://www.instagram.com/",
            callback=lambda r: (
                200,
                {"Set-Cookie": "csrftoken=freshtoken; Domain=.instagram.com; Path=/"},
                "<html></html>",
            ),
        )
        import re

        rsps.add_callback(responses.GET, re.compile(re.escape(CDN) + r".*"), callback=self.cdn)


def network_down_for_probe(fake: FakeInstagram) -> None:
    """The probe after a refusal finds no network either (instaloader tries each request three times)."""
    fake.fault("current_user", *[requests.ConnectionError("Failed to establish a new connection")] * 3)


def standard_pages() -> list[list[FakePost]]:
    return [
        [
            FakePost("C0aaaaaaaa1", ["image"], owner="anna", caption="first light #ghostfaces #Portrait"),
            FakePost("C0bbbbbbbb2", ["image", "video", "image"], owner="ben", likes=40),
            FakePost("C0cccccccc3", ["video"], owner="cleo"),
            FakePost("C0dddddddd4", ["image"], owner="dan"),
        ],
        [
            FakePost("C0eeeeeeee5", ["image"], owner="eve"),
            FakePost("C0ffffffff6", ["image", "image"], owner="fred"),
            FakePost("C0gggggggg7", ["image"], owner="gus", taken_at=1_712_345_678),
        ],
    ]


@pytest.fixture
def fake():
    ig = FakeInstagram(standard_pages())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ig.install(rsps)
        yield ig


@pytest.fixture
def waits():
    return []


@pytest.fixture
def loader_factory(waits):
    def make(**kw):
        return make_loader(sleep=waits.append, pause_between_requests=False, **kw)

    return make


@pytest.fixture
def logged_in(workspace, loader_factory):
    """A saved session, as `ghosts login` leaves it."""
    L = loader_factory()
    L.load_session(
        USER, {"sessionid": "4242%3Asecret", "csrftoken": "tok", "ds_user_id": "4242", "mid": "m1"}
    )
    save_session(workspace, L, "test")
    return workspace


def cli(args):
    from flows.cli import main  # imported here: the kill -9 test's child process imports this module

    return CliRunner().invoke(main, args)


def scrape(ws, make, **kw):
    kw.setdefault("session", USER)
    return scrape_tags(ws, [TAG], loader=make(), progress=False, sleep=lambda s: None, **kw)


def rows(ws):
    with ws.session() as s:
        return s.execute(select(Image).order_by(Image.id)).scalars().all()


# -------------------------------------------------------------------------------------------------- tests


def test_two_page_feed_stores_images_only_with_provenance(logged_in, fake, loader_factory):
    ws = logged_in
    summary = scrape(ws, loader_factory)
    (t,) = summary.tags
    assert (t.feed, t.finished, t.resumed, t.stopped) == ("recent", True, False, None)
    # 1 + 2 (sidecar without its video) + 1 + 1 + 2 + 1 images; the video post and the video item skipped.
    assert t.added == 8 and t.videos_skipped == 2 and t.rejected == [] and t.failed == []
    assert fake.count("feed") == 2 and fake.count("web_info") == 1
    # Metadata is fetched once per post with images; the video post costs no request at all.
    assert sorted(fake.keys("media")) == [
        "C0aaaaaaaa1",
        "C0bbbbbbbb2",
        "C0dddddddd4",
        "C0eeeeeeee5",
        "C0ffffffff6",
        "C0gggggggg7",
    ]
    cdn = fake.keys("cdn")
    assert len(cdn) == 8 and len(set(cdn)) == 8

    images = rows(ws)
    assert len(images) == 8 and all(im.status == "new" and im.source_kind == "instagram" for im in images)
    assert all(ws.abspath(im.path).is_file() for im in images)
    by_key = {(im.shortcode, im.provenance["sidecar_index"]): im for im in images}
    assert set(by_key) == {
        ("C0aaaaaaaa1", None),
        ("C0bbbbbbbb2", 0),
        ("C0bbbbbbbb2", 2),
        ("C0dddddddd4", None),
        ("C0eeeeeeee5", None),
        ("C0ffffffff6", 0),
        ("C0ffffffff6", 1),
        ("C0gggggggg7", None),
    }
    im = by_key[("C0bbbbbbbb2", 2)]
    assert (im.query, im.owner, im.likes, im.post_url) == (
        TAG,
        "ben",
        40,
        "https://www.instagram.com/p/C0bbbbbbbb2/",
    )
    assert im.source_ref == im.post_url
    assert im.taken_at.replace(tzinfo=dt.UTC) == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    p = im.provenance
    assert p["source"] == "instagram" and p["query"] == TAG and p["shortcode"] == "C0bbbbbbbb2"
    assert p["media_id"] == str(instaloader.Post.shortcode_to_mediaid("C0bbbbbbbb2"))
    assert (p["owner_username"], p["owner_id"], p["likes"]) == ("ben", "5150", 40)
    assert p["caption"] == "a portrait #ghostfaces #Film" and p["caption_hashtags"] == ["ghostfaces", "film"]
    assert (
        p["taken_at"] == "2023-11-14T22:13:20+00:00" and p["instaloader_version"] == instaloader.__version__
    )
    assert p["sidecar_index"] == 2 and dt.datetime.fromisoformat(p["scraped_at"]).tzinfo is not None
    assert by_key[("C0aaaaaaaa1", None)].provenance["caption_hashtags"] == ["ghostfaces", "portrait"]

    state = json.loads((ws.scrape_dir / f"{TAG}.json").read_text())
    assert state["frozen"] is None and state["finished_at"] and state["incomplete"] == {}

    # Incremental: a second run fetches no post and no image again.
    fake.calls.clear()
    again = scrape(ws, loader_factory).tags[0]
    assert (again.added, again.posts_known, again.videos_skipped) == (0, 6, 1)
    assert fake.count("media") == 0 and fake.count("cdn") == 0 and len(rows(ws)) == 8


def test_429_backs_off_with_a_reported_wait_then_succeeds(logged_in, fake, loader_factory, waits, caplog):
    fake.fault(
        "feed", (429, {"message": "Please wait a few minutes before you try again.", "status": "fail"})
    )
    with caplog.at_level(logging.INFO, logger="ghosts.instagram"):
        summary = scrape(logged_in, loader_factory)
    assert summary.tags[0].added == 8 and summary.tags[0].stopped is None
    assert fake.keys("feed") == ["0", "0", "1"]  # the refused page was asked again
    assert waits and max(waits) > 600  # instaloader's backoff after a 429 is the rest of its 11-minute window
    assert summary.waited_s >= max(waits)
    assert any(f"waiting {round(max(waits))} s for Instagram" in r.getMessage() for r in caplog.records)


def test_max_requests_per_hour_makes_the_scraper_wait(logged_in, fake, loader_factory, waits):
    summary = scrape(logged_in, loader_factory, max_requests_per_hour=2)
    assert summary.tags[0].added == 8
    # 9 API requests (tag page, 2 feed pages, 6 posts; CDN downloads are not Instagram's API): the first 2
    # fit the budget, each of the other 7 waits for the hour window to move (instantly here).
    long = [w for w in waits if w > 1]
    assert len(long) == 7 and all(3500 < w <= 3600 for w in long)


def test_401_please_wait_stops_every_tag_and_exits_nonzero(logged_in, fake, monkeypatch):
    monkeypatch.setattr(instaloader.InstaloaderContext, "do_sleep", lambda self: None)
    fake.fault(
        "web_info",
        (
            401,
            {
                "message": "Please wait a few minutes before you try again.",
                "require_login": True,
                "status": "fail",
            },
        ),
    )
    fake.fault(
        "current_user",
        (401, {"message": "Please wait a few minutes before you try again.", "status": "fail"}),
    )  # the probe too: the account, not the endpoint
    r = cli(["scrape", "--tag", TAG, "--tag", "othertag", "--json", "--data", str(logged_in.root)])
    assert r.exit_code == 1
    assert "nothing could be fetched" in r.stderr and "rate limited" in r.stderr and "Retry after" in r.stderr
    out, _ = json.JSONDecoder().raw_decode(r.stdout)  # the summary (an error document may follow it)
    assert out["added"] == 0 and out["skipped_tags"] == ["othertag"] and out["tags"][0]["stop_kind"] == "wait"
    assert fake.count("web_info") == 1  # 401 is fatal: no retries that would lengthen the block
    assert rows(logged_in) == []


def test_login_redirect_without_a_session_says_how_to_log_in(workspace, fake, monkeypatch):
    monkeypatch.setattr(instaloader.InstaloaderContext, "do_sleep", lambda self: None)
    fake.fault(
        "web_info", (302, "", {"Location": "https://www.instagram.com/accounts/login/?next=/explore/"})
    )
    r = cli(["scrape", "--tag", TAG, "--data", str(workspace.root)])
    assert r.exit_code == 1
    assert "requires a logged-in session" in r.stderr
    assert "ghosts login USER" in r.stderr and "--cookies firefox" in r.stderr


def test_login_redirect_of_a_saved_session_mid_feed_keeps_what_was_fetched(logged_in, fake, loader_factory):
    login = (302, "", {"Location": "https://www.instagram.com/accounts/login/?next=%2Fgraphql%2Fquery"})
    fake.fault("feed", lambda: fake_page(fake, 0), login)
    fake.fault("current_user", login)  # the probe: the session is logged out everywhere
    t = scrape(logged_in, loader_factory).tags[0]
    assert t.added == 4 and t.stop_kind == "logged_out"
    assert f"ghosts login {USER}" in t.stopped and len(rows(logged_in)) == 4


def fake_page(ig: FakeInstagram, page: int):
    posts = ig.pages[page]
    conn = {
        "count": 7,
        "page_info": {"has_next_page": True, "end_cursor": f"cursor{page + 1}"},
        "edges": [{"node": p.feed_node()} for p in posts],
    }
    return (
        200,
        {"Content-Type": "application/json"},
        json.dumps({"data": {"hashtag": {"name": TAG, "edge_hashtag_to_media": conn}}, "status": "ok"}),
    )


def test_checkpoint_on_the_feed_stops_with_the_cookie_advice(logged_in, fake, loader_factory):
    fake.fault(
        "feed",
        (
            400,
            {
                "message": "checkpoint_required",
                "checkpoint_url": "/challenge/AXF/",
                "lock": False,
                "status": "fail",
            },
        ),
    )
    summary = scrape(logged_in, loader_factory)
    t = summary.tags[0]
    assert t.stop_kind == "checkpoint" and f"ghosts login {USER} --cookies firefox" in t.stopped
    assert summary.nothing_fetched_because_refused and fake.count("feed") == 1


def test_truncated_image_bodies(logged_in, fake, loader_factory):
    """A body cut short in transit is retried and, failing that, left for the next run; a server that
    sends a broken JPEG gets it refused by ingest with a reason."""
    cut = fake.posts["C0aaaaaaaa1"]
    whole = fake.bodies[urlsplit(cut.url(0)).path]
    short = (200, whole[: len(whole) // 3], {"Content-Type": "image/jpeg", "Content-Length": str(len(whole))})
    fake.fault("cdn", short, short, short)  # every attempt for the first image is cut
    broken = urlsplit(fake.posts["C0dddddddd4"].url(0)).path
    fake.bodies[broken] = jpeg(99)[:900]  # a JPEG truncated at the source: consistent length, broken data

    t = scrape(logged_in, loader_factory).tags[0]
    assert t.added == 6 and t.incomplete == 1
    assert (
        len(t.failed) == 1 and "C0aaaaaaaa1" in t.failed[0]["url"] and "3 attempts" in t.failed[0]["reason"]
    )
    assert len(t.rejected) == 1 and "C0dddddddd4" in t.rejected[0]["url"]
    assert "truncated" in t.rejected[0]["reason"]
    refused = [im for im in rows(logged_in) if im.status == "rejected"]
    assert len(refused) == 1 and refused[0].path is None and refused[0].shortcode == "C0dddddddd4"

    # The next run finishes the unfinished post first, and only that.
    fake.calls.clear()
    t2 = scrape(logged_in, loader_factory).tags[0]
    assert t2.added == 1 and t2.incomplete == 0 and t2.failed == []
    assert fake.keys("media") == ["C0aaaaaaaa1"] and fake.keys("cdn") == ["C0aaaaaaaa1_0_n.jpg"]
    shas = [im.sha256 for im in rows(logged_in)]
    assert len(shas) == 8 and len(set(shas)) == 8


def test_resume_after_an_exception_mid_feed_loses_and_duplicates_nothing(logged_in, fake, loader_factory):
    fake.fault(
        "feed",
        lambda: fake_page(fake, 0),
        requests.ConnectionError("connection reset by peer"),
        requests.ConnectionError("connection reset by peer"),
        requests.ConnectionError("reset"),
    )
    network_down_for_probe(fake)
    first = scrape(logged_in, loader_factory).tags[0]
    assert first.added == 4 and first.stop_kind == "network" and not first.finished
    state = TagState.load(logged_in, TAG)
    assert state.frozen is not None and state.frozen["total_index"] == 3  # positioned to give post 4 again
    assert state.frozen["remaining_data"]["page_info"]["end_cursor"] == "cursor1"

    fake.calls.clear()
    second = scrape(logged_in, loader_factory).tags[0]
    assert second.resumed and second.finished and second.added == 4 and second.posts_known == 1
    # The resumed walk asks for page 2 (instaloader's iterator always loads page 1 before it can be thawed),
    # and fetches only posts it had not seen.
    assert fake.keys("feed") == ["0", "1"]
    assert sorted(fake.keys("media")) == ["C0eeeeeeee5", "C0ffffffff6", "C0gggggggg7"]
    shas = [im.sha256 for im in rows(logged_in)]
    assert len(shas) == 8 and len(set(shas)) == 8
    assert TagState.load(logged_in, TAG).frozen is None


KILLED_SCRAPE = """
import os, signal, sys
import responses
from curation.sources.instagram.scraper import make_loader, scrape_tags
from curation.catalog.workspace import open_workspace
from tests.curation.test_instagram import TAG, USER, FakeInstagram, standard_pages

ig = FakeInstagram(standard_pages())
serve = ig.cdn
def cdn(request):
    if ig.count("cdn") == 2:  # the second image of the sidecar C0bbbbbbbb2, after two stored images
        os.kill(os.getpid(), signal.SIGKILL)
    return serve(request)
ig.cdn = cdn
with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
    ig.install(rsps)
    scrape_tags(open_workspace(sys.argv[1]), [TAG], session=USER, progress=False,
                loader=make_loader(sleep=lambda s: None, pause_between_requests=False))
"""


def test_kill_9_inside_a_sidecar_loses_nothing_and_the_next_run_finishes_it(logged_in, fake, loader_factory):
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_SCRAPE, str(logged_in.root)],
        cwd=REPO,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [(im.shortcode, im.provenance["sidecar_index"]) for im in rows(logged_in)] == [
        ("C0aaaaaaaa1", None),
        ("C0bbbbbbbb2", 0),
    ]
    assert all(logged_in.abspath(im.path).is_file() for im in rows(logged_in))
    state = json.loads((logged_in.scrape_dir / f"{TAG}.json").read_text())
    assert state["in_flight"] == "C0bbbbbbbb2"
    assert not [p for p in logged_in.root.rglob(".tmp-*")]  # no partial file anywhere

    t = scrape(logged_in, loader_factory).tags[0]
    assert t.added == 6 and t.finished and t.incomplete == 0
    assert "C0bbbbbbbb2_0_n.jpg" not in fake.keys(
        "cdn"
    )  # the stored half of the sidecar is not fetched again
    per_post = Counter(im.shortcode for im in rows(logged_in))
    assert per_post["C0bbbbbbbb2"] == 2 and sum(per_post.values()) == 8


def test_limit_counts_new_images_and_the_rest_follows_next_run(logged_in, fake, loader_factory):
    t = scrape(logged_in, loader_factory, limit=2).tags[0]
    assert t.added == 2 and not t.finished and t.incomplete == 1  # stopped inside the sidecar C0bbbbbbbb2
    t = scrape(logged_in, loader_factory, limit=3).tags[0]
    assert t.added == 3 and t.resumed
    t = scrape(logged_in, loader_factory).tags[0]
    assert t.added == 3 and t.finished
    assert len({im.sha256 for im in rows(logged_in)}) == len(rows(logged_in)) == 8


def test_a_walk_from_the_newest_stops_once_caught_up(logged_in, fake, loader_factory):
    scrape(logged_in, loader_factory)  # walks the whole feed once
    fake.publish(FakePost("C0newnewnew", ["image"], owner="nora"))
    fake.calls.clear()
    loader = loader_factory()
    load_session(logged_in, loader, USER)
    t = TagScraper(logged_in, loader, TAG, progress=False, caught_up_after=2).run()
    assert t.added == 1 and t.finished and t.posts_known == 2 and "caught up" in t.notes[0]
    assert fake.keys("feed") == ["0"] and fake.keys("media") == ["C0newnewnew"]  # page 2 was not asked for


def test_accounts_that_asked_for_a_takedown_are_not_scraped(logged_in, fake, loader_factory):
    with logged_in.session() as s:
        s.add(Takedown(kind="owner", value="@Ben", reason="asked by mail", image_ids=[]))
    t = scrape(logged_in, loader_factory).tags[0]
    assert t.added == 6 and t.posts_taken_down == 1
    assert "ben" not in {im.owner for im in rows(logged_in)}
    assert not any(k.startswith("C0bbbbbbbb2") for k in fake.keys("cdn"))


def test_top_posts_when_the_recent_feed_is_refused_and_top_only(logged_in, loader_factory):
    top = [
        FakePost("C0hhhhhhhh8", ["image"], owner="hana"),
        FakePost("C0iiiiiiii9", ["image", "image"], owner="ivo"),
    ]
    ig = FakeInstagram(standard_pages(), top=top)
    ig.feed_answer = {"data": {"hashtag": None}, "status": "ok"}  # the feed query no longer answers
    ig.gone.add("sections_recent")  # nor does the sections endpoint's recent tab
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        ig.install(rsps)
        t = scrape(logged_in, loader_factory).tags[0]
        assert t.feed == "top" and t.added == 3 and len(t.notes) == 2
        assert "recent-posts feed" in t.notes[0] and "sections endpoint" in t.notes[1]
        assert all("gone or changed, not a rate limit" in n for n in t.notes)
        # Top posts come with the tag's page, owners included: no metadata request per post.
        assert ig.count("media") == 0 and ig.count("feed") == 1 and ig.count("sections_top") == 0
        owners = {im.owner for im in rows(logged_in)}
        assert owners == {"hana", "ivo"}
        assert {im.provenance["feed"] for im in rows(logged_in)} == {"top"}

        ig.calls.clear()
        t = scrape(logged_in, loader_factory, top_only=True).tags[0]
        assert t.feed == "top" and t.added == 0 and t.posts_known == 2 and ig.count("feed") == 0


def test_resume_position_of_another_account_is_not_used(logged_in, fake, loader_factory):
    fake.fault(
        "feed",
        lambda: fake_page(fake, 0),
        requests.ConnectionError("x"),
        requests.ConnectionError("x"),
        requests.ConnectionError("x"),
    )
    network_down_for_probe(fake)
    scrape(logged_in, loader_factory)
    L = loader_factory()
    L.load_session("otheruser", {"sessionid": "1%3Aother", "csrftoken": "t2", "ds_user_id": "1"})
    save_session(logged_in, L, "test")
    t = scrape(logged_in, loader_factory, session="otheruser").tags[0]
    assert not t.resumed and t.finished and t.added == 4  # walked from the start, known posts skipped


def test_session_file_is_private_and_scrape_names_a_missing_one(logged_in, monkeypatch):
    path = logged_in.sessions_dir / f"{USER}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(logged_in.sessions_dir.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["cookies"]["sessionid"] == "4242%3Asecret"
    r = cli(["scrape", "--tag", TAG, "--session", "nobody", "--data", str(logged_in.root)])
    assert r.exit_code == 1 and "ghosts login nobody" in r.stderr
    r = cli(["scrape", "--tag", "not a tag!", "--data", str(logged_in.root)])
    assert r.exit_code == 1 and "not a hashtag" in r.stderr


def test_scrape_cli_summary(logged_in, fake, monkeypatch):
    monkeypatch.setattr(instaloader.InstaloaderContext, "do_sleep", lambda self: None)
    r = cli(["scrape", "--tag", "#GhostFaces", "--json", "--data", str(logged_in.root)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (
        out["session"] == USER and out["added"] == 8 and out["videos_skipped"] == 2 and out["stopped"] == []
    )
    r = cli(["scrape", "--tag", TAG, "--data", str(logged_in.root)])
    assert r.exit_code == 0 and f"#{TAG} (recent, feed done): added 0" in r.stdout
    assert "already in catalog 6 posts" in r.stdout


@pytest.mark.parametrize(
    "text,kind",
    [
        (
            (
                'Query to https://www.instagram.com/graphql/query responded with "401 Unauthorized": '
                '{"message":"Please wait a few minutes before you try again.","status":"fail"}'
            ),
            "wait",
        ),
        (
            (
                'JSON Query to graphql/query: 403 Forbidden - "fail" status, message "login_required" when accessing '
                "https://www.instagram.com/graphql/query?query_hash=x"
            ),
            "logged_out",
        ),
        (
            'JSON Query to api/v1/tags/web_info/: 400 Bad Request - "fail" status, message "feedback_required"',
            "blocked",
        ),
        (
            "JSON Query to graphql/query: 429 Too Many Requests when accessing https://www.instagram.com/x?oe=6650A429",
            "rate",
        ),
    ],
)
def test_refusals_are_classified_from_instaloaders_messages(text, kind):
    assert classify(instaloader.exceptions.AbortDownloadException(text), USER).kind == kind


def test_cdn_digits_are_not_mistaken_for_statuses():
    err = instaloader.exceptions.ConnectionException(
        "timeout when accessing https://x.cdninstagram.com/a_401_n.jpg?oe=429"
    )
    assert classify(err, USER).kind == "network"
    assert rate_controller(make_loader(pause_between_requests=False)).max_requests_per_hour is None


def test_the_multi_tag_run_stops_after_an_account_wide_refusal_and_names_the_tags_not_tried():
    tried = []

    def scrape_one(tag):
        tried.append(tag)
        return "wait" if tag == "second" else "ok"

    outcomes, skipped = scrape_each_tag(
        ["first", "second", "third", "fourth"], scrape_one, lambda o: o == "wait"
    )
    assert tried == ["first", "second"]
    assert outcomes == ["ok", "wait"]
    assert skipped == ["third", "fourth"]
    assert scrape_each_tag(["a", "b"], scrape_one, lambda o: o == "wait") == (["ok", "ok"], [])
    assert unique_tags(["b", "a", "b", "a"]) == ["b", "a"]
