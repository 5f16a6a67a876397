"""What goes in and out of the review API (validated at the HTTP edge, trusted inside)."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, Field, field_validator, model_validator

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DecisionName
from curation.review.decisions import MAX_BATCH, check_reason

Point = tuple[float, float]


FaceId = Annotated[int, Field(ge=1, le=2**53)]  # a catalog id; anything else is a 422, never an overflow


class DecideIn(BaseModel):
    """A decision, a rating, or both, for one face or a selection: one undo step."""

    face_ids: list[FaceId] = Field(..., min_length=1, max_length=MAX_BATCH)
    decision: DecisionName | None = None
    reason: str | None = Field(None, max_length=64)
    rating: int | None = Field(None, ge=0, le=5)  # 1-5 stars; 0 clears; absent keeps the rating

    @model_validator(mode="after")
    def _something(self) -> DecideIn:
        if self.decision is None and "rating" not in self.model_fields_set:
            raise ValueError("give a decision or a rating")
        return self

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
    rating: int | None = None


class Counts(BaseModel):
    accepted: int
    rejected: int
    skipped: int
    undecided: int
    total: int
    target: int
    round_id: int | None
    round_open: bool
    round_closed_by: str | None = None
    round_closed_at: str | None = None
    round_accepted: int | None = None
    top_owners: list[tuple[str, int]] = []
    top_tags: list[tuple[str, int]] = []


class BatchOut(BaseModel):
    changes: list[ChangeOut]
    kept: list[int]
    undone: int | None = None
    round_id: int | None = None
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

    @field_validator("eye_left", "eye_right", "mouth_left", "mouth_right", mode="before")
    @classmethod
    def _finite(cls, v):
        # JSON's NaN / Infinity extensions and huge numbers are refused here, with the point's name.
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            raise ValueError("a point is [x, y] in photo pixels")
        for c in v:
            if (
                isinstance(c, bool)
                or not isinstance(c, (int, float))
                or not math.isfinite(c)
                or abs(c) >= 1e6
            ):
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
    resumed: bool | None = None  # after Selection done: the waiting run resumed (None: no run recorded)
