"""`ghosts review`: serve the review page over the workspace's catalog."""

# The commands import their rooms inside their bodies, for start-up cost: `ghosts --help` and every other
# command load torch, dlib, FastAPI or SQLAlchemy only when they need them.
from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Any

import click

from curation.catalog.errors import GhostsError
from flows.cli_options import data_option, open_ws


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message before uvicorn does it with a log line and a bare exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise GhostsError(
                    f"port {port} on {host} is in use (another `ghosts review`?): pass --port N"
                ) from None
            raise GhostsError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but loopback needs --token.",
)
@click.option("--port", default=8765, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--target",
    type=click.IntRange(min=1),
    default=None,
    help="Faces wanted in this round (shown as 'accepted N / target T'); default: the open round's, or 1000.",
)
@click.option("--reviewer", default=None, help="Name saved with every decision (default: your login name).")
@click.option(
    "--token",
    envvar="GHOSTS_REVIEW_TOKEN",
    default=None,
    help="Access token required on every request (env GHOSTS_REVIEW_TOKEN); mandatory off loopback.",
)
@click.option(
    "--target-size",
    type=click.IntRange(8, 8192),
    default=None,
    help="Dataset side the flags refer to (faces smaller are flagged upscaled); a workspace setting, "
    "default 512.",
)
@click.option("--log-requests", is_flag=True, help="Log every request (method, path, status, ms, client).")
@data_option
def review(data: Path | None, **options: Any) -> None:
    """Open the review page: pick the faces for the dataset, by keyboard, every decision saved at once.

    Prints the URL to open. Keys: arrows/hjkl move, a accept, r reject, s skip, u undo, space details, ? help.
    """
    from curation.review.config import make_config

    config = make_config(**options)  # every option but --data is the ReviewConfig field of its name
    host, port = config.host, config.port
    ws = open_ws(data)
    _check_port(host, port)

    import logging

    import uvicorn

    from curation.datasets.prerender import CropRenderer
    from curation.review.app import create_app
    from curation.review.decisions import ON_ACCEPTED
    from curation.review.selection import review_counts
    from flows.review_gate import make_resume

    # Refusals are always logged (with the client address); every request only with --log-requests.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    review_log = logging.getLogger("ghosts.review")
    review_log.addHandler(handler)
    review_log.setLevel(logging.INFO if config.log_requests else logging.WARNING)
    app = create_app(ws, config, resume=make_resume(ws))  # resumes on the run's own API; starts no server
    ON_ACCEPTED.append(CropRenderer(ws.root).poke)  # crops of accepted faces rendered ahead, off-request
    counts = review_counts(ws)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{port}/" + (f"?token={config.token}" if config.token else "")
    click.echo(
        f"review {counts['total']} faces as {config.reviewer!r} "
        f"(accepted {counts['accepted']} / target {counts['target']})"
    )
    click.echo(f"open {url}   (Ctrl+C to stop; every decision is already saved)")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


COMMANDS = [review]
