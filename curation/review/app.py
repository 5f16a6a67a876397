"""The review web app: FastAPI, server-side Jinja2 pages and a little plain JavaScript (no build step).

`create_app(ws, config)` builds the app over an opened workspace; `ghosts review` serves it with uvicorn.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from alignment.quality import TARGET_SIZE_SETTING
from curation.catalog.errors import GhostsError
from curation.catalog.schema import set_setting
from curation.review.config import ReviewConfig
from curation.review.deps import ReviewContext
from curation.review.grid import GridQuery, Snapshots, list_faces
from curation.review.manual import ManualCropError
from curation.review.media import NotFound, PhotoCache
from curation.review.routers import api, media, pages, people, rounds
from curation.review.security import STYLESHEET, Guard, GuardMiddleware
from curation.review.selection import Resume, open_round

HERE = Path(__file__).parent


def allowed_hosts(config: ReviewConfig) -> set[str] | None:
    """Host names a loopback server answers to; None (any) off loopback, where the token protects it."""
    if not config.loopback:
        return None
    return {
        "127.0.0.1",
        "localhost",
        "::1",
        "[::1]",
        config.host.lower(),
        *(h.lower() for h in config.extra_hosts),
    }


def create_app(ws, config: ReviewConfig | None = None, resume: Resume | None = None) -> FastAPI:
    """The review app over `ws`. Opens a review round (or joins the open one) with the configured target.
    `resume` resumes the flow run waiting on the round when "Selection done" is pressed (the CLI passes
    flows.review_gate.resume_waiting_run)."""
    config = config or ReviewConfig()
    if config.target_size is not None:
        with ws.session() as s:
            set_setting(s, TARGET_SIZE_SETTING, int(config.target_size))
    open_round(ws, target=config.target, reviewer=config.reviewer)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = True
    guard = Guard(config.token, allowed_hosts(config), log_requests=config.log_requests)
    templates.env.globals["signed"] = guard.sign  # links and images in pages: signed URLs, never the token
    templates.env.globals["sig_fields"] = guard.sig_fields
    templates.env.globals["stylesheet"] = Markup(STYLESHEET)  # inline, allowed by its hash (CSP)
    ctx = ReviewContext(ws, config, guard, templates, PhotoCache(), resume)
    # Ready before the first page is asked for: templates compiled, the counter counted, the grid's queries
    # compiled and the catalog's pages read once (the first page took twice as long as the next ones).
    for name in ("base.html", "grid.html"):
        templates.get_template(name)
    ctx.counts.counts()
    with ws.session() as s:
        list_faces(s, GridQuery(), config.per_page, snapshots=Snapshots())

    app = FastAPI(title="ghosts review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.ctx = ctx
    app.add_middleware(GuardMiddleware, guard=ctx.guard)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    for r in (pages.router, api.router, media.router, rounds.router, people.router):
        app.include_router(r)

    @app.exception_handler(ManualCropError)
    async def _bad_points(request: Request, exc: ManualCropError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(GhostsError)
    async def _ghosts_error(request: Request, exc: GhostsError):
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        # A short reason, never the input echoed back (NaN and the like are no JSON, and need no repeating).
        where = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: "
            f"{str(e.get('msg', 'invalid')).removeprefix('Value error, ')}"
            for e in exc.errors()[:5]
        )
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": f"bad request: {where}"}, status_code=422)
        return PlainTextResponse(f"bad request: {where}\n", status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return PlainTextResponse("not found\n", status_code=404)

    return app
