"""One router per resource: pages (HTML), api (faces and decisions), media (pictures, manual crop), rounds."""
from __future__ import annotations

from fastapi import Request

from curation.review.app import ReviewContext


def get_ctx(request: Request) -> ReviewContext:
    return request.app.state.ctx
