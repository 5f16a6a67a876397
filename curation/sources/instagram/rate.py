"""Rate control for Instagram: instaloader's own sliding-window policy, with every wait reported.

instaloader already knows Instagram's budgets (per query type over 11 minutes, all GraphQL queries over 10,
the mobile API over 30) and backs off after a 429. This subclass adds what a person watching a progress bar
needs: each wait is logged and handed to a callback (the scraper shows "waiting N s for Instagram" on its
bar), and an optional hard cap on requests per hour for users who want to stay well under the radar.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import instaloader

log = logging.getLogger("ghosts.instagram")

HOUR_S = 3600.0


class ReportingRateController(instaloader.RateController):
    def __init__(
        self,
        context: instaloader.InstaloaderContext,
        *,
        sleep: Callable[[float], None] = time.sleep,  # injected so tests wait instantly
        on_wait: Callable[[float], None] | None = None,  # called with the wait before it, and with 0 after it
        max_requests_per_hour: int | None = None,  # None: only instaloader's own budgets apply
    ):
        super().__init__(context)
        if max_requests_per_hour is not None and max_requests_per_hour < 1:
            raise ValueError("max_requests_per_hour must be at least 1")
        self._sleep = sleep
        self.on_wait = on_wait
        self.max_requests_per_hour = max_requests_per_hour
        self.waits: list[float] = []  # every wait, in seconds, in order (for summaries and tests)

    @property
    def waited_s(self) -> float:
        return float(sum(self.waits))

    def sleep(self, secs: float) -> None:
        self.waits.append(float(secs))
        if secs >= 1:
            log.info("waiting %d s for Instagram", round(secs))
        if self.on_wait:
            self.on_wait(secs)
        try:
            self._sleep(secs)
        finally:
            if self.on_wait:
                self.on_wait(0.0)

    def query_waittime(self, query_type: str, current_time: float, untracked_queries: bool = False) -> float:
        wait = super().query_waittime(query_type, current_time, untracked_queries)
        if self.max_requests_per_hour is None:
            return wait
        # instaloader records one timestamp per request, per query type; the cap counts them all together.
        recent = sorted(
            t for times in self._query_timestamps.values() for t in times if t > current_time - HOUR_S
        )
        if len(recent) >= self.max_requests_per_hour:
            # Wait until the oldest request that keeps us at the cap drops out of the one-hour window.
            wait = max(wait, recent[-self.max_requests_per_hour] + HOUR_S - current_time)
        return max(0.0, wait)
