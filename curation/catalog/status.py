"""What is in a workspace, counted: images by status and source, faces, decisions, datasets, runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from curation.catalog.flags import flagged_condition, thresholds_for
from curation.catalog.schema import (
    DatasetVersion,
    Decision,
    Face,
    Image,
    NearDuplicate,
    ReviewRound,
    TrainingRun,
    count_by,
)

ID_CHUNK = 5000  # ids per IN (...) query: far below SQLite's bound-parameter limit


def workspace_status(ws) -> dict[str, Any]:
    with ws.session() as s:
        live_faces = Face.deleted.is_(False)
        datasets = s.execute(
            select(
                DatasetVersion.name,
                DatasetVersion.version,
                DatasetVersion.resolution,
                DatasetVersion.count,
                DatasetVersion.path,
                DatasetVersion.superseded_reason,
            ).order_by(DatasetVersion.name, DatasetVersion.version)
        ).all()
        latest = {n: v for n, v, *_ in datasets}  # ordered by version: the last one wins
        return {
            "workspace": str(ws.root),
            "images": {
                "total": s.scalar(select(func.count()).select_from(Image)) or 0,
                "by_status": count_by(s, Image.status),
                "by_source": count_by(s, Image.source_kind),
                "by_tag": {k: v for k, v in count_by(s, Image.query).items() if k != "None"},
                "near_duplicate_links": s.scalar(select(func.count()).select_from(NearDuplicate)) or 0,
            },
            "faces": {
                "total": s.scalar(select(func.count()).select_from(Face).where(live_faces)) or 0,
                "manual": s.scalar(select(func.count()).select_from(Face).where(live_faces, Face.manual))
                or 0,
                # under the workspace's target size now, not the one the analysis ran with
                "flagged": s.scalar(
                    select(func.count())
                    .select_from(Face)
                    .where(live_faces, flagged_condition(thresholds_for(s)))
                )
                or 0,
                "by_decision": {
                    k: v
                    for k, v in s.execute(
                        select(Face.decision, func.count()).where(live_faces).group_by(Face.decision)
                    ).all()
                },
            },
            "decisions_recorded": s.scalar(select(func.count()).select_from(Decision)) or 0,
            "datasets": [
                {
                    "name": n,
                    "version": v,
                    "resolution": r,
                    "count": c,
                    "path": p,
                    "state": version_state(ws, p, why, latest[n] == v),
                    "superseded_reason": why,
                }
                for n, v, r, c, p, why in datasets
            ],
            "training_runs": count_by(s, TrainingRun.status),
            "review_rounds": review_rounds(s),
            "people": people_counts(s),
        }


def people_counts(session) -> dict[str, Any]:
    """People among the live faces (grouped by curation.analysis.identities): how many, and the largest
    person's faces and share of the faces that have a person."""
    rows = session.execute(
        select(Face.person_id, func.count())
        .where(Face.deleted.is_(False), Face.person_id.is_not(None))
        .group_by(Face.person_id)
    ).all()
    grouped = sum(n for _, n in rows)
    largest = max((n for _, n in rows), default=0)
    return {
        "people": len(rows),
        "faces_grouped": grouped,
        "largest_faces": largest,
        "largest_share": round(largest / grouped, 4) if grouped else 0.0,
    }


def people_line(p: dict[str, Any]) -> str:
    """The `ghosts status` line for the people."""
    if not p["people"]:
        return "people   0 (no face grouped yet: ghosts analyze groups them)"
    return (
        f"people   {p['people']}  largest {p['largest_faces']} faces = {100 * p['largest_share']:.1f}% "
        f"of {p['faces_grouped']} grouped faces"
    )


def newest_rounds(session, limit: int) -> list[tuple[ReviewRound, int]]:
    """The newest `limit` review rounds, newest first, each with the number of decisions recorded in it
    (for `ghosts status` here and the review page's round history)."""
    rounds = session.scalars(select(ReviewRound).order_by(ReviewRound.id.desc()).limit(limit)).all()
    if not rounds:
        return []
    made = dict(
        session.execute(
            select(Decision.round_id, func.count())
            .where(Decision.round_id.in_([r.id for r in rounds]))
            .group_by(Decision.round_id)
        ).all()
    )
    return [(r, int(made.get(r.id, 0))) for r in rounds]


def review_rounds(session, limit: int = 10) -> list[dict[str, Any]]:
    """The newest review rounds, newest first: opened, closed, by whom, accepted at closing, decisions in it."""

    def iso(t):
        return t.isoformat(sep=" ", timespec="minutes") if t else None

    return [
        {
            "id": r.id,
            "state": "open" if r.done_at is None else "closed",
            "opened": iso(r.started_at),
            "opened_by": r.reviewer,
            "closed": iso(r.done_at),
            "closed_by": r.closed_by,
            "accepted": r.accepted,
            "target": r.target,
            "decisions": decisions,
        }
        for r, decisions in newest_rounds(session, limit)
    ]


def round_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """`ghosts status` lines for the review rounds, newest first."""
    out = []
    for r in rounds:
        if r["state"] == "open":
            out.append(
                f"round    {r['id']} open since {r['opened']}"
                + (f" by {r['opened_by']}" if r["opened_by"] else "")
                + f", target {r['target']}, {r['decisions']} decisions so far"
            )
        else:
            out.append(
                f"round    {r['id']} closed {r['closed']} by {r['closed_by'] or '?'}: {r['accepted']} accepted "
                f"of target {r['target']} (opened {r['opened']}, {r['decisions']} decisions)"
            )
    return out


def version_state(ws, path: str, superseded_reason: str | None, is_latest: bool) -> str:
    """current (the latest version, its archive on disk), older (a later version exists), superseded (a
    takedown replaced it), purged (superseded and its archive deleted), or missing (the archive is gone
    though nothing removed it)."""
    on_disk = ws.abspath(path).is_file()
    if superseded_reason:
        return "superseded" if on_disk else "purged"
    if not on_disk:
        return "missing"
    return "current" if is_latest else "older"


def pending_image_ids(ws) -> list[int]:
    """Ids of stored images not analysed yet (status `new`), oldest first."""
    with ws.session() as s:
        return list(
            s.scalars(
                select(Image.id).where(Image.status == "new", Image.path.is_not(None)).order_by(Image.id)
            )
        )


@dataclass
class BatchOutcome:
    """What became of a batch of images: counts by status and reject reason, and their live faces."""

    by_status: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    faces: list[tuple[int, str | None, float | None]] = field(
        default_factory=list
    )  # (id, preview, score), best first


def batch_outcome(ws, image_ids: list[int]) -> BatchOutcome:
    """Counts and faces of `image_ids` (queried in chunks, so any number of ids works)."""
    out = BatchOutcome()
    with ws.session() as s:
        for start in range(0, len(image_ids), ID_CHUNK):
            ids = image_ids[start : start + ID_CHUNK]
            for status, n in s.execute(
                select(Image.status, func.count()).where(Image.id.in_(ids)).group_by(Image.status)
            ):
                out.by_status[status] = out.by_status.get(status, 0) + n
            for reason, n in s.execute(
                select(Image.reject_reason, func.count())
                .where(Image.id.in_(ids), Image.reject_reason.is_not(None))
                .group_by(Image.reject_reason)
            ):
                out.reasons[reason] = out.reasons.get(reason, 0) + n
            out.faces += s.execute(
                select(Face.id, Face.preview_path, Face.score).where(
                    Face.image_id.in_(ids), Face.deleted.is_(False)
                )
            ).all()
    out.faces.sort(key=lambda f: (f[2] is None, -(f[2] or 0.0), f[0]))  # best score first
    return out
