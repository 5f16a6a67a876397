"""The HTML pages: the face grid, photos (to crop the faces the detector missed) and the detail view."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from curation.catalog.flags import thresholds_for
from curation.catalog.schema import Face, Image
from curation.review.decisions import REJECT_REASONS
from curation.review.deps import Ctx, IdPath, OptionalIdQuery, ReviewContext
from curation.review.detail import photo_detail
from curation.review.grid import FLAG_LABELS, SORT_LABELS, GridQuery, facet_values, list_faces
from curation.review.media import preview_data_uris
from curation.review.security import csrf_token

router = APIRouter(tags=["pages"])

INLINE_PREVIEWS = 12  # the first row of tiles on most screens (168-px tiles: 8 at 1440 px, 11 at 1920 px)


def _page(ctx: ReviewContext, request: Request, name: str, **data) -> HTMLResponse:
    data.update(
        request=request,
        csrf=csrf_token(ctx.guard, request),
        counts=ctx.counts.counts(),
        reviewer=ctx.config.reviewer,
        reject_reasons=REJECT_REASONS,
    )
    return ctx.templates.TemplateResponse(request, name, data)


@router.get("/", response_class=HTMLResponse)
def grid(ctx: Ctx, request: Request, q: Annotated[GridQuery, Query()]) -> HTMLResponse:
    with ctx.ws.session() as s:
        th = thresholds_for(s)
        page = list_faces(s, q, ctx.config.per_page, th, snapshots=ctx.snapshots)
        facets = facet_values(s)
    # The first row's previews inside the page: they paint with it, before any image request.
    inline = preview_data_uris(ctx.ws, [t.id for t in page.tiles[:INLINE_PREVIEWS]])
    return _page(
        ctx,
        request,
        "grid.html",
        page=page,
        q=page.query,
        facets=facets,
        sort_labels=SORT_LABELS,
        target_size=th.target_size,
        flag_labels=FLAG_LABELS,
        inline=inline,
        view="faces",
    )


class PhotoQuery(BaseModel):
    status: Literal["no_face", "analyzed", "new", "all"] = "no_face"
    page: int = Field(1, ge=1, le=100_000)


@router.get("/photos", response_class=HTMLResponse)
def photos(ctx: Ctx, request: Request, q: Annotated[PhotoQuery, Query()]) -> HTMLResponse:
    """Photos by status (default: those where no face was found), to add faces by hand."""
    per_page = ctx.config.per_page
    conds = [Image.path.is_not(None), Image.status != "excluded"]
    if q.status != "all":
        conds.append(Image.status == q.status)
    with ctx.ws.session() as s:
        total = s.scalar(select(func.count(Image.id)).where(*conds)) or 0
        faces = func.count(Face.id).filter(Face.deleted.is_(False))
        rows = s.execute(
            select(Image.id, Image.query, Image.owner, Image.status, faces)
            .outerjoin(Face, Face.image_id == Image.id)
            .where(*conds)
            .group_by(Image.id)
            .order_by(Image.id)
            .limit(per_page)
            .offset((q.page - 1) * per_page)
        ).all()
    pages = max(1, -(-total // per_page))
    return _page(ctx, request, "photos.html", rows=rows, q=q, total=total, pages=pages, view="photos")


def _detail(ctx: ReviewContext, image_id: int, face: int | None):
    detail = photo_detail(ctx.ws, image_id, focus=face)
    if detail is None:
        raise HTTPException(404, f"no image {image_id}")
    return detail


@router.get("/images/{image_id:int}", response_class=HTMLResponse)
def detail_page(ctx: Ctx, request: Request, image_id: IdPath, face: OptionalIdQuery = None) -> HTMLResponse:
    return _page(ctx, request, "detail.html", d=_detail(ctx, image_id, face), view="detail")


@router.get("/images/{image_id:int}/panel", response_class=HTMLResponse)
def detail_panel(ctx: Ctx, request: Request, image_id: IdPath, face: OptionalIdQuery = None) -> HTMLResponse:
    """The detail view as a fragment, for the grid's overlay."""
    return ctx.templates.TemplateResponse(request, "panel.html", {"d": _detail(ctx, image_id, face)})
