"""The counter's figures ("accepted N / target T", the other decisions, the largest owners and hashtags),
kept between requests and moved by each decision instead of recounted over every face.

Counting 10,000 faces per decision (a join and a group-by per figure) was most of the time a key press
took to be saved. `CountsCache` counts once, then moves the figures by the changes of every batch the review
writes itself (a few primary-key lookups), inside the same write lock as the write, so a recount never
overlaps a write it would count twice.

Every other write is seen too, and answered by a full recount: SQLite's `PRAGMA data_version`, read on a
connection of its own, changes whenever any other connection commits (another process: the CLI, a flow,
auto-accept; or another part of this app: deleting, restoring, cropping by hand, merging people). The
version is read before and after each own write, so only a commit that lands in those few milliseconds
could be missed; the figures are recounted anyway when they are older than `max_age` seconds. A catalog that
is not an SQLite file is recounted every time.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import TypeVar

from sqlalchemy import select

from curation.catalog.schema import Face, Image
from curation.review.decisions import (
    REVIEW_DECISIONS,
    WRITE_LOCK,
    accepted_per,
    decision_counts,
)
from curation.review.selection import round_figures

T = TypeVar("T")
TOP = 3  # owners and hashtags shown beside the counter
CHUNK = 500  # ids per IN (...) (SQLite's bound-parameter limit)
MAX_DELTA = 2000  # a larger batch is recounted (one recount is cheaper than many lookups)


class CountsCache:
    """`counts()` and `write(fn)` give the figures `selection.review_counts` computes, from a cache."""

    def __init__(self, ws, max_age: float = 30.0) -> None:
        self.ws = ws
        self.max_age = max_age
        self._decisions: dict[str, int] | None = None
        self._owners: Counter = Counter()
        self._tags: Counter = Counter()
        self._seen: int | None = None  # data_version after the last own write or recount
        self._at = 0.0
        self._conn_lock = threading.Lock()
        self._conn = self._watch(ws)
        self.recounts = 0  # how many full recounts (tests and the benchmark read it)

    @staticmethod
    def _watch(ws) -> sqlite3.Connection | None:
        path = getattr(ws, "catalog_file", None)
        if path is None or not path.exists():
            return None
        try:
            # Only PRAGMA data_version is ever run on it: it never writes, and holds no read transaction.
            return sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        except sqlite3.Error:
            return None

    def _version(self) -> int | None:
        if self._conn is None:
            return None
        with self._conn_lock:
            try:
                return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:
                return None

    def _fresh(self) -> bool:
        return (
            self._decisions is not None
            and self._seen is not None
            and self._version() == self._seen
            and time.monotonic() - self._at < self.max_age
        )

    def _recount(self) -> None:
        version = self._version()  # before counting: a commit during the count shows up next time
        with self.ws.session() as s:
            self._decisions = decision_counts(s)
            self._owners = _accepted_per(s, Image.owner)
            self._tags = _accepted_per(s, Image.query)
        self._seen, self._at = version, time.monotonic()
        self.recounts += 1

    def _move(self, changes: Iterable) -> bool:
        """Move the figures by a batch's changes (face_id, decision, previous); False when recounted instead."""
        moved = [c for c in changes if c.decision != c.previous]
        if len(moved) > MAX_DELTA:
            return False
        ids = [c.face_id for c in moved]
        where: dict[int, tuple[str | None, str | None]] = {}
        with self.ws.session() as s:
            for start in range(0, len(ids), CHUNK):
                rows = s.execute(
                    select(Face.id, Image.owner, Image.query)
                    .join(Image, Face.image_id == Image.id)
                    .where(
                        Face.id.in_(ids[start : start + CHUNK]),
                        Face.deleted.is_(False),
                        Image.status != "excluded",
                    )
                ).all()
                where.update((i, (o, t)) for i, o, t in rows)
        d = self._decisions
        for c in moved:
            if c.face_id not in where:  # not counted: deleted, or its photo taken down
                continue
            owner, tag = where[c.face_id]
            d[c.previous] = d.get(c.previous, 0) - 1
            d[c.decision] = d.get(c.decision, 0) + 1
            for counter, key in ((self._owners, owner), (self._tags, tag)):
                if key is None:
                    continue
                if c.previous == "accepted":
                    counter[key] -= 1
                if c.decision == "accepted":
                    counter[key] += 1
        return True

    def write(self, fn: Callable[[], T]) -> tuple[T, dict]:
        """Run the write `fn` (it returns a decisions.Batch, or anything with `changes`) and answer with its
        result and the figures after it."""
        with WRITE_LOCK:
            fresh = self._fresh()
            out = fn()
            if fresh and self._move(getattr(out, "changes", ())):
                self._seen = self._version()
            else:
                self._recount()
            return out, self._figures()

    def counts(self) -> dict:
        with WRITE_LOCK:  # no write between a recount and its caching
            if not self._fresh():
                self._recount()
            return self._figures()

    def _figures(self) -> dict:
        out = {k: self._decisions.get(k, 0) for k in REVIEW_DECISIONS}
        out["total"] = sum(out.values())
        with self.ws.session() as s:
            out.update(round_figures(s))
        out["top_owners"] = _top(self._owners)
        out["top_tags"] = _top(self._tags)
        return out

    def close(self) -> None:
        with self._conn_lock, contextlib.suppress(sqlite3.Error):
            if self._conn is not None:
                self._conn.close()
            self._conn = None


def _accepted_per(session, column) -> Counter:
    rows = session.execute(accepted_per(column)).all()
    return Counter({str(k): int(v) for k, v in rows})


def _top(counter: Counter) -> list[tuple[str, int]]:
    """The largest first, ties by name: as decisions.top_counts orders them."""
    return sorted(((k, n) for k, n in counter.items() if n > 0), key=lambda kv: (-kv[1], kv[0]))[:TOP]
