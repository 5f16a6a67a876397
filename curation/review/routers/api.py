"""Faces and decisions as JSON: what the page's script (and any other script) calls."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from curation.catalog.schema import Face
from curation.review.decisions import KEEP, RoundClosed, decide, delete_face, keep_best, undo_last
from curation.review.deps import MAX_ID, Ctx, IdPath, OptionalIdQuery, ReviewContext
from curation.review.grid import GridQuery, list_faces
from curation.review.models import BatchOut, ChangeOut, Counts, DecideIn, DecideManyIn, FaceState
from curation.review.security import csrf_token

router = APIRouter(prefix="/api", tags=["faces"])


def counts(ctx: ReviewContext) -> Counts:
    return Counts(**ctx.counts.counts())


def _change(c) -> ChangeOut:
    return ChangeOut(face_id=c.face_id, decision=c.decision, previous=c.previous, rating=c.rating)


def _batch_out(ctx: ReviewContext, batch, figures: dict) -> BatchOut:
    return BatchOut(
        changes=[_change(c) for c in batch.changes],
        kept=batch.kept,
        undone=batch.undone,
        round_id=batch.round_id,
        counts=Counts(**figures),
    )


INLINE_FACES = 200  # decisions of up to this many faces run on the event loop (see _write)


async def _write(faces: int, fn):
    """Run a decision write. One of a few faces is a few milliseconds of SQLite: it runs right here on the
    event loop, since handing it to the thread pool and back cost more than the write on a loaded machine
    (the key press to saved decision figure). A bulk one (all matching a filter) goes to the thread pool, so
    it never holds up the images being served meanwhile."""
    return fn() if faces <= INLINE_FACES else await run_in_threadpool(fn)


def _decide(ctx: ReviewContext, item: DecideIn):
    # Decisions after "Selection done" go into the next round (decide opens it, same target).
    rating = item.rating if "rating" in item.model_fields_set else KEEP
    return decide(ctx.ws, item.face_ids, item.decision, ctx.config.reviewer, item.reason, rating=rating)


@router.get("/csrf")
def get_csrf(ctx: Ctx, request: Request) -> dict:
    """A fresh CSRF token for this browser (after a server restart; cross-site pages cannot read it)."""
    return {"csrf": csrf_token(ctx.guard, request)}


@router.get("/sign")
def get_signed(
    ctx: Ctx, url: Annotated[str, Query(max_length=2000, pattern=r"^/([^/\\\s][^\s]*)?$")]
) -> dict:
    """A signed link to one of our own pages (the script re-signs links before following them); only local
    paths: `//host` and `/\\host` are refused, so nothing can be turned into an off-site link."""
    return {"url": ctx.guard.sign(url)}


@router.get("/counts", response_model=Counts)
def get_counts(ctx: Ctx) -> Counts:
    return counts(ctx)


@router.get("/faces")
def get_faces(ctx: Ctx, q: Annotated[GridQuery, Query()]) -> dict:
    """One grid page as JSON (same sort and filters as the page)."""
    with ctx.ws.session() as s:
        page = list_faces(s, q, ctx.config.per_page, snapshots=ctx.snapshots)
    return {
        "page": q.page,
        "pages": page.pages,
        "snap": page.query.snap,
        "total": page.total,
        "per_page": page.per_page,
        "faces": [
            {
                "id": t.id,
                "image_id": t.image_id,
                "decision": t.decision,
                "score": t.score,
                "flagged": t.flagged,
                "manual": t.manual,
                "hints": t.hints,
                "tag": t.tag,
                "owner": t.owner,
                "likes": t.likes,
                "source": t.source,
                "reviewer": t.reviewer,
                "rating": t.rating,
                "preview": f"/faces/{t.id}/preview",
            }
            for t in page.tiles
        ],
    }


@router.get("/snapshots/{snap}")
def snapshot_ids(ctx: Ctx, snap: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{8,32}$")]) -> dict:
    """Every face id of a grid snapshot still in review (for "select all matching the filter")."""
    ids = ctx.snapshots.get(snap)
    if ids is None:
        raise HTTPException(404, "this grid listing is gone (server restarted?): reload the page")
    live = set()
    with ctx.ws.session() as s:
        for k in range(0, len(ids), 5000):
            live.update(
                s.scalars(select(Face.id).where(Face.id.in_(ids[k : k + 5000]), Face.deleted.is_(False)))
            )
    return {"snap": snap, "ids": [i for i in ids if i in live]}


@router.get("/faces/state", response_model=list[FaceState])
def face_states(
    ctx: Ctx, ids: Annotated[str, Query(max_length=8000, pattern=r"^\d+(,\d+)*$")]
) -> list[FaceState]:
    """Current decisions of the faces on screen, so a page follows another reviewer's changes."""
    wanted = [int(i) for i in ids.split(",")][:1000]
    if any(i > MAX_ID for i in wanted):
        raise HTTPException(422, "bad request: ids: not a catalog id")
    with ctx.ws.session() as s:
        rows = s.execute(
            select(Face.id, Face.decision, Face.reviewer, Face.deleted).where(Face.id.in_(wanted))
        ).all()
    return [FaceState(id=i, decision=d or "undecided", reviewer=r, deleted=bool(x)) for i, d, r, x in rows]


@router.post("/decisions", response_model=BatchOut)
async def post_decisions(ctx: Ctx, body: DecideIn) -> BatchOut:
    return await _write(
        len(body.face_ids), lambda: _batch_out(ctx, *ctx.counts.write(lambda: _decide(ctx, body)))
    )


@router.post("/decisions/many", response_model=BatchOut)
async def post_decisions_many(ctx: Ctx, body: DecideManyIn) -> BatchOut:
    """Apply the items in order, each as its own batch; answer with all their changes and the counts."""

    def run() -> BatchOut:
        changes, kept, round_id, figures = [], [], None, None
        for item in body.items:
            batch, figures = ctx.counts.write(lambda item=item: _decide(ctx, item))
            changes += [_change(c) for c in batch.changes]
            kept += batch.kept
            round_id = batch.round_id
        return BatchOut(changes=changes, kept=kept, round_id=round_id, counts=Counts(**figures))

    return await _write(sum(len(i.face_ids) for i in body.items), run)


@router.post("/faces/{face_id:int}/keep-best", response_model=BatchOut)
def post_keep_best(ctx: Ctx, face_id: IdPath) -> BatchOut:
    """Near duplicates: accept the best face of the group, reject the rest as duplicates (one undo step)."""
    return _batch_out(ctx, *ctx.counts.write(lambda: keep_best(ctx.ws, face_id, ctx.config.reviewer)))


@router.post("/undo", response_model=BatchOut)
def post_undo(ctx: Ctx) -> BatchOut:
    try:
        batch, figures = ctx.counts.write(lambda: undo_last(ctx.ws, ctx.config.reviewer))
    except RoundClosed as e:
        raise HTTPException(409, str(e)) from None
    if batch is None:
        raise HTTPException(409, "nothing to undo")
    return _batch_out(ctx, batch, figures)


@router.post("/faces/{face_id:int}/delete", response_model=Counts)
def post_delete(ctx: Ctx, face_id: IdPath) -> Counts:
    if not delete_face(ctx.ws, face_id, ctx.config.reviewer):
        raise HTTPException(404, f"no face {face_id}")
    return counts(ctx)


@router.post("/faces/{face_id:int}/restore", response_model=Counts)
def post_restore(ctx: Ctx, face_id: IdPath) -> Counts:
    """Bring a deleted face back into review, with the decision it had."""
    if not delete_face(ctx.ws, face_id, ctx.config.reviewer, deleted=False):
        raise HTTPException(404, f"no face {face_id}")
    return counts(ctx)


@router.get("/faces/deleted")
def deleted_faces(ctx: Ctx, image_id: OptionalIdQuery = None) -> list[dict]:
    """Deleted faces (of one photo, or the newest 200), so the page can offer to restore them."""
    q = select(Face.id, Face.image_id, Face.reviewer).where(Face.deleted.is_(True))
    if image_id is not None:
        q = q.where(Face.image_id == image_id)
    with ctx.ws.session() as s:
        rows = s.execute(q.order_by(Face.decided_at.desc().nulls_last(), Face.id.desc()).limit(200)).all()
    return [{"id": i, "image_id": img, "deleted_by": r} for i, img, r in rows]
