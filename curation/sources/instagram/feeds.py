"""The ways to list a hashtag's posts, in the order they are tried.

1. `recent`: instaloader's resumable recent-posts feed, a GraphQL `query_hash` query on www.instagram.com.
   Instagram has revoked such legacy ids before; a revoked one answers like a rate limit.
2. `sections`: the hashtag sections endpoint the Instagram web app and the app use today,
   `POST /api/v1/tags/<tag>/sections/` with `tab=recent`. An answer is a page of `sections`, each with
   `layout_content.medias[].media` in the mobile API's media shape, and `more_available`, `next_max_id`,
   `next_page` and `next_media_ids`, which the next page's request sends back as `max_id`, `page` and
   `next_media_ids`. Sections may be empty while `more_available` is still true.
3. `top`: the top posts the tag's `web_info` answer already carries (the first page, no extra request), then
   further pages from the same sections endpoint with `tab=top`. (instaloader pages them through
   `explore/tags/<tag>/?__a=1`, which Instagram answers with 404 today.)

Each feed can be resumed: `freeze()` gives a position (JSON-able) from which `open_feed` gives the post last
returned again, so a run killed while fetching a post starts with that post.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import instaloader
from instaloader import FrozenNodeIterator, Hashtag, NodeIterator, Post

FEEDS = ("recent", "sections", "top")
FEED_LABELS = {
    "web_info": "tag's page (tags/web_info)",  # not a feed: what the feeds start from
    "recent": "recent-posts feed (GraphQL query_hash)",
    "sections": "hashtag sections endpoint (tab=recent)",
    "top": "top posts (web_info, then sections tab=top)",
}
SECTIONS_PATH = "api/v1/tags/{}/sections/"


def section_medias(page: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The media dicts of one sections page, in order (sections without medias, e.g. headers, give none)."""
    out = []
    for section in (page or {}).get("sections") or []:
        for item in ((section or {}).get("layout_content") or {}).get("medias") or []:
            media = (item or {}).get("media")
            if isinstance(media, dict) and media.get("code"):
                out.append(media)
    return out


class SectionsFeed(Iterator[Post]):
    """Posts of one tab (`recent` or `top`) of the hashtag sections endpoint, page after page.

    The first page is fetched when the feed is made (so a refusal shows at once), unless `first_page` is given
    (the `top` section of web_info). `position` is what `freeze()` returned.
    """

    def __init__(
        self,
        ctx: instaloader.InstaloaderContext,
        tag: str,
        tab: str,
        first_page: dict[str, Any] | None = None,
        position: dict[str, Any] | None = None,
    ):
        assert tab in ("recent", "top")
        self.ctx, self.tag, self.tab = ctx, tag, tab
        position = position or {}
        self.cursor = {k: position.get(k) for k in ("max_id", "page", "next_media_ids")}
        self.pages = 0  # pages fetched by this object (0: still on the first page it was given)
        if first_page is not None and not position:
            self._page = first_page
        else:
            self._page = self._query()
        self._medias = section_medias(self._page)
        self._index = int(position.get("skip") or 0)

    def _query(self) -> dict[str, Any]:
        form: dict[str, Any] = {"tab": self.tab, "include_persistent": "0", "surface": "grid"}
        if self.cursor.get("max_id"):
            form["max_id"] = self.cursor["max_id"]
            if self.cursor.get("page") is not None:
                form["page"] = str(self.cursor["page"])
            if self.cursor.get("next_media_ids") is not None:  # sent back as given, even when empty
                form["next_media_ids"] = json.dumps(self.cursor["next_media_ids"])
        page = self.ctx.get_json(SECTIONS_PATH.format(self.tag), form, use_post=True)
        self.pages += 1
        return page

    def __iter__(self):
        return self

    def __next__(self) -> Post:
        while self._index >= len(self._medias):
            next_max_id = self._page.get("next_max_id")
            if (
                not self._page.get("more_available")
                or not next_max_id
                or next_max_id == self.cursor.get("max_id")
            ):
                raise StopIteration
            self.cursor = {
                "max_id": next_max_id,
                "page": self._page.get("next_page"),
                "next_media_ids": self._page.get("next_media_ids"),
            }
            self._page = self._query()
            self._medias, self._index = section_medias(self._page), 0
        media = self._medias[self._index]
        self._index += 1
        return Post.from_iphone_struct(self.ctx, media)

    def freeze(self) -> dict[str, Any]:
        """A position from which the post last returned is given again."""
        return {"tab": self.tab, **self.cursor, "skip": max(self._index - 1, 0)}


def open_feed(hashtag: Hashtag, feed: str, position: dict[str, Any] | None = None):
    """The iterator of one feed, its first page fetched (a refusal raises here). For `recent`, `position` is a
    frozen NodeIterator (thawed by the caller, which checks its age); for the others, a `freeze()` result."""
    ctx = hashtag._context  # instaloader keeps the context private; Hashtag has no accessor
    if feed == "recent":
        return hashtag.get_posts_resumable()
    if feed == "sections":
        return SectionsFeed(ctx, hashtag.name, "recent", position=position)
    if feed == "top":
        # The first page comes with the tag's page; without it (web_info refused), from the sections endpoint.
        first = hashtag._node.get("top") if not position and hashtag._has_full_metadata else None
        return SectionsFeed(ctx, hashtag.name, "top", first_page=first, position=position)
    raise ValueError(f"unknown feed {feed!r}")


def freeze(iterator) -> dict[str, Any]:
    if isinstance(iterator, NodeIterator):
        return iterator.freeze()._asdict()
    return iterator.freeze()


def thaw_recent(iterator: NodeIterator, frozen: dict[str, Any]) -> FrozenNodeIterator:
    fni = FrozenNodeIterator(**frozen)
    iterator.thaw(fni)
    return fni
