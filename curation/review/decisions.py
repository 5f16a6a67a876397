"""Review decisions: written to the catalog at once, with history, and undone from that history.

Every call to `decide` is one batch: all its `Decision` rows share one timestamp and reviewer, and the face
rows get the new current state. `undo_last` reverts a reviewer's most recent batch that is not yet undone, so
pressing undo repeatedly walks back through the batches (multi-level). Undo rows are ordinary history rows whose
reason is `undo #<id>` (the first row id of the batch they revert); nothing is deleted, so the audit trail
keeps every step. Two reviewers may work at once: the last write wins per face, and an undo never overwrites
a face somebody else has decided since (it records the face as kept instead).

Writes are serialised: every decide, undo and round close runs under one process-wide lock and in one
transaction, so concurrent requests (several tabs, several reviewers on one server) each read the state the
previous one left, and every history row's `previous` is the state it really replaced.

Every history row belongs to the review round that was open when it was written (`round_id`; a decision made
while no round is open opens the next one). A closed round is immutable: undo refuses to revert a batch of a
closed round (`RoundClosed`).

A face's rating (1-5 stars, or none) is kept with its decision: a rating step is a batch like a decision
(its rows repeat the face's decision and carry the new rating), and undo restores the previous rating.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select

from curation.catalog.errors import GhostsError
from curation.catalog.queries import first_row
from curation.catalog.schema import DECISIONS, Decision, Face, Image, ReviewRound, utcnow

REVIEW_DECISIONS = DECISIONS  # the catalog's vocabulary
# Called with (ws, face ids) after a batch that accepted faces is saved (`_announce`); `ghosts review`
# registers the crop prerenderer here (curation.datasets.prerender.CropRenderer.poke). A hook returns at once
# and never raises.
ON_ACCEPTED: list[Callable[[object, list[int]], None]] = []
REASON_RE = re.compile(r"^[a-z0-9][a-z0-9 _.-]{0,63}$")  # short tags ("blurry", "duplicate"), never "#"
UNDO_PREFIX = "undo #"
# The reject reasons the page offers (any short tag is accepted through the API).
REJECT_REASONS = (
    "blurry",
    "duplicate",
    "not a face",
    "occluded",
    "bad crop",
    "text or watermark",
    "extreme pose",
    "looks under 18",
    "other",
)
MAX_BATCH = 10_000  # one bulk selection; more is almost certainly a client bug
DEFAULT_TARGET = (
    1000  # faces wanted when nobody said otherwise (~1k is enough for StyleGAN2-ADA's small-data regime)
)
KEEP = object()  # decide(..., rating=KEEP): leave the rating as it is

# One writer at a time (decisions, undo, closing a round, manual faces): each reads the state the last left.
WRITE_LOCK = threading.RLock()


@dataclass
class Change:
    face_id: int
    decision: str
    previous: str
    rating: int | None = None


@dataclass
class Batch:
    """What one decide or undo call wrote."""

    reviewer: str
    decided_at: dt.datetime
    changes: list[Change] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # faces left alone (deleted, unknown, decided by others)
    undone: int | None = None  # for an undo: the batch key (first history row id) it reverted
    round_id: int | None = None  # the review round the batch belongs to

    def as_dict(self) -> dict:
        return {
            "reviewer": self.reviewer,
            "decided_at": self.decided_at.isoformat(),
            "changes": [
                {"face_id": c.face_id, "decision": c.decision, "previous": c.previous, "rating": c.rating}
                for c in self.changes
            ],
            "kept": self.kept,
            "undone": self.undone,
            "round_id": self.round_id,
        }

    @classmethod
    def start(cls, session, reviewer: str, *, undone: int | None = None) -> Batch:
        """A new batch of `reviewer`'s, at a time that names it (`_batch_time`) and in the open round (opened
        when none is)."""
        when = _batch_time(session, reviewer)
        return cls(reviewer, when, undone=undone, round_id=open_round_in(session, reviewer).id)

    def record(self, session, face: Face, decision: str, rating: int | None, reason: str | None) -> None:
        """Add the history row of this batch that moves `face` to `decision` and `rating`, and list the change.
        What it replaces is read from the face, so call this before changing the face."""
        self.changes.append(self._row(session, face, decision, rating, reason))

    def keep(self, session, face: Face, reason: str | None) -> None:
        """Add the history row that leaves `face` as it is (its decision and rating), and list it as kept."""
        self._row(session, face, face.decision or "undecided", face.rating, reason)
        self.kept.append(face.id)

    def _row(self, session, face: Face, decision: str, rating: int | None, reason: str | None) -> Change:
        change = Change(face.id, decision, face.decision or "undecided", rating)
        session.add(
            Decision(
                **asdict(change),
                reason=reason,
                previous_rating=face.rating,
                reviewer=self.reviewer,
                decided_at=self.decided_at,
                round_id=self.round_id,
            )
        )
        return change


class DecisionError(GhostsError):
    pass


class RoundClosed(DecisionError):
    """Undo reached a batch of a round that "Selection done" closed: that round's record stays as it is."""


def current_round(session) -> ReviewRound | None:
    """The open round (the newest, if several were left open)."""
    return first_row(session, select(ReviewRound).where(ReviewRound.done_at.is_(None)), ReviewRound.id.desc())


def last_round(session) -> ReviewRound | None:
    return first_row(session, select(ReviewRound), ReviewRound.id.desc())


def open_round_in(session, reviewer: str | None) -> ReviewRound:
    """The open review round, created (with the last round's target) when none is open."""
    rnd = current_round(session)
    if rnd is None:
        prev = last_round(session)
        rnd = ReviewRound(
            target=prev.target if prev and prev.target else DEFAULT_TARGET,
            reviewer=reviewer,
            started_at=utcnow(),
        )
        session.add(rnd)
        session.flush()
    return rnd


def check_rating(rating) -> int | None:
    if rating is None or rating == 0:
        return None
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise DecisionError("rating must be 1 to 5 (0 or none clears it)")
    return rating


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; every timestamp we write is UTC.
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def _batch_time(session, reviewer: str) -> dt.datetime:
    """Now, but strictly later than this reviewer's last history row, so a timestamp names one batch."""
    now = utcnow()
    # Newest row first along the primary key: quick for an active reviewer, whatever the history's length.
    last = _aware(
        first_row(
            session, select(Decision.decided_at).where(Decision.reviewer == reviewer), Decision.id.desc()
        )
    )
    if last is not None and now <= last:
        now = last + dt.timedelta(microseconds=1)
    return now


def check_reason(reason: str | None) -> str | None:
    if reason is None or reason == "":
        return None
    reason = reason.strip().lower()
    if not REASON_RE.match(reason):
        raise DecisionError(
            "reason must be a short tag: letters, digits, space, . _ - (at most 64 characters)"
        )
    return reason


def decide(
    ws, face_ids: Iterable[int], decision: str | None, reviewer: str, reason: str | None = None, rating=KEEP
) -> Batch:
    """Record `decision` for every face in `face_ids` as one batch (one undo step); return what changed.

    `decision` None keeps each face's decision (a rating step); `rating` 1-5 or None sets the rating, KEEP
    leaves it. Faces that are deleted or unknown are listed in `kept`. Deciding a face again simply overwrites
    it (last write wins); the history keeps both. The batch joins the open round (opening one if none is open).
    """
    if decision is not None and decision not in REVIEW_DECISIONS:
        raise DecisionError(f"unknown decision {decision!r}: use one of {', '.join(REVIEW_DECISIONS)}")
    if not reviewer:
        raise DecisionError("a decision needs a reviewer name")
    if decision is None and rating is KEEP:
        raise DecisionError("nothing to record: give a decision or a rating")
    reason = check_reason(reason)
    if rating is not KEEP:
        rating = check_rating(rating)
    ids = list(dict.fromkeys(int(i) for i in face_ids))
    if not ids:
        raise DecisionError("no faces given")
    if len(ids) > MAX_BATCH:
        raise DecisionError(f"at most {MAX_BATCH} faces per decision (got {len(ids)})")
    with WRITE_LOCK, ws.session() as s:
        batch = Batch.start(s, reviewer)
        faces = {f.id: f for f in s.scalars(select(Face).where(Face.id.in_(ids)))}
        for fid in ids:
            face = faces.get(fid)
            if face is None or face.deleted:
                batch.kept.append(fid)
                continue
            new = (face.decision or "undecided") if decision is None else decision
            new_rating = face.rating if rating is KEEP else rating
            batch.record(s, face, new, new_rating, reason if decision else face.reason)
            if decision is not None:
                face.decision = decision
                face.decided_at = batch.decided_at if decision != "undecided" else None
                face.reviewer = reviewer
                face.reason = reason
            face.rating = new_rating
    return _announce(ws, batch)


def _announce(ws, batch: Batch | None) -> Batch | None:
    """After a batch is saved: call the ON_ACCEPTED hooks with the faces it accepted (a decision, a keep-best,
    or an undo that restored an accepted face), if any."""
    changes = batch.changes if batch else []
    accepted = [c.face_id for c in changes if c.decision == "accepted" and c.previous != "accepted"]
    if accepted:
        for hook in ON_ACCEPTED:
            hook(ws, accepted)
    return batch


def _batches(session, reviewer: str, chunk: int = 500):
    """The reviewer's history as batches, newest first: (key, rows) with key the batch's first row id."""
    last_id = None
    current: list[Decision] = []
    while True:
        q = select(Decision).where(Decision.reviewer == reviewer).order_by(Decision.id.desc()).limit(chunk)
        if last_id is not None:
            q = q.where(Decision.id < last_id)
        rows = session.scalars(q).all()
        if not rows:
            break
        for row in rows:
            if current and row.decided_at != current[-1].decided_at:
                yield current[-1].id, current
                current = []
            current.append(row)
        last_id = rows[-1].id
    if current:
        yield current[-1].id, current


def _is_undo(rows: list[Decision]) -> bool:
    return bool(rows) and (rows[0].reason or "").startswith(UNDO_PREFIX)


def _round_of(session, row: Decision) -> ReviewRound | None:
    if row.round_id is not None:
        return session.get(ReviewRound, row.round_id)
    # History written before rounds were recorded on it: the first round closed after the row, if any.
    closed_after = select(ReviewRound).where(
        ReviewRound.done_at.is_not(None), ReviewRound.done_at >= row.decided_at
    )
    return first_row(session, closed_after, ReviewRound.id)


def undo_last(ws, reviewer: str) -> Batch | None:
    """Revert `reviewer`'s most recent batch that is not undone yet; None when there is nothing to undo.

    Raises RoundClosed when that batch belongs to a closed round (undo never rewrites a closed round)."""
    return _announce(ws, _undo_last(ws, reviewer))


def _undo_last(ws, reviewer: str) -> Batch | None:
    with WRITE_LOCK, ws.session() as s:
        undone: set[int] = set()
        target: tuple[int, list[Decision]] | None = None
        for key, rows in _batches(s, reviewer):
            if _is_undo(rows):
                undone.update(int(r.reason[len(UNDO_PREFIX) :]) for r in rows)
            elif key not in undone:
                target = (key, rows)
                break
        if target is None:
            return None
        key, rows = target
        rnd = _round_of(s, rows[0])
        if rnd is not None and rnd.done_at is not None:
            raise RoundClosed(
                f"your last decision belongs to review round {rnd.id}, closed by "
                f"{rnd.closed_by or rnd.reviewer or 'someone'}: a closed round is kept as it was"
            )
        batch = Batch.start(s, reviewer, undone=key)
        marker = f"{UNDO_PREFIX}{key}"
        for row in sorted(rows, key=lambda r: r.id):
            face = s.get(Face, row.face_id)
            if face is None:
                continue
            current = face.decision or "undecided"
            if face.deleted or current != row.decision or face.rating != row.rating:
                # Somebody decided (or deleted, or rated) this face after us: their write stands.
                batch.keep(s, face, marker)
                continue
            restored = row.previous or "undecided"
            earlier = select(Decision).where(Decision.face_id == face.id, Decision.id < row.id)
            before = first_row(s, earlier, Decision.id.desc())
            batch.record(s, face, restored, row.previous_rating, marker)
            face.rating = row.previous_rating
            face.decision = restored
            if restored == "undecided" or before is None:
                face.decided_at, face.reviewer, face.reason = None, None, None
            else:
                # Back to the state the earlier decision left, with its author and tag.
                face.decided_at = before.decided_at
                face.reviewer = before.reviewer
                face.reason = None if (before.reason or "").startswith(UNDO_PREFIX) else before.reason
        return batch


def duplicate_group(session, image_id: int) -> set[int]:
    """The photo and every photo linked to it by near-duplicate links, transitively."""
    from curation.catalog.schema import NearDuplicate

    group, todo = {image_id}, [image_id]
    while todo and len(group) < 500:
        cur = todo.pop()
        for a, b in session.execute(
            select(NearDuplicate.image_id, NearDuplicate.other_id).where(
                (NearDuplicate.image_id == cur) | (NearDuplicate.other_id == cur)
            )
        ).all():
            for other in (a, b):
                if other not in group:
                    group.add(other)
                    todo.append(other)
    return group


def keep_best(ws, face_id: int, reviewer: str) -> Batch:
    """In the near-duplicate group of `face_id`'s photo, accept the best-scoring live face and reject the
    others as `duplicate`: one batch, so one undo step."""
    return _announce(ws, _keep_best(ws, face_id, reviewer))


def _keep_best(ws, face_id: int, reviewer: str) -> Batch:
    with WRITE_LOCK, ws.session() as s:
        face = s.get(Face, face_id)
        if face is None or face.deleted:
            raise DecisionError(f"no face {face_id}")
        photos = duplicate_group(s, face.image_id)
        faces = s.scalars(
            select(Face)
            .join(Image, Face.image_id == Image.id)
            .where(Face.image_id.in_(photos), Face.deleted.is_(False), Image.status != "excluded")
            .order_by(Face.score.desc().nulls_last(), Face.id)
        ).all()
        if len(photos) < 2:
            raise DecisionError(f"photo {face.image_id} has no near duplicates")
        batch = Batch.start(s, reviewer)
        for k, f in enumerate(faces):
            decision, reason = ("accepted", None) if k == 0 else ("rejected", "duplicate")
            batch.record(s, f, decision, f.rating, reason)
            f.decision, f.decided_at, f.reviewer, f.reason = decision, batch.decided_at, reviewer, reason
        return batch


def accepted_per(column):
    """The query of accepted live faces (photo not taken down) per value of `column` (Image.owner, Image.query)."""
    return (
        select(column, func.count())
        .select_from(Face)
        .join(Image, Face.image_id == Image.id)
        .where(
            Face.deleted.is_(False),
            Image.status != "excluded",
            Face.decision == "accepted",
            column.is_not(None),
        )
        .group_by(column)
    )


def top_counts(session, column, limit: int = 3) -> list[tuple[str, int]]:
    """Accepted live faces per value of `column` (Image.owner, Image.query), largest first."""
    rows = session.execute(accepted_per(column).order_by(func.count().desc(), column).limit(limit)).all()
    return [(str(k), int(v)) for k, v in rows]


def decision_counts(session) -> dict[str, int]:
    """Live faces (not deleted, photo not taken down) per current decision, every decision present."""
    rows = session.execute(
        select(Face.decision, func.count())
        .join(Image, Face.image_id == Image.id)
        .where(Face.deleted.is_(False), Image.status != "excluded")
        .group_by(Face.decision)
    )
    counts = dict.fromkeys(REVIEW_DECISIONS, 0)
    for k, v in rows:
        counts[k or "undecided"] = counts.get(k or "undecided", 0) + int(v)
    counts["total"] = sum(counts[d] for d in REVIEW_DECISIONS)
    return counts


def delete_face(ws, face_id: int, reviewer: str, deleted: bool = True) -> bool:
    """Mark a wrong detection deleted (kept in the catalog for audit, hidden from review and freeze), or
    restore it (`deleted=False`: back in review with the decision it had)."""
    with WRITE_LOCK, ws.session() as s:
        face = s.get(Face, face_id)
        if face is None:
            return False
        face.deleted = deleted
        face.reviewer = reviewer
        face.decided_at = utcnow()
        return True
