"""Flags recomputed in SQL from a face's stored measures under the workspace's thresholds (its chosen target
size), so the review grid, auto-accept and `ghosts status` count the same faces as flagged. The stored
`flagged` column was computed for the analysis's target at the time, so it only counts for a face without a
measured crop side."""

from __future__ import annotations

from sqlalchemy import and_, func, or_

from curation.catalog.schema import Face, get_setting
from curation.catalog.thresholds import (
    DEFAULT_TARGET_SIZE,
    DEFAULT_THRESHOLDS,
    TARGET_SIZE_SETTING,
    Thresholds,
)


def thresholds_for(session) -> Thresholds:
    """The thresholds for this workspace: the analysis's, with its chosen target size (workspace setting)."""
    size = get_setting(session, TARGET_SIZE_SETTING, DEFAULT_TARGET_SIZE)
    return Thresholds(target_size=int(size)) if isinstance(size, int) and size > 0 else DEFAULT_THRESHOLDS


def upscaled_condition(th: Thresholds):
    """Crop side under the target size (or, without a measured side, the stored `upscaled`)."""
    # Never NULL (a NULL would make `~flagged_condition` drop faces without a measured side).
    return or_(
        and_(Face.quad_size.is_not(None), Face.quad_size < th.target_size),
        and_(Face.quad_size.is_(None), Face.upscaled.is_(True)),
    )


def flagged_condition(th: Thresholds):
    """Any flag under these thresholds (the stored `flagged` column was computed for the analysis's target,
    so it only counts for a face without a measured crop side)."""
    return or_(
        upscaled_condition(th),
        and_(Face.quad_size.is_(None), Face.flagged.is_(True)),
        func.coalesce(Face.padding, 0.0) > th.padding,
        func.coalesce(Face.blur, 1e9) < th.blur,
        func.abs(func.coalesce(Face.yaw, 0.0)) > th.pose,
    )
