"""People: the faces grouped by person (curation.analysis.identities), with a reviewer's merges and splits,
and the per-person and per-owner caps beside the counter.

- `/people`: one card per person (its best face, how many faces, how many accepted, over the cap or not);
  Enter shows the person's faces in the grid (`/?person=ID`), `m` merges the marked people into the one
  under the cursor. The grid, filtered to a person, splits the selected faces off into a new person (`x`).
- `/api/people`, `/api/people/{id}`: the same counts as JSON; `/api/people/of?ids=`: the faces' people (the
  grid sorted by person labels its tiles with them); `/api/people/merge`, `/api/people/split`;
  `/api/people/caps`: accepted faces of the largest people and accounts against the caps (GET), and the
  caps themselves (POST).

Merges and splits are authoritative: the next analysis keeps them (curation.catalog.people says how).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from curation.catalog.people import (
    caps_status,
    get_caps,
    merge_person,
    people_counts,
    set_caps,
    split_person,
    ungrouped_faces,
)
from curation.catalog.schema import Face
from curation.review.decisions import REJECT_REASONS
from curation.review.deps import MAX_ID, Ctx, IdPath
from curation.review.models import FaceId
from curation.review.security import csrf_token

router = APIRouter(tags=["people"])

MAX_SPLIT = 5000  # faces split off in one request
Cap = Annotated[int | None, Field(ge=1, le=10_000_000)]


class MergeIn(BaseModel):
    """Merge the `sources` people into `target` (their faces become `target`'s)."""

    target: FaceId
    sources: list[FaceId] = Field(..., min_length=1, max_length=1000)


class SplitIn(BaseModel):
    """Move these faces (all of one person) out into a new person."""

    face_ids: list[FaceId] = Field(..., min_length=1, max_length=MAX_SPLIT)


class CapsIn(BaseModel):
    """The caps to set; a field left out keeps its cap, null clears it."""

    max_per_person: Cap = None
    max_per_owner: Cap = None


def _people(ctx, persons=None) -> list[dict]:
    with ctx.ws.session() as s:
        caps = get_caps(s)
        rows = people_counts(s, persons)
    cap = caps["max_per_person"]
    return [{**p.as_dict(), "over_cap": cap is not None and p.accepted > cap} for p in rows]


def _summary(ctx) -> dict:
    with ctx.ws.session() as s:
        caps = caps_status(s)
        ungrouped = ungrouped_faces(s)
    people = _people(ctx)
    return {"people": people, "ungrouped": ungrouped, "caps": caps}


@router.get("/people", response_class=HTMLResponse)
def people_page(ctx: Ctx, request: Request) -> HTMLResponse:
    data = _summary(ctx)
    return ctx.templates.TemplateResponse(
        request,
        "people.html",
        {
            **data,
            "request": request,
            "csrf": csrf_token(ctx.guard, request),
            "counts": ctx.counts.counts(),
            "reviewer": ctx.config.reviewer,
            "reject_reasons": REJECT_REASONS,
            "view": "people",
        },
    )


@router.get("/api/people")
def list_people(ctx: Ctx) -> dict:
    """Every person with faces in review, the most faces first; faces not grouped yet; the caps."""
    return _summary(ctx)


@router.get("/api/people/caps")
def get_caps_status(ctx: Ctx) -> dict:
    """Accepted faces of the largest people and accounts, the caps, and who is above one."""
    with ctx.ws.session() as s:
        return caps_status(s)


@router.post("/api/people/caps")
def post_caps(ctx: Ctx, body: CapsIn) -> dict:
    with ctx.ws.session() as s:
        set_caps(s, **{k: getattr(body, k) for k in body.model_fields_set})
    with ctx.ws.session() as s:
        return caps_status(s)


@router.get("/api/people/of")
def people_of(
    ctx: Ctx, ids: Annotated[str, Query(max_length=8000, pattern=r"^\d+(,\d+)*$")]
) -> list[list[int | None]]:
    """[face id, person id] of these faces (at most 1000; None: not grouped yet), for the grid's labels."""
    wanted = [int(i) for i in ids.split(",")][:1000]
    if any(i > MAX_ID for i in wanted):
        raise HTTPException(422, "bad request: ids: not a catalog id")
    with ctx.ws.session() as s:
        rows = s.execute(select(Face.id, Face.person_id).where(Face.id.in_(wanted))).all()
    return [[f, p] for f, p in rows]


@router.get("/api/people/{person:int}")
def one_person(ctx: Ctx, person: IdPath) -> dict:
    found = _people(ctx, [person])
    if not found:
        raise HTTPException(404, f"no person {person} with faces in review")
    return found[0]


@router.post("/api/people/merge")
def post_merge(ctx: Ctx, body: MergeIn) -> dict:
    moved = merge_person(ctx.ws, body.sources, body.target)
    return {
        "target": body.target,
        "merged": sorted(set(body.sources) - {body.target}),
        "moved": moved,
        "person": _people(ctx, [body.target])[0],
    }


@router.post("/api/people/split")
def post_split(ctx: Ctx, body: SplitIn) -> dict:
    new, old = split_person(ctx.ws, body.face_ids)
    left, made = (_people(ctx, [p]) for p in (old, new))
    return {"person": made[0], "from": left[0], "moved": len(set(body.face_ids))}
