"""The instaloader this source runs on: configured for scraping (reported rate-limit waits, fatal 401/403,
quiet, no side files)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import instaloader

from curation.sources.instagram.rate import ReportingRateController

log = logging.getLogger("ghosts.instagram")
# 401 "Please wait" and 403 "login_required" are not worth instaloader's three retries: each retry makes a
# temporary block longer. As fatal codes they abort at once (instaloader's `--abort-on`).
FATAL_STATUS_CODES = (401, 403)


def make_loader(
    *,
    sleep: Callable[[float], None] = time.sleep,  # how rate-limit waits are spent (tests pass a no-op)
    on_wait: Callable[[float], None] | None = None,
    max_requests_per_hour: int | None = None,  # an extra cap over instaloader's own sliding windows
    pause_between_requests: bool = True,  # instaloader's short random pause before each request (mean ~1.7 s)
    request_timeout: float = 60.0,  # seconds per HTTP request (instaloader's default of 300 hides hangs)
    max_connection_attempts: int = 3,  # instaloader's default; 429s are retried after its backoff
) -> instaloader.Instaloader:
    """An Instaloader configured for scraping: reported waits, quiet, no video or metadata files."""
    loader = instaloader.Instaloader(
        sleep=pause_between_requests,
        quiet=True,
        download_videos=False,
        download_video_thumbnails=False,
        save_metadata=False,
        max_connection_attempts=max_connection_attempts,
        request_timeout=request_timeout,
        rate_controller=lambda ctx: ReportingRateController(
            ctx, sleep=sleep, on_wait=on_wait, max_requests_per_hour=max_requests_per_hour
        ),
        fatal_status_codes=list(FATAL_STATUS_CODES),
        # The "high quality" image URL costs one more request per post on the mobile API, whose budget is
        # the tightest (about 200 per 30 minutes); the feed's display_url is already 1080 px wide.
        iphone_support=False,
    )
    _route_messages_to_log(loader.context)
    return loader


def _route_messages_to_log(ctx: instaloader.InstaloaderContext) -> None:
    # instaloader prints to stdout/stderr; ours go through logging (its messages never contain cookies).
    def error(msg, repeat_at_end=True):
        log.warning("instaloader: %s", msg)

    def info(*msg, sep="", end="\n", flush=False):
        text = sep.join(map(str, msg)).strip()
        if text:
            log.debug("instaloader: %s", text)

    ctx.error, ctx.log = error, info


def rate_controller(loader: instaloader.Instaloader) -> ReportingRateController:
    return loader.context._rate_controller  # instaloader exposes no accessor for the controller it built
