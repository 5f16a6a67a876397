"""What goes in and out of the review API (validated at the HTTP edge, trusted inside)."""
from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from curation.catalog.errors import GhostsError
from curation.review.decisions import MAX_BATCH, check_reason

Point = tuple[float, float]


class DecideIn(BaseModel):
    face_ids: list[int] = Field(..., min_length=1, max_length=MAX_BATCH)
    decision: Literal["accepted", "rejected", "skipped", "undecided"]
    reason: str | None = Field(None, max_length=64)

    @field_validator("reason")
    @classmethod
    def _reason(cls, v: str | None) -> str | None:
        try:
            return check_reason(v)
        except GhostsError as e:
            raise ValueError(str(e)) from None


class DecideManyIn(BaseModel):
    """Several decisions typed faster than the network answered: each item stays its own undo step."""

    items: list[DecideIn] = Field(..., min_length=1, max_length=500)


class ChangeOut(BaseModel):
    face_id: int
    decision: str
    previous: str


class Counts(BaseModel):
    accepted: int
    rejected: int
    skipped: int
    undecided: int
    total: int
    target: int
    round_id: int | None
    round_open: bool


class BatchOut(BaseModel):
    changes: list[ChangeOut]
    kept: list[int]
    undone: int | None = None
    counts: Counts


class FaceState(BaseModel):
    id: int
    decision: str
    reviewer: str | None
    deleted: bool


class ManualPointsIn(BaseModel):
    """Four clicks in the photo's upright pixel coordinates; left/right as seen on screen."""

    eye_left: Point
    eye_right: Point
    mouth_left: Point
    mouth_right: Point

    @field_validator("eye_left", "eye_right", "mouth_left", "mouth_right")
    @classmethod
    def _finite(cls, v: Point) -> Point:
        if not all(math.isfinite(c) and abs(c) < 1e6 for c in v):
            raise ValueError("point coordinates must be finite pixel positions")
        return v


class ManualFaceOut(BaseModel):
    face_id: int
    image_id: int
    quad: list[list[float]]
    score: float | None
    counts: Counts


class RoundOut(BaseModel):
    id: int
    target: int | None
    accepted: int | None
    reviewer: str | None
    done: bool
    flow_run_id: str | None
    message: str
