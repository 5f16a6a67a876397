"""What every request handler of the review app depends on, declared once: the routers import this module,
never app.py (which builds the app from them and which nothing imports back)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.templating import Jinja2Templates

from curation.review.config import ReviewConfig
from curation.review.counts import CountsCache
from curation.review.grid import Snapshots
from curation.review.media import PhotoCache
from curation.review.security import Guard
from curation.review.selection import Resume


@dataclass
class ReviewContext:
    """Everything a request handler needs, built once per app."""

    ws: object  # curation.catalog.workspace.Workspace
    config: ReviewConfig
    guard: Guard
    templates: Jinja2Templates
    photos: PhotoCache
    resume: Resume | None = None  # resumes the flow run waiting on the round (None: nothing to resume with)
    snapshots: Snapshots = field(default_factory=Snapshots)  # the id lists grid paging walks through
    counts: CountsCache | None = None  # the counter's figures, moved by each decision (made from ws if None)

    def __post_init__(self) -> None:
        if self.counts is None:
            self.counts = CountsCache(self.ws)


async def get_ctx(request: Request) -> ReviewContext:
    # async: FastAPI runs a plain-def dependency in its thread pool, one thread hand-off more per request.
    return request.app.state.ctx


Ctx = Annotated[ReviewContext, Depends(get_ctx)]

MAX_ID = 2**53  # catalog ids are SQLite integers; a larger number is a 422, never an overflow
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
OptionalIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
