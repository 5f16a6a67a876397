"""`ghosts demo`: the whole pipeline on synthetic posts, on a CPU, with no account and no network."""

# The commands import their rooms inside their bodies, for start-up cost: `ghosts --help` and every other
# command load torch, dlib, FastAPI or SQLAlchemy only when they need them.
from __future__ import annotations

import contextlib
import json
import os
import time
import webbrowser
from pathlib import Path

import click


@click.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for the posts, the workspace, the run and the pictures.",
)
@click.option(
    "--posts", type=click.IntRange(12, 500), default=60, show_default=True, help="Synthetic posts to make."
)
@click.option(
    "--kimg",
    type=click.FloatRange(0.01, 100),
    default=1.5,
    show_default=True,
    help="Training length in thousands of images (the demo's networks are tiny; ~1-2 min per kimg on 2 cores).",
)
@click.option("--resolution", type=click.Choice(["64", "128"]), default="64", show_default=True)
@click.option(
    "--review",
    is_flag=True,
    help="Stop at the review gate and open the review page instead of auto-accepting.",
)
@click.option("--port", type=int, default=8765, show_default=True, help="Review page port with --review.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out: Path, posts: int, kimg: float, resolution: str, review: bool, port: int, seed: int) -> None:
    """Build synthetic posts, then run the real Prefect pipeline on them.

    import -> analyse -> review gate (auto-accepted unless --review) -> freeze -> train -> sample grid + morph.
    """
    # The ephemeral Prefect server can take more than its default 20 s to start on a busy laptop.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from curation.catalog.status import workspace_status
    from curation.catalog.workspace import init_workspace
    from curation.sources.synthetic import make_demo_posts
    from flows.pipeline import pipeline
    from training.config import TrainSettings

    t0 = time.time()
    out = out.resolve()
    made = make_demo_posts(out / "posts", n=posts, seed=seed)
    click.echo(
        f"made {made.total} posts in {made.folder} ({made.with_face} with a face, "
        f"{made.without_face} without, {made.broken} broken files)"
    )
    ws = init_workspace(out / "data")
    # Tiny networks so a CPU trains a few kimg in minutes; the real thing uses --cfg auto on a GPU.
    settings = TrainSettings(
        kimg=kimg,
        cfg="auto",
        cbase=2048,
        cmax=64,
        batch=8,
        mirror=True,
        tick_kimg=max(kimg / 4, 0.05),
        snap=1,
        metrics="none",
        workers=0,
        seed=seed,
    )
    kwargs = {
        "paths": [str(made.folder)],
        "name": "demo",
        "resolution": int(resolution),
        "target": made.with_face,
        "settings": settings,
        "data": str(ws.root),
        "workers": 2,
    }
    with contextlib.ExitStack() as stack:
        if review:
            from curation.review.app import create_app
            from curation.review.config import make_config
            from curation.review.server import serving
            from flows.review_gate import make_resume

            app = create_app(ws, make_config(target=made.with_face), resume=make_resume(ws))
            url = stack.enter_context(serving(app, port=port))
            click.echo(f"review page: {url}  (decide, then press 'Selection done' to let the pipeline go on)")
            with contextlib.suppress(Exception):
                webbrowser.open(url)
            kwargs.update(review_url=url, review_poll_interval=2)
        else:
            kwargs.update(auto_accept_rule="score>=0")
        # One Prefect API for the run and its worker processes; a lost API ends the demo with one message.
        from flows.cli_flows import _configured_api_url
        from flows.local_api import api_watchdog, foreground_api

        url = stack.enter_context(foreground_api(_configured_api_url()))
        stack.enter_context(api_watchdog(url))
        result = pipeline(**kwargs)

    st = workspace_status(ws)
    summary = {
        "posts": str(made.folder),
        "workspace": str(ws.root),
        "images": st["images"]["by_status"],
        "faces": st["faces"]["by_decision"],
        "archive": result["freeze"]["path"] if result.get("freeze") else None,
        "run": (result.get("train") or {}).get("run_dir"),
        "snapshot": (result.get("train") or {}).get("snapshot"),
        "fakes grid": (result.get("explore") or {}).get("grid"),
        "morph": (result.get("explore") or {}).get("morph"),
    }
    click.echo("\n" + "=" * 72 + "\nghosts demo: done in %.0f s\n" % (time.time() - t0) + "=" * 72)
    for k, v in summary.items():
        click.echo(f"{k:>12}  {json.dumps(v) if isinstance(v, dict) else v}")
    click.echo(
        f"\nnext: `ghosts review --data {ws.root}` to look at the faces, `ghosts status --data {ws.root}`"
    )


COMMANDS = [demo]
