"""The review round: its state, and "Selection done"."""

from __future__ import annotations

from fastapi import APIRouter

from curation.catalog.schema import ReviewRound
from curation.review.deps import Ctx
from curation.review.models import RoundOut
from curation.review.selection import current_round, finish_round, last_round

router = APIRouter(prefix="/api", tags=["rounds"])


def _out(rnd: ReviewRound, message: str, resumed: bool | None = None) -> RoundOut:
    return RoundOut(
        id=rnd.id,
        target=rnd.target,
        accepted=rnd.accepted,
        reviewer=rnd.reviewer,
        done=rnd.done_at is not None,
        flow_run_id=rnd.flow_run_id,
        message=message,
        resumed=resumed,
    )


@router.get("/round", response_model=RoundOut | None)
def get_round(ctx: Ctx) -> RoundOut | None:
    with ctx.ws.session() as s:
        rnd = current_round(s) or last_round(s)
        return _out(rnd, "open" if rnd.done_at is None else "done") if rnd else None


@router.post("/rounds/complete", response_model=RoundOut)
def post_complete(ctx: Ctx) -> RoundOut:
    done = finish_round(ctx.ws, ctx.config.reviewer, ctx.resume)
    return _out(done.round, done.note, done.resumed if done.round.flow_run_id else None)
