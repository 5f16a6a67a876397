"""Pictures by catalog id (previews, photos) and the manual crop made from four clicks on a photo."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from curation.review.deps import Ctx, IdPath
from curation.review.manual import add_manual_face, loupe_jpegs, manual_preview_jpeg
from curation.review.media import PHOTO_MAX_SIDE, THUMB_MAX_SIDE, preview_file
from curation.review.models import ManualFaceOut, ManualPointsIn
from curation.review.routers.api import counts

router = APIRouter(tags=["media"])

# Previews and photos never change under an id (a new crop is a new face), so browsers may keep them a day;
# private: they are people's photos, not for shared caches.
IMAGE_CACHE = "private, max-age=86400"


# `{face_id:int}` matches digits only: any other path (a traversal attempt included) is a plain 404.
@router.get("/faces/{face_id:int}/preview")
def face_preview(ctx: Ctx, face_id: IdPath) -> FileResponse:
    path = preview_file(ctx.ws, face_id)
    media = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    return FileResponse(path, media_type=media, headers={"cache-control": IMAGE_CACHE})


@router.get("/faces/{face_id:int}/loupe")
def face_loupe(
    ctx: Ctx,
    face_id: IdPath,
    part: Annotated[Literal["aligned", "region"], Query()] = "aligned",
    size: Annotated[int, Query(ge=64, le=1024)] = 512,
) -> Response:
    """The 100% loupe: the aligned crop at the dataset side, or the photo region at its own pixels."""
    aligned, region = loupe_jpegs(ctx.ws, face_id, size)
    return Response(
        aligned if part == "aligned" else region,
        media_type="image/jpeg",
        headers={"cache-control": IMAGE_CACHE},
    )


@router.get("/images/{image_id:int}/photo")
def photo(
    ctx: Ctx, image_id: IdPath, size: Annotated[Literal["full", "thumb"], Query()] = "full"
) -> Response:
    data = ctx.photos.get(ctx.ws, image_id, PHOTO_MAX_SIDE if size == "full" else THUMB_MAX_SIDE)
    return Response(data, media_type="image/jpeg", headers={"cache-control": IMAGE_CACHE})


@router.post("/api/images/{image_id:int}/manual/preview")
def manual_preview(ctx: Ctx, image_id: IdPath, body: ManualPointsIn) -> Response:
    """The aligned crop the four points would give, before anything is saved."""
    data, quad, reordered = manual_preview_jpeg(ctx.ws, image_id, body.model_dump())
    return Response(
        data,
        media_type="image/jpeg",
        headers={
            "cache-control": "no-store",
            "x-ghosts-quad": json.dumps(quad),
            "x-ghosts-reordered": "1" if reordered else "0",
        },
    )


@router.post("/api/images/{image_id:int}/manual", response_model=ManualFaceOut)
def manual_save(ctx: Ctx, image_id: IdPath, body: ManualPointsIn) -> ManualFaceOut:
    face = add_manual_face(ctx.ws, image_id, body.model_dump(), ctx.config.reviewer)
    return ManualFaceOut(
        face_id=face.id, image_id=face.image_id, quad=face.quad, score=face.score, counts=counts(ctx)
    )
