"""Per-tag state: `scrape/<tag>.json`, the position of the walk, what is in flight and what is unfinished."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import instaloader

from curation.catalog.errors import GhostsError
from curation.catalog.schema import utcnow
from curation.catalog.store import atomic_write_bytes

log = logging.getLogger("ghosts.instagram")
# Instagram hashtags are word characters (any script) only; this also makes them safe file names.
TAG_RE = re.compile(r"^\w{1,100}$", re.UNICODE)


@dataclass
class TagState:
    """What `scrape/<tag>.json` remembers between runs."""

    path: Path
    tag: str
    feed: str | None = None  # the feed the position belongs to (recent | sections | top; see feeds.py)
    frozen: dict[str, Any] | None = None  # recent: instaloader's FrozenNodeIterator as a dict; else a cursor
    in_flight: str | None = None  # shortcode of the post being fetched when the state was written
    incomplete: dict[str, dict[str, Any]] = field(default_factory=dict)  # shortcode -> {"reason", "tries"}
    finished_at: str | None = None  # when the recent feed was last walked to its end
    updated_at: str | None = None

    @classmethod
    def load(cls, ws, tag: str) -> TagState:
        path = ws.scrape_dir / f"{tag}.json"
        state = cls(path=path, tag=tag)
        if not path.exists():
            return state
        try:
            doc = json.loads(path.read_text("utf-8"))
            state.frozen = doc.get("frozen")
            # Positions written before the feed was recorded are the recent feed's.
            state.feed = doc.get("feed") or ("recent" if state.frozen else None)
            state.in_flight = doc.get("in_flight")
            state.incomplete = dict(doc.get("incomplete") or {})
            state.finished_at = doc.get("finished_at")
            state.updated_at = doc.get("updated_at")
        except (ValueError, AttributeError, TypeError) as e:
            # Only ever written atomically, so this is a hand edit or a foreign file: keep it, start afresh.
            damaged = path.with_suffix(".damaged.json")
            path.replace(damaged)
            log.warning(
                "#%s: unreadable scrape state (%s) moved to %s; starting from the newest posts",
                tag,
                e,
                damaged,
            )
        if state.in_flight:
            # The last run died while fetching this post: finish it first.
            state.incomplete.setdefault(state.in_flight, {"reason": "interrupted", "tries": 0})
            state.in_flight = None
        return state

    def save(self) -> None:
        self.updated_at = utcnow().isoformat()
        doc = {
            "tag": self.tag,
            "feed": self.feed,
            "frozen": self.frozen,
            "in_flight": self.in_flight,
            "incomplete": self.incomplete,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
            "instaloader_version": instaloader.__version__,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, json.dumps(doc, indent=1, ensure_ascii=False).encode("utf-8"))


def check_tag(tag: str) -> str:
    name = (tag or "").strip().lstrip("#").lower()
    if not TAG_RE.match(name):
        raise GhostsError(f"not a hashtag: {tag!r} (letters, digits and '_' only, without spaces)")
    return name
