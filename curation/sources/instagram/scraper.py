"""Instagram hashtag source: walk a tag's posts with instaloader and ingest the images of every post.

For each tag: `Hashtag.from_name`, then the feeds of `feeds.py` in order (the recent feed, the hashtag
sections endpoint, the top posts). When the first page of a feed is refused, `diagnosis.diagnose` probes
another endpoint with the same session: an endpoint that is gone or changed falls through to the next feed;
a rate limit, a logged-out session, a checkpoint or a dead network stops the run with its own message. A
refusal on a later page falls through to the next feed as well (what was read is kept). Every image of a post
(single images and the image items of sidecars; videos are skipped and counted) goes through the one ingest
path, with its provenance. Each tag records the feed it used (`TagOutcome.feed`, `scrape/<tag>.json`).

Resuming and never duplicating:
- Before each post is fetched, the tag's state file `scrape/<tag>.json` is rewritten atomically with the
  feed, its frozen position (positioned to give this post again) and the post's shortcode as "in flight". A
  run that is killed at any point resumes at that post, on that feed; the post in flight is re-fetched, and
  its images already in the catalog are not downloaded again.
- Posts whose shortcode is already in the catalog are skipped without any request.
- A post that could not be finished (a failed download, the --limit reached in the middle of a sidecar, a
  kill) is listed as incomplete in the state and finished first on the next run.

Account-wide refusals stop the tag with a message saying what was kept and when to retry; the remaining tags
are not tried either (pushing on makes a block longer).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

import instaloader
import requests
import urllib3
from instaloader import Hashtag, NodeIterator, Post
from instaloader.exceptions import (
    BadResponseException,
    ConnectionException,
    InvalidArgumentException,
    PostChangedException,
    QueryReturnedForbiddenException,
    QueryReturnedNotFoundException,
)
from sqlalchemy import select
from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Image, Takedown, utcnow
from curation.sources.http import FetchRefused, deadline_watch, read_limited
from curation.sources.ingest import Ingestor, IngestResult
from curation.sources.instagram.diagnosis import diagnose, is_network_failure, network_refusal
from curation.sources.instagram.feeds import FEED_LABELS, FEEDS, freeze, open_feed, thaw_recent
from curation.sources.instagram.loader import make_loader, rate_controller
from curation.sources.instagram.rate import ReportingRateController
from curation.sources.instagram.refusals import ACCOUNT_WIDE, REFUSALS, Refusal, classify
from curation.sources.instagram.session import choose_session, load_session
from curation.sources.instagram.state import TagState, check_tag

log = logging.getLogger("ghosts.instagram")
T = TypeVar("T")

POST_URL = "https://www.instagram.com/p/{}/"
NO_SHORTCODE = "(a post without a shortcode)"  # what a failed entry names for a feed entry that has none


# ---------------------------------------------------------------------------------------------- summaries


@dataclass
class TagOutcome:
    tag: str
    feed: str | None = None  # the feed used: recent | sections | top (feeds.py)
    resumed: bool = False
    finished: bool = False  # the feed was walked to its end
    added: int = 0
    duplicates: int = 0
    near_duplicates: int = 0
    posts_seen: int = 0
    posts_known: int = 0  # already in the catalog: not fetched again
    posts_taken_down: int = 0  # by an account that asked to be taken down (`ghosts takedown --owner`)
    videos_skipped: int = 0
    rejected: list[dict[str, str]] = field(default_factory=list)  # refused by ingest, with reasons
    failed: list[dict[str, str]] = field(default_factory=list)  # downloads that failed; retried next run
    incomplete: int = 0  # posts left to finish on the next run
    stopped: str | None = None  # why the tag stopped early (a message for the user)
    stop_kind: str | None = None
    notes: list[str] = field(default_factory=list)  # e.g. why the top posts were used instead
    image_ids: list[int] = field(default_factory=list)

    @property
    def fetched(self) -> int:
        return self.added + self.duplicates + len(self.rejected)

    def count(self, result: IngestResult, label: str) -> None:
        if result.status == "added":
            self.added += 1
            self.near_duplicates += bool(result.near_duplicates)
            self.image_ids.append(result.image_id)
        elif result.status == "duplicate":
            self.duplicates += 1
        else:
            self.rejected.append({"url": label, "reason": result.reason or "rejected"})


@dataclass
class ScrapeSummary:
    session: str | None
    tags: list[TagOutcome] = field(default_factory=list)
    skipped_tags: list[str] = field(default_factory=list)  # not tried after an account-wide refusal
    waited_s: float = 0.0

    added = property(lambda self: sum(t.added for t in self.tags))
    duplicates = property(lambda self: sum(t.duplicates for t in self.tags))
    fetched = property(lambda self: sum(t.fetched for t in self.tags))

    @property
    def stopped(self) -> list[str]:
        return [t.stopped for t in self.tags if t.stopped]

    @property
    def nothing_fetched_because_refused(self) -> bool:
        """The run should exit non-zero: something stopped it and not a single image came in."""
        return bool(self.stopped) and self.fetched == 0

    def as_dict(self) -> dict[str, Any]:
        tags = []
        for t in self.tags:
            d = asdict(t)
            d.pop("image_ids")
            tags.append(d)
        return {
            "session": self.session,
            "added": self.added,
            "duplicates": self.duplicates,
            "near_duplicates": sum(t.near_duplicates for t in self.tags),
            "videos_skipped": sum(t.videos_skipped for t in self.tags),
            "posts_known": sum(t.posts_known for t in self.tags),
            "posts_taken_down": sum(t.posts_taken_down for t in self.tags),
            "rejected": [r for t in self.tags for r in t.rejected],
            "failed": [f for t in self.tags for f in t.failed],
            "stopped": self.stopped,
            "skipped_tags": self.skipped_tags,
            "waited_s": round(self.waited_s, 1),
            "tags": tags,
        }


class _Stop(Exception):
    """Internal: a refusal that ends the current tag."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.detail)
        self.refusal = refusal


class _DownloadFailed(Exception):
    pass


class _LaterPageRefused(Exception):
    """Internal: a feed refused a page after its first; the next feed is tried."""

    def __init__(self, refusal: Refusal):
        super().__init__(refusal.detail)
        self.refusal = refusal


RETRY_AFTER_MIN = {"wait": 30, "rate": 60, "blocked": 180}


def retry_hint(kind: str) -> str:
    minutes = RETRY_AFTER_MIN.get(kind)
    if minutes:
        at = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)).strftime("%H:%M UTC")
        return f"Retry after {at} (in {minutes} minutes or more)"
    if kind in ("login", "logged_out", "checkpoint"):
        return "Retry once `ghosts login` has saved a working session (check it with `ghosts login --check USER`)"
    if kind == "network":
        return "Retry once the network is back"
    if kind == "gone":
        return "Retry after updating instaloader, or import another scraper's download with `ghosts import-scraped`"
    return "Retry later"


def _expired(frozen: dict[str, Any]) -> bool:
    best_before = frozen.get("best_before")
    return bool(best_before) and dt.datetime.fromtimestamp(best_before) < dt.datetime.now()


# ---------------------------------------------------------------------------------------------- scraping


class TagScraper:
    """Scrapes one tag into the catalog; one instance per tag and run."""

    def __init__(
        self,
        ws,
        loader: instaloader.Instaloader,
        tag: str,
        *,
        limit: int | None = None,  # new images to add for this tag; None: walk the whole feed
        top_only: bool = False,  # only the tag's top posts (one request fewer per page, no resume)
        restart: bool = False,  # ignore the saved position and start again from the newest posts
        progress: bool = True,
        ingestor: Ingestor | None = None,
        sleep: Callable[[float], None] = time.sleep,  # backoff between download retries
        download_attempts: int = 3,  # tries per image before it is left for the next run
        max_image_bytes: int = 50_000_000,  # Instagram serves at most ~1-2 MB per photo
        # Most seconds one image may take in all, retries included: the loader's request timeout bounds each
        # wait for the next bytes only, so a server dripping a byte at a time would hold the tag for ever.
        download_deadline_s: float = 120.0,
        max_post_tries: int = 3,  # runs that may try to finish an incomplete post before it is given up
        caught_up_after: int = 36,  # known posts in a row (3 feed pages) that end a walk from the newest
    ):
        self.ws = ws
        self.loader = loader
        self.ctx = loader.context
        self.tag = check_tag(tag)
        self.limit = limit
        self.top_only = top_only
        self.restart = restart
        self.ingestor = ingestor or Ingestor(ws)
        self.sleep = sleep
        self.download_attempts = download_attempts
        self.max_image_bytes = max_image_bytes
        self.download_deadline_s = download_deadline_s
        self._tried: set[str] = set()  # posts fetched in this run: a failed one is not tried twice
        self.max_post_tries = max_post_tries
        self.caught_up_after = caught_up_after
        self.out = TagOutcome(self.tag)
        self.state = TagState.load(ws, self.tag)
        self.taken_down_owners = taken_down_owners(ws)
        self.bar = tqdm(total=limit, desc=f"#{self.tag}", unit="img", disable=not progress, leave=True)

    @property
    def username(self) -> str | None:
        return self.ctx.username

    def _limit_reached(self) -> bool:
        return self.limit is not None and self.out.added >= self.limit

    def show_wait(self, secs: float) -> None:
        self.bar.set_postfix_str(f"waiting {round(secs)} s for Instagram" if secs >= 1 else "", refresh=True)

    # -- the run

    def run(self) -> TagOutcome:
        try:
            hashtag = self._tag_page()
            self._finish_incomplete()
            if not self._limit_reached():
                self._walk_feeds(hashtag)
        except _Stop as stop:
            self.out.stop_kind = stop.refusal.kind
            self.out.stopped = stop.refusal.message(self.tag)
            if stop.refusal.account_wide:
                self.out.stopped += " " + self._kept()
            log.warning("%s", self.out.stopped)
        finally:
            self.out.incomplete = len(self.state.incomplete)
            self.state.save()
            self.bar.close()
        return self.out

    def _kept(self) -> str:
        """What an account-wide stop leaves behind, and when to try again."""
        kind = self.out.stop_kind or ""
        images = f"{self.out.added} new image{'s' if self.out.added != 1 else ''}"
        parts = [f"Kept: {images} from #{self.tag} in this run ({self.out.posts_seen} posts read)"]
        if self.state.frozen:
            parts.append(
                f"the position in the {self.state.feed} feed is saved and the next run resumes there"
            )
        if self.state.incomplete:
            parts.append(f"{len(self.state.incomplete)} unfinished posts are finished first next time")
        return "; ".join(parts) + ". " + retry_hint(kind) + "."

    def _tag_page(self) -> Hashtag:
        """The tag's page (web_info). Refused by an endpoint that is gone while the session still works, the
        feeds are tried without it (all but the top posts' first page can do without)."""
        try:
            return Hashtag.from_name(self.ctx, self.tag)
        except REFUSALS as e:
            refusal = diagnose(self.ctx, e, self.username, self.tag, "web_info")
            if refusal.kind != "endpoint":
                raise _Stop(refusal) from e
            self._note(refusal.advice + "; trying the feeds without it")
            return Hashtag(self.ctx, {"name": self.tag})

    def _call(self, fn):
        try:
            return fn()
        except REFUSALS as e:
            if is_network_failure(e):
                raise _Stop(network_refusal(str(e))) from e
            raise _Stop(classify(e, self.username)) from e

    def _note(self, text: str) -> None:
        self.out.notes.append(text)
        log.warning("#%s: %s", self.tag, text)

    def _walk_feeds(self, hashtag: Hashtag) -> None:
        """The feeds in order (see feeds.py): each one whose first page is refused for a reason that is not the
        account's is passed over for the next; a refusal on a later page falls through the same way."""
        feeds = ["top"] if self.top_only else list(FEEDS)
        saved = self.state.feed if self.state.frozen and not self.restart else None
        if saved in feeds:
            feeds = feeds[feeds.index(saved) :]  # resume where the last run was, on its feed
        tried: list[str] = []
        last: Refusal | None = None
        for feed in feeds:
            position = self.state.frozen if saved == feed else None
            try:
                iterator = self._open(hashtag, feed, position)
            except REFUSALS as e:
                refusal = diagnose(self.ctx, e, self.username, self.tag, feed)
                if refusal.account_wide and refusal.kind != "login":
                    raise _Stop(refusal) from e
                tried.append(feed)
                last = refusal
                self._note(f"{refusal.advice}; trying the next feed" if feed != feeds[-1] else refusal.advice)
                continue
            self.out.feed = feed
            try:
                self._walk(iterator, feed)
                return
            except _LaterPageRefused as later:
                tried.append(feed)
                last = later.refusal
                self._note(later.refusal.advice + ("; trying the next feed" if feed != feeds[-1] else ""))
        if last is not None and last.kind == "login":
            raise _Stop(last)
        labels = ", ".join(FEED_LABELS[f] for f in tried)
        raise _Stop(
            Refusal(
                "gone",
                last.detail if last else "",
                f"every way to list this tag was refused ({labels}) although the session still answers elsewhere: "
                f"Instagram has changed its API. Update instaloader (`pip install -U instaloader`), or download the tag "
                f"with another scraper and bring it in with `ghosts import-scraped DIR` (docs/instagram.md, "
                f"'When scraping breaks')",
            )
        )

    def _open(self, hashtag: Hashtag, feed: str, position: dict[str, Any] | None):
        """The feed's iterator, positioned where the last run left it when `position` is given."""
        if feed == "recent":
            iterator = open_feed(hashtag, "recent")
            if position:
                self._thaw(iterator, position)
            return iterator
        if position:
            try:
                iterator = open_feed(hashtag, feed, position)
                self.out.resumed = True
                log.info("#%s: resuming the %s feed", self.tag, feed)
                return iterator
            except REFUSALS as e:
                if classify(e, self.username).account_wide:
                    raise
                # An expired or foreign cursor: the feed itself may still answer from its newest posts.
                log.warning(
                    "#%s: not resuming from the saved position (%s); starting from the newest posts",
                    self.tag,
                    str(e).splitlines()[0][:200],
                )
                self.state.frozen = None
        return open_feed(hashtag, feed)

    def _thaw(self, iterator: NodeIterator, frozen: dict[str, Any]) -> None:
        try:
            if _expired(frozen):
                raise InvalidArgumentException("the saved position is too old (its cursor has expired)")
            fni = thaw_recent(iterator, frozen)
            self.out.resumed = True
            log.info("#%s: resuming after %d posts", self.tag, fni.total_index)
        except (TypeError, InvalidArgumentException) as e:
            # e.g. saved by another account: cursors belong to the session that made them.
            log.warning(
                "#%s: not resuming from the saved position (%s); starting from the newest posts", self.tag, e
            )
            self.state.frozen = None

    def _walk(self, iterator, feed: str) -> None:
        it = iter(iterator)
        # After a walk that reached the end of a newest-first feed, a new walk from the newest post can stop
        # once it meets a run of posts it already has: everything older was walked before.
        incremental = feed != "top" and not self.out.resumed and self.state.finished_at is not None
        streak = 0
        while not self._limit_reached():
            try:
                post = next(it)
            except StopIteration:
                self.out.finished = True
                self.state.frozen = None
                if feed != "top":
                    self.state.finished_at = utcnow().isoformat()
                return
            except REFUSALS as e:
                raise self._later_page_refused(e, feed) from e
            self.out.posts_seen += 1
            # Frozen now, the iterator gives this very post again: a crash below loses nothing.
            self.state.feed, self.state.frozen = feed, freeze(it)
            seen = self._post(post, feed=feed)
            if seen != "video":
                streak = streak + 1 if seen == "known" else 0
            if incremental and streak >= self.caught_up_after:
                self.out.finished = True
                self.out.notes.append(f"caught up: {streak} posts in a row were already in the catalog")
                self.state.frozen = None
                self.state.finished_at = utcnow().isoformat()
                return

    def _later_page_refused(self, err: BaseException, feed: str) -> Exception:
        """A refusal after the feed's first page: never 'no such hashtag' (the tag gave posts already)."""
        refusal = diagnose(self.ctx, err, self.username, self.tag, feed)
        if refusal.account_wide:
            return _Stop(refusal)
        return _LaterPageRefused(
            Refusal(
                "page",
                refusal.detail,
                f"the {FEED_LABELS[feed]} refused a later page after {self.out.posts_seen} posts "
                f"({refusal.detail.splitlines()[0][:160]}); the posts read so far are kept",
            )
        )

    def _finish_incomplete(self) -> None:
        for shortcode in list(self.state.incomplete):
            if self._limit_reached():
                return
            entry = self.state.incomplete[shortcode]
            if entry.get("tries", 0) >= self.max_post_tries:
                log.warning(
                    "#%s: giving up on post %s after %d tries (%s)",
                    self.tag,
                    shortcode,
                    entry["tries"],
                    entry.get("reason"),
                )
                del self.state.incomplete[shortcode]
                continue
            try:
                post = Post.from_shortcode(self.ctx, shortcode)
            except (QueryReturnedNotFoundException, BadResponseException, PostChangedException) as e:
                log.warning("#%s: post %s is gone (%s)", self.tag, shortcode, e)
                del self.state.incomplete[shortcode]
                continue
            except REFUSALS as e:
                raise _Stop(classify(e, self.username)) from e
            self._post(post, feed="retry")

    # -- one post

    def _known_items(self, shortcode: str) -> set[int | None] | None:
        """Sidecar indices (None for a single image) of this post already in the catalog; None if none."""
        with self.ws.session() as s:
            rows = s.execute(select(Image.provenance).where(Image.shortcode == shortcode)).scalars().all()
        if not rows:
            return None
        return {(p or {}).get("sidecar_index") for p in rows}

    def _post(self, post: Post, feed: str) -> str:
        """Fetch the post's new images; returns "video", "known" (nothing fetched), "tried" (fetched earlier in
        this run) or "fetched"."""
        shortcode = post.shortcode
        if not isinstance(shortcode, str) or not shortcode:  # nothing to fetch it by, nor to resume it by
            self.out.failed.append(
                {"url": NO_SHORTCODE, "reason": f"malformed post data: shortcode {shortcode!r}"}
            )
            return "fetched"
        retry = shortcode in self.state.incomplete
        if post.is_video:
            self.out.videos_skipped += 1
            return "video"
        known = self._known_items(shortcode)
        if known is not None and not retry:
            self.out.posts_known += 1
            return "known"
        if shortcode in self._tried:
            return "tried"  # finished first (_finish_incomplete) and failed again: once a run is enough
        self._tried.add(shortcode)
        known = known or set()
        self.state.in_flight = shortcode
        self.state.save()
        problem: str | None = None  # why the post cannot be finished in this run
        counts_as_try = True  # a failure, as opposed to the --limit stopping inside the post
        try:
            meta = self._call(lambda: post_provenance(post, self.tag, feed))
            items = self._call(lambda: image_items(post))
        except _Stop as stop:
            if stop.refusal.account_wide:
                raise
            # This one post is broken (deleted, unexpected answer): note it and go on with the feed.
            problem = stop.refusal.detail
            items = []
        except (ValueError, OverflowError, AttributeError, IndexError) as e:
            # Data instaloader cannot make sense of (a date out of range, an id that is no number).
            problem = f"malformed post data: {type(e).__name__}: {e}"
            items = []
        if problem:
            self.out.failed.append(
                {"url": POST_URL.format(shortcode), "reason": problem.splitlines()[0][:300]}
            )
        if items and meta["owner_username"] in self.taken_down_owners:
            # This account asked to be taken down: none of its posts come back in.
            self.out.posts_taken_down += 1
            self.state.incomplete.pop(shortcode, None)
            self.state.in_flight = None
            self.state.save()
            return "known"
        for index, is_video, url in items:
            if is_video:
                self.out.videos_skipped += 1
                continue
            if index in known:
                continue
            if self._limit_reached():
                if not problem:
                    problem, counts_as_try = "--limit reached inside the post", False
                break
            label = (
                f"{POST_URL.format(shortcode)} #{index}" if index is not None else POST_URL.format(shortcode)
            )
            try:
                data = self._download(url)
            except _DownloadFailed as e:
                problem = str(e)
                self.out.failed.append({"url": label, "reason": str(e)})
                continue
            prov = {**meta, "sidecar_index": index, "image_url": url, "scraped_at": utcnow().isoformat()}
            result = self.ingestor.add(
                data,
                name=f"{shortcode}_{index}.jpg" if index is not None else f"{shortcode}.jpg",
                source_kind="instagram",
                source_ref=meta["post_url"],
                provenance=prov,
                query=self.tag,
                owner=meta["owner_username"],
                shortcode=shortcode,
                post_url=meta["post_url"],
                taken_at=_parse_iso(meta["taken_at"]),
                likes=meta["likes"],
            )
            self.out.count(result, label)
            if result.status == "added":
                self.bar.update(1)
        if problem:
            tries = self.state.incomplete.get(shortcode, {}).get("tries", 0)
            self.state.incomplete[shortcode] = {
                "reason": problem,
                "tries": tries + int(retry and counts_as_try),
            }
        else:
            self.state.incomplete.pop(shortcode, None)
        self.state.in_flight = None
        self.state.save()
        return "fetched"

    def _download(self, url: str) -> bytes:
        last: BaseException | None = None
        deadline = time.monotonic() + self.download_deadline_s
        for attempt in range(1, self.download_attempts + 1):
            if attempt > 1 and time.monotonic() > deadline:
                raise _DownloadFailed(
                    f"download failed ({last}); gave up after the {self.download_deadline_s:.0f} s deadline "
                    f"(attempt {attempt - 1} of {self.download_attempts})"
                )
            try:
                with deadline_watch(deadline, "the image download"):  # headers included
                    resp = self.ctx.get_raw(url)
                    try:
                        return read_limited(resp, self.max_image_bytes, deadline)
                    finally:
                        resp.close()
            except FetchRefused as e:
                raise _DownloadFailed(e.reason) from None
            except (QueryReturnedForbiddenException, QueryReturnedNotFoundException) as e:
                # An expired URL signature or a deleted image: a retry now cannot help; the next run
                # fetches the post again with fresh URLs.
                raise _DownloadFailed(f"image refused: {e}") from e
            except _DownloadFailed:
                raise
            except (ConnectionException, requests.RequestException, urllib3.exceptions.HTTPError) as e:
                # urllib3's errors come through when the body is read from the raw stream (read_limited).
                last = e
                log.warning(
                    "download of %s failed (%s), attempt %d of %d", url, e, attempt, self.download_attempts
                )
                if attempt < self.download_attempts:
                    self.sleep(min(2.0 * attempt, max(0.0, deadline - time.monotonic())))
        raise _DownloadFailed(f"download failed after {self.download_attempts} attempts: {last}")


class TakenDownOwners:
    """The accounts that asked for a takedown (`ghosts takedown --owner`), as the takedown records keep them:
    a "sha256:" hash of the lowercased name (records must not name the person), or, in records written
    before that, the name itself."""

    def __init__(self, values: list[str]):
        self.values = {v.strip().lstrip("@").lower() for v in values}

    def __contains__(self, owner: object) -> bool:
        if not isinstance(owner, str) or not owner:
            return False
        name = owner.strip().lstrip("@").lower()
        return (
            name in self.values or "sha256:" + hashlib.sha256(name.encode("utf-8")).hexdigest() in self.values
        )


def taken_down_owners(ws) -> TakenDownOwners:
    with ws.session() as s:
        values = s.execute(select(Takedown.value).where(Takedown.kind == "owner")).scalars().all()
    return TakenDownOwners(list(values))


def image_items(post: Post) -> list[tuple[int | None, bool, str]]:
    """(sidecar index or None, is_video, URL) for each item of a post."""
    if post.typename == "GraphSidecar":
        return [(i, node.is_video, node.display_url) for i, node in enumerate(post.get_sidecar_nodes())]
    return [(None, post.is_video, post.url)]


def post_provenance(post: Post, tag: str, feed: str) -> dict[str, Any]:
    """Everything the catalog keeps about where an image came from (may fetch the post's metadata once)."""
    taken = post.date_utc.replace(tzinfo=dt.UTC)
    return {
        "source": "instagram",
        "query": tag,
        "feed": feed,
        "shortcode": post.shortcode,
        "post_url": POST_URL.format(post.shortcode),
        "media_id": str(post.mediaid),
        "typename": post.typename,
        "owner_username": post.owner_username,
        "owner_id": str(post.owner_id),
        "caption": post.caption,
        "caption_hashtags": post.caption_hashtags,
        "likes": post.likes,
        "taken_at": taken.isoformat(),
        "instaloader_version": instaloader.__version__,
    }


def _parse_iso(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


# ------------------------------------------------------------------------------------------------ the API


def unique_tags(tags: Iterable[str]) -> list[str]:
    """The tags checked (`check_tag`) and without repeats, in the order given."""
    return list(dict.fromkeys(check_tag(t) for t in tags))


def scrape_each_tag(
    tags: list[str], scrape_one: Callable[[str], T], account_wide: Callable[[T], bool]
) -> tuple[list[T], list[str]]:
    """The multi-tag run: scrape each tag in turn and stop after the first account-wide refusal, since pushing
    on with other tags makes a block longer. Returns the outcomes and the tags not tried. `scrape_one` is
    `TagScraper.run` for `scrape_tags` and the `scrape-tag` task for the `scrape-and-align` flow."""
    outcomes: list[T] = []
    for i, tag in enumerate(tags):
        outcome = scrape_one(tag)
        outcomes.append(outcome)
        if account_wide(outcome):
            skipped = tags[i + 1 :]
            if skipped:
                log.warning("not trying %s after that refusal", ", ".join("#" + t for t in skipped))
            return outcomes, skipped
    return outcomes, []


class _WaitDisplay:
    """Shows rate-limit waits on the progress bar of the tag being scraped."""

    scraper: TagScraper | None = None

    def __call__(self, secs: float) -> None:
        if self.scraper is not None:
            self.scraper.show_wait(secs)


def scrape_tags(
    ws,
    tags: Iterable[str],
    *,
    session: str | None = None,  # saved session to use; None: the only one saved, else anonymous
    limit: int | None = None,  # new images per tag
    top_only: bool = False,
    restart: bool = False,
    max_requests_per_hour: int | None = None,
    progress: bool = True,
    loader: instaloader.Instaloader | None = None,  # tests pass one built by make_loader with instant sleeps
    sleep: Callable[[float], None] = time.sleep,
    download_deadline_s: float = 120.0,  # per image, retries included (TagScraper)
) -> ScrapeSummary:
    """Scrape each tag in turn into the catalog; stops early on an account-wide refusal (see module doc)."""
    tags = unique_tags(tags)
    if not tags:
        raise GhostsError("no hashtag given: pass --tag TAG (several times for several tags)")
    if limit is not None and limit < 1:
        raise GhostsError("--limit must be at least 1")
    display = _WaitDisplay()
    if loader is None:
        loader = make_loader(sleep=sleep, max_requests_per_hour=max_requests_per_hour, on_wait=display)
    controller = rate_controller(loader)
    if isinstance(controller, ReportingRateController):
        controller.on_wait = controller.on_wait or display
        if max_requests_per_hour is not None:
            controller.max_requests_per_hour = max_requests_per_hour
    if loader.context.username is None:
        user = choose_session(ws, session)
        if user:
            load_session(ws, loader, user)
        else:
            log.warning(
                "no Instagram session saved: trying anonymously (Instagram usually refuses hashtags "
                "without one; see `ghosts login`)"
            )
    summary = ScrapeSummary(session=loader.context.username)
    ingestor = Ingestor(ws)

    def scrape_one(tag: str) -> TagOutcome:
        scraper = TagScraper(
            ws,
            loader,
            tag,
            limit=limit,
            top_only=top_only,
            restart=restart,
            progress=progress,
            ingestor=ingestor,
            sleep=sleep,
            download_deadline_s=download_deadline_s,
        )
        display.scraper = scraper
        return scraper.run()

    outcomes, summary.skipped_tags = scrape_each_tag(tags, scrape_one, lambda o: o.stop_kind in ACCOUNT_WIDE)
    summary.tags.extend(outcomes)
    if isinstance(controller, ReportingRateController):
        summary.waited_s = controller.waited_s
    return summary


def scrape_error_message(summary: ScrapeSummary) -> str:
    """The message of a run that fetched nothing because Instagram refused it."""
    lines = ["nothing could be fetched from Instagram:"] + [f"  {m}" for m in summary.stopped]
    return "\n".join(lines)


__all__ = [
    "Refusal",
    "ScrapeSummary",
    "TagOutcome",
    "TagScraper",
    "TagState",
    "check_tag",
    "classify",
    "make_loader",
    "post_provenance",
    "scrape_each_tag",
    "scrape_error_message",
    "scrape_tags",
    "unique_tags",
]
