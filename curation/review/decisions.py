"""Review decisions: written to the catalog at once, with history, and undone from that history.

Every call to `decide` is one batch: all its `Decision` rows share one timestamp and reviewer, and the face
rows get the new current state. `undo_last` reverts a reviewer's most recent batch that is not yet undone, so
pressing undo repeatedly walks back through the batches (multi-level). Undo rows are ordinary history rows whose
reason is `undo #<id>` (the first row id of the batch they revert); nothing is deleted, so the audit trail
keeps every step. Two reviewers may work at once: the last write wins per face, and an undo never overwrites
a face somebody else has decided since (it records the face as kept instead).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import func, select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Decision, Face, Image, utcnow

REVIEW_DECISIONS = ("accepted", "rejected", "skipped", "undecided")
REASON_RE = re.compile(r"^[a-z0-9][a-z0-9 _.-]{0,63}$")  # short tags ("blurry", "duplicate"), never "#"
UNDO_PREFIX = "undo #"
# The reject reasons the page offers (any short tag is accepted through the API).
REJECT_REASONS = ("blurry", "duplicate", "not a face", "occluded", "bad crop", "text or watermark", "extreme pose",
                  "looks under 18", "other")
MAX_BATCH = 10_000  # one bulk selection; more is almost certainly a client bug


@dataclass
class Change:
    face_id: int
    decision: str
    previous: str


@dataclass
class Batch:
    """What one decide or undo call wrote."""

    reviewer: str
    decided_at: dt.datetime
    changes: list[Change] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # faces left alone (deleted, unknown, decided by others)
    undone: int | None = None  # for an undo: the batch key (first history row id) it reverted

    def as_dict(self) -> dict:
        return {
            "reviewer": self.reviewer,
            "decided_at": self.decided_at.isoformat(),
            "changes": [{"face_id": c.face_id, "decision": c.decision, "previous": c.previous} for c in self.changes],
            "kept": self.kept,
            "undone": self.undone,
        }


class DecisionError(GhostsError):
    pass


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    # SQLite hands back naive datetimes; every timestamp we write is UTC.
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def _batch_time(session, reviewer: str) -> dt.datetime:
    """Now, but strictly later than this reviewer's last history row, so a timestamp names one batch."""
    now = utcnow()
    # Newest row first along the primary key: quick for an active reviewer, whatever the history's length.
    last = _aware(session.scalar(select(Decision.decided_at).where(Decision.reviewer == reviewer)
                                 .order_by(Decision.id.desc()).limit(1)))
    if last is not None and now <= last:
        now = last + dt.timedelta(microseconds=1)
    return now


def check_reason(reason: str | None) -> str | None:
    if reason is None or reason == "":
        return None
    reason = reason.strip().lower()
    if not REASON_RE.match(reason):
        raise DecisionError("reason must be a short tag: letters, digits, space, . _ - (at most 64 characters)")
    return reason


def decide(ws, face_ids: Iterable[int], decision: str, reviewer: str, reason: str | None = None) -> Batch:
    """Record `decision` for every face in `face_ids` as one batch (one undo step); return what changed.

    Faces that are deleted or unknown are listed in `kept`. Deciding a face again simply overwrites it (last
    write wins); the history keeps both.
    """
    if decision not in REVIEW_DECISIONS:
        raise DecisionError(f"unknown decision {decision!r}: use one of {', '.join(REVIEW_DECISIONS)}")
    if not reviewer:
        raise DecisionError("a decision needs a reviewer name")
    reason = check_reason(reason)
    ids = list(dict.fromkeys(int(i) for i in face_ids))
    if not ids:
        raise DecisionError("no faces given")
    if len(ids) > MAX_BATCH:
        raise DecisionError(f"at most {MAX_BATCH} faces per decision (got {len(ids)})")
    with ws.session() as s:
        when = _batch_time(s, reviewer)
        batch = Batch(reviewer, when)
        faces = {f.id: f for f in s.scalars(select(Face).where(Face.id.in_(ids)))}
        for fid in ids:
            face = faces.get(fid)
            if face is None or face.deleted:
                batch.kept.append(fid)
                continue
            previous = face.decision or "undecided"
            s.add(Decision(face_id=fid, decision=decision, previous=previous, reason=reason, reviewer=reviewer,
                           decided_at=when))
            face.decision = decision
            face.decided_at = when if decision != "undecided" else None
            face.reviewer = reviewer
            face.reason = reason
            batch.changes.append(Change(fid, decision, previous))
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


def undo_last(ws, reviewer: str) -> Batch | None:
    """Revert `reviewer`'s most recent batch that is not undone yet; None when there is nothing to undo."""
    with ws.session() as s:
        undone: set[int] = set()
        target: tuple[int, list[Decision]] | None = None
        for key, rows in _batches(s, reviewer):
            if _is_undo(rows):
                undone.update(int(r.reason[len(UNDO_PREFIX):]) for r in rows)
            elif key not in undone:
                target = (key, rows)
                break
        if target is None:
            return None
        key, rows = target
        when = _batch_time(s, reviewer)
        batch = Batch(reviewer, when, undone=key)
        marker = f"{UNDO_PREFIX}{key}"
        for row in sorted(rows, key=lambda r: r.id):
            face = s.get(Face, row.face_id)
            if face is None:
                continue
            current = face.decision or "undecided"
            if face.deleted or current != row.decision:
                # Somebody decided (or deleted) this face after us: their write stands.
                s.add(Decision(face_id=face.id, decision=current, previous=current, reason=marker,
                               reviewer=reviewer, decided_at=when))
                batch.kept.append(face.id)
                continue
            restored = row.previous or "undecided"
            before = s.scalars(
                select(Decision).where(Decision.face_id == face.id, Decision.id < row.id).order_by(Decision.id.desc())
                .limit(1)
            ).first()
            s.add(Decision(face_id=face.id, decision=restored, previous=current, reason=marker, reviewer=reviewer,
                           decided_at=when))
            face.decision = restored
            if restored == "undecided" or before is None:
                face.decided_at, face.reviewer, face.reason = None, None, None
            else:
                # Back to the state the earlier decision left, with its author and tag.
                face.decided_at = before.decided_at
                face.reviewer = before.reviewer
                face.reason = None if (before.reason or "").startswith(UNDO_PREFIX) else before.reason
            batch.changes.append(Change(face.id, restored, current))
        return batch


def decision_counts(session) -> dict[str, int]:
    """Live faces (not deleted, photo not taken down) per current decision, every decision present."""
    rows = session.execute(
        select(Face.decision, func.count()).join(Image, Face.image_id == Image.id)
        .where(Face.deleted.is_(False), Image.status != "excluded").group_by(Face.decision)
    )
    counts = dict.fromkeys(REVIEW_DECISIONS, 0)
    for k, v in rows:
        counts[k or "undecided"] = counts.get(k or "undecided", 0) + int(v)
    counts["total"] = sum(counts[d] for d in REVIEW_DECISIONS)
    return counts


def delete_face(ws, face_id: int, reviewer: str) -> bool:
    """Mark a wrong detection deleted (kept in the catalog for audit, hidden from review and freeze)."""
    with ws.session() as s:
        face = s.get(Face, face_id)
        if face is None:
            return False
        face.deleted = True
        face.reviewer = reviewer
        face.decided_at = utcnow()
        return True
