"""Faces and decisions as JSON: what the page's script (and any other script) calls."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from sqlalchemy import select

from curation.catalog.schema import Face
from curation.review.decisions import decide, delete_face, undo_last
from curation.review.deps import Ctx, ReviewContext
from curation.review.grid import GridQuery, list_faces
from curation.review.models import BatchOut, ChangeOut, Counts, DecideIn, DecideManyIn, FaceState
from curation.review.security import csrf_token
from curation.review.selection import current_round, open_round, review_counts

router = APIRouter(prefix="/api", tags=["faces"])


def counts(ctx: ReviewContext) -> Counts:
    return Counts(**review_counts(ctx.ws))


def _ensure_round(ctx: ReviewContext) -> None:
    # Decisions after "Selection done" belong to a new round (same target).
    with ctx.ws.session() as s:
        if current_round(s) is not None:
            return
    open_round(ctx.ws, reviewer=ctx.config.reviewer)


def _batch_out(ctx: ReviewContext, batch) -> BatchOut:
    return BatchOut(
        changes=[ChangeOut(face_id=c.face_id, decision=c.decision, previous=c.previous) for c in batch.changes],
        kept=batch.kept, undone=batch.undone, counts=counts(ctx),
    )


@router.get("/csrf")
def get_csrf(ctx: Ctx, request: Request) -> dict:
    """A fresh CSRF token for this browser (after a server restart; cross-site pages cannot read it)."""
    return {"csrf": csrf_token(ctx.guard, request)}


@router.get("/counts", response_model=Counts)
def get_counts(ctx: Ctx) -> Counts:
    return counts(ctx)


@router.get("/faces")
def get_faces(ctx: Ctx, q: Annotated[GridQuery, Query()]) -> dict:
    """One grid page as JSON (same sort and filters as the page)."""
    with ctx.ws.session() as s:
        page = list_faces(s, q, ctx.config.per_page)
    return {
        "page": q.page, "pages": page.pages, "total": page.total, "per_page": page.per_page,
        "faces": [
            {"id": t.id, "image_id": t.image_id, "decision": t.decision, "score": t.score, "flagged": t.flagged,
             "manual": t.manual, "hints": t.hints, "tag": t.tag, "owner": t.owner, "likes": t.likes,
             "source": t.source, "reviewer": t.reviewer, "preview": f"/faces/{t.id}/preview"}
            for t in page.tiles
        ],
    }


@router.get("/faces/state", response_model=list[FaceState])
def face_states(ctx: Ctx, ids: Annotated[str, Query(max_length=8000, pattern=r"^\d+(,\d+)*$")]) -> list[FaceState]:
    """Current decisions of the faces on screen, so a page follows another reviewer's changes."""
    wanted = [int(i) for i in ids.split(",")][:1000]
    with ctx.ws.session() as s:
        rows = s.execute(select(Face.id, Face.decision, Face.reviewer, Face.deleted).where(Face.id.in_(wanted))).all()
    return [FaceState(id=i, decision=d or "undecided", reviewer=r, deleted=bool(x)) for i, d, r, x in rows]


@router.post("/decisions", response_model=BatchOut)
def post_decisions(ctx: Ctx, body: DecideIn) -> BatchOut:
    _ensure_round(ctx)
    batch = decide(ctx.ws, body.face_ids, body.decision, ctx.config.reviewer, body.reason)
    return _batch_out(ctx, batch)


@router.post("/decisions/many", response_model=BatchOut)
def post_decisions_many(ctx: Ctx, body: DecideManyIn) -> BatchOut:
    """Apply the items in order, each as its own batch; answer with all their changes and the counts."""
    _ensure_round(ctx)
    changes, kept = [], []
    for item in body.items:
        batch = decide(ctx.ws, item.face_ids, item.decision, ctx.config.reviewer, item.reason)
        changes += [ChangeOut(face_id=c.face_id, decision=c.decision, previous=c.previous) for c in batch.changes]
        kept += batch.kept
    return BatchOut(changes=changes, kept=kept, counts=counts(ctx))


@router.post("/undo", response_model=BatchOut)
def post_undo(ctx: Ctx) -> BatchOut:
    batch = undo_last(ctx.ws, ctx.config.reviewer)
    if batch is None:
        raise HTTPException(409, "nothing to undo")
    return _batch_out(ctx, batch)


@router.post("/faces/{face_id:int}/delete", response_model=Counts)
def post_delete(ctx: Ctx, face_id: int) -> Counts:
    if not delete_face(ctx.ws, face_id, ctx.config.reviewer):
        raise HTTPException(404, f"no face {face_id}")
    return counts(ctx)
