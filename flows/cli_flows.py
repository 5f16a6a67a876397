"""`ghosts run ...`, `ghosts serve` and `ghosts server`: the Prefect flows from the command line.

Prefect is imported inside the commands: importing it takes seconds, and `ghosts --help` should not.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click

from curation.catalog.errors import GhostsError
from flows.cli_options import (
    choice_option,
    count_option,
    data_option,
    echo_json,
    file_option,
    folder_option,
    json_option,
    network_option,
    open_ws,
    workers_option,
)
from training.command import archive_to_train, settings_from, training_options

LOCAL_API = "http://127.0.0.1:4200/api"  # where `ghosts server` (prefect server start) listens by default


# ------------------------------------------------------------------------------------------ shared options


def _source_options(fn):
    for opt in reversed(
        [
            click.option(
                "--tag",
                "tags",
                multiple=True,
                metavar="TAG",
                help="Hashtag to scrape, without '#'; repeat for several.",
            ),
            click.option(
                "--import",
                "paths",
                multiple=True,
                metavar="PATH",
                type=click.Path(exists=True),
                help="Local file or folder to import (recursively) instead of, or besides, tags; repeatable.",
            ),
            count_option("--limit", help="New images to add per tag."),
            click.option(
                "--session",
                default=None,
                metavar="USER",
                help="Saved Instagram session (see `ghosts login`).",
            ),
            choice_option("--detector", choices=("hog", "cnn"), help="Face detector for analysis."),
            count_option("--batch-size", default=8, help="Images per analysis task."),
            choice_option(
                "--runner", choices=("processes", "threads", "dask"), help="Where analysis tasks run."
            ),
            workers_option("Analysis threads/processes."),
            click.option(
                "--dask-address",
                default=None,
                metavar="tcp://HOST:PORT",
                help="A Dask scheduler to fan analysis out to (implies --runner dask).",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def _sources(kw: dict, *, required: bool = True) -> dict:
    """What the _source_options say, as the flows take it (the paths absolute); with `required`, at least one
    tag or folder to bring in."""
    if required and not kw["tags"] and not kw["paths"]:
        raise GhostsError("nothing to bring in: give --tag TAG (or --import FOLDER)")
    return {
        "tags": list(kw["tags"]),
        "paths": [str(Path(p).resolve()) for p in kw["paths"]],
        **{k: kw[k] for k in ("limit", "session", "detector", "runner", "workers", "dask_address")},
    }


def _dataset_options(fn):
    """--name, --resolution and --labels of the dataset a command freezes."""
    for opt in reversed(
        [
            click.option("--name", default="ghosts", show_default=True, help="Dataset name."),
            click.option(
                "--resolution",
                type=int,
                default=256,
                show_default=True,
                help="Dataset side in px (power of two).",
            ),
            choice_option(
                "--labels",
                choices=("none", "source-tag"),
                help="Class labels: none, or the tag that found each image.",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


_json = json_option("Print the result as JSON.")
_review_url = click.option(
    "--review-url", default="http://127.0.0.1:8765/", show_default=True, help="Where reviewers go."
)


# In `ghosts run pipeline` and `ghosts serve`, --workers are the analysis workers and --target the faces wanted
# from review; the training options of those names are spelled as below there (everywhere else as in
# `ghosts train`).
_PIPELINE_RENAMES = {"workers": "--train-workers", "target": "--ada-target"}


def _workspace(data: Path | None) -> str:
    return str(open_ws(data).root)


def _print(result, as_json: bool) -> None:
    """The result: one JSON document on stdout with --json (everything else went to stderr), else readable
    lines."""
    if as_json:
        echo_json(result)
        return
    for key, value in (result or {}).items():
        shown = json.dumps(value, default=str) if isinstance(value, (dict, list)) else value
        click.echo(f"{key}: {shown}")


def _configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile (`prefect config set ...`)."""
    from prefect.settings import get_current_settings  # lazy: Prefect takes seconds to import

    return get_current_settings().api.url or None


def _foreground(fn):
    """Run a flow in this process, on one Prefect API for it and all its worker processes (the configured one,
    else one temporary server for the command), ending with one clear error if that API goes away."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from flows.local_api import api_watchdog, foreground_api  # lazy: imports Prefect (seconds)

        if "data" in kwargs:
            open_ws(kwargs["data"])  # a wrong --data fails now, before any server starts
        configured = _configured_api_url()
        if not configured:
            click.echo(
                "ghosts: running on a temporary Prefect server for this command (set PREFECT_API_URL, "
                "e.g. after `ghosts server`, to see the run in the Prefect UI)",
                err=True,
            )

        def warm() -> None:  # the flows' imports (Prefect, dlib, torch) overlap the temporary server's start
            import flows.pipeline  # noqa: F401

        def prestart():  # the analysis workers start while the server starts too (imported here: dlib, OpenCV)
            from flows.worker_pool import prestarted

            return prestarted(kwargs.get("workers"))

        local_pool = kwargs.get("runner") == "processes" and not kwargs.get("dask_address")
        with (
            foreground_api(configured, warm, prestart if local_pool else None) as url,
            api_watchdog(url, as_json=bool(kwargs.get("as_json"))),
        ):
            return fn(*args, **kwargs)

    return wrapper


def _settings_first(renames: dict[str, str] | None = None):
    """The training options (training_options) checked before anything starts, even a Prefect server, and
    handed on as one `settings` argument."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            settings = settings_from(kwargs, renames)
            return fn(*args, settings=settings, **kwargs)

        return wrapper

    return decorate


# ------------------------------------------------------------------------------------------------ run


@click.group(name="run")
def run() -> None:
    """Run a Prefect flow once, in the foreground (pipeline, scrape-and-align, review-gate, freeze, train,
    explore), or resume the run waiting at the review gate (resume)."""


@run.command(name="pipeline")
@_source_options
@count_option("--target", default=1000, help="Faces wanted from review.")
@click.option(
    "--auto-accept",
    "auto_accept_rule",
    default=None,
    metavar="RULE",
    help='Skip the human review: accept faces by rule, e.g. "score>=0.6,max=200".',
)
@_dataset_options
@click.option("--no-train", "no_train", is_flag=True, help="Stop after freezing.")
@click.option(
    "--no-explore", "no_explore", is_flag=True, help="Skip the sample grid and morph after training."
)
@training_options(rename=_PIPELINE_RENAMES)
@_review_url
@click.option(
    "--review-timeout", type=float, default=72, show_default=True, help="Hours to wait for the review."
)
@_json
@data_option
@_settings_first(_PIPELINE_RENAMES)
@_foreground
def run_pipeline(settings, **kw) -> None:
    """scrape/import -> analyse -> review gate -> freeze -> train, once.

    Without --auto-accept the run pauses at the review gate: open the review page (`ghosts review`) and press
    "Selection done" to go on.
    """
    # lazy, as in every command below: the flow modules import Prefect, torch and dlib (seconds)
    from curation.review.autoaccept import parse_rule
    from flows.pipeline import pipeline

    sources = _sources(kw)
    if kw["auto_accept_rule"]:
        parse_rule(kw["auto_accept_rule"])  # a typo fails now, not after the scrape
    data = _workspace(kw.pop("data"))
    as_json = kw.pop("as_json")
    result = pipeline(
        **sources,
        target=kw["target"],
        auto_accept_rule=kw["auto_accept_rule"],
        name=kw["name"],
        resolution=kw["resolution"],
        labels=kw["labels"],
        train_after=not kw["no_train"],
        explore_after=not kw["no_explore"],
        settings=settings,
        data=data,
        batch_size=kw["batch_size"],
        review_url=kw["review_url"],
        review_timeout_hours=kw["review_timeout"],
    )
    _print(_brief(result), as_json)


def _brief(result: dict) -> dict:
    scrape, frozen, trained = result.get("scrape") or {}, result.get("freeze") or {}, result.get("train")
    return {
        "new_images": scrape.get("new_images"),
        "faces": scrape.get("faces"),
        "review": result.get("review"),
        "dataset": {k: frozen.get(k) for k in ("name", "version", "path", "sha256", "count", "resolution")},
        "train": None
        if trained is None
        else {k: trained.get(k) for k in ("skipped", "reason", "run_dir", "snapshot", "kimg")},
        "explore": result.get("explore"),
    }


@run.command(name="scrape-and-align")
@_source_options
@_json
@data_option
@_foreground
def run_scrape_and_align(**kw) -> None:
    """Scrape the tags and import the folders, then analyse every new image."""
    from flows.scrape import scrape_and_align  # lazy: Prefect, dlib

    sources = _sources(kw)
    result = scrape_and_align(**sources, data=_workspace(kw["data"]), batch_size=kw["batch_size"])
    _print(result, kw["as_json"])


@run.command(name="review-gate")
@count_option("--target", default=1000, help="Faces wanted.")
@_review_url
@click.option("--timeout", type=float, default=72, show_default=True, help="Hours to wait.")
@_json
@data_option
@_foreground
def run_review_gate(target: int, review_url: str, timeout: float, as_json: bool, data: Path | None) -> None:
    """Wait (paused) until "Selection done" is pressed on the review page."""
    from flows.review_gate import review_gate  # lazy: Prefect

    _print(
        review_gate(target=target, data=_workspace(data), review_url=review_url, timeout_hours=timeout),
        as_json,
    )


@run.command(name="resume")
@click.argument("run_id", required=False)
@click.option("--reviewer", default=None, help="Who finished the selection (default: your login name).")
@_json
@data_option
def run_resume(run_id: str | None, reviewer: str | None, as_json: bool, data: Path | None) -> None:
    """Resume the run waiting at the review gate (default: the latest round's run), as "Selection done" does.

    An open round is closed first. The run is resumed on the Prefect API it waits on (recorded when it paused;
    else PREFECT_API_URL, else a `ghosts server` on this machine).
    """
    # lazy: SQLAlchemy, the review room and Prefect are not needed by `ghosts --help`
    from sqlalchemy import select

    from curation.catalog.schema import ReviewRound
    from curation.review.selection import RunNotWaiting, finish_round
    from flows.review_gate import recorded_run_api, resume_waiting_run

    ws = open_ws(data)
    reviewer = reviewer or getpass.getuser()
    with ws.session() as s:
        q = select(ReviewRound).where(ReviewRound.flow_run_id.is_not(None))
        if run_id:
            q = q.where(ReviewRound.flow_run_id == run_id)
        rnd = s.scalars(q.order_by(ReviewRound.id.desc()).limit(1)).first()
        if rnd is None:
            raise GhostsError(
                f"no review round waits for flow run {run_id}"
                if run_id
                else "no review round was opened by a flow run: nothing to resume"
            )
        round_id, run_id, is_open, accepted = rnd.id, rnd.flow_run_id, rnd.done_at is None, rnd.accepted
    url = recorded_run_api(ws, run_id) or _configured_api_url() or LOCAL_API

    def resume(rid: str, run_input: dict) -> None:
        resume_waiting_run(rid, run_input, url)

    if is_open:
        done = finish_round(ws, reviewer, resume)
        if not done.resumed:
            why = done.note.split("; ", 1)[-1]  # the run's state, and what to do instead
            raise GhostsError(f"round {round_id} closed, but {why}")
        accepted = done.round.accepted
    else:
        try:
            resume_waiting_run(
                run_id, {"accepted": accepted or 0, "reviewer": reviewer, "round_id": round_id}, url
            )
        except RunNotWaiting as e:
            raise GhostsError(f"{e}: nothing to resume (round {round_id} is closed)") from None
    result = {
        "flow_run_id": run_id,
        "round_id": round_id,
        "accepted": accepted,
        "api_url": url,
        "resumed": True,
    }
    if as_json:
        echo_json(result)
    else:
        click.echo(f"resumed flow run {run_id} on {url} (round {round_id}, {accepted} faces accepted)")


@run.command(name="freeze")
@_dataset_options
@click.option("--mirror-check", is_flag=True, help="Refuse mirrored or duplicate face pairs.")
@_json
@data_option
@_foreground
def run_freeze(
    name: str, resolution: int, labels: str, mirror_check: bool, as_json: bool, data: Path | None
) -> None:
    """Freeze the accepted faces and emit `ghosts.dataset.frozen` (which starts training when served)."""
    from flows.freeze import freeze  # lazy: Prefect

    _print(
        freeze(
            name=name, resolution=resolution, labels=labels, mirror_check=mirror_check, data=_workspace(data)
        ),
        as_json,
    )


@run.command(name="train")
@file_option(
    "--archive",
    required=False,
    exists=True,
    metavar="ZIP",
    help="Dataset archive written by freeze [the newest frozen version in --data].",
)
@training_options
@_json
@data_option
@_settings_first()
@_foreground
def run_train(archive: Path | None, as_json: bool, data: Path | None, settings) -> None:
    """Train on an archive once (a second run for the same archive skips, or resumes a failed one)."""
    from flows.train import train  # lazy: Prefect, torch

    archive = archive_to_train(archive, data)
    _print(train(archive=str(archive.resolve()), settings=settings, data=_workspace(data)), as_json)


@run.command(name="explore")
@network_option
@count_option("--grid-seeds", default=16, help="Faces on the grid.")
@click.option("--trunc", "truncation_psi", type=float, default=0.7, show_default=True, help="Truncation psi.")
@click.option(
    "--morph-seeds", default="0,1,2,3", show_default=True, help="Comma list of seeds the morph visits."
)
@count_option("--frames", default=30, help="Frames per transition.")
@folder_option(
    "--outdir", required=False, help="Where grid.png and morph.gif go [explore/ beside the snapshot]."
)
@click.option("--device", default=None, help="cpu or cuda (default: cuda when present).")
@file_option(
    "--archive",
    required=False,
    exists=True,
    metavar="ZIP",
    help="Training archive the memorisation report compares against [the one the snapshot records].",
)
@count_option(
    "--memorization-samples",
    minimum=0,
    default=64,
    help="Faces generated for the memorisation report; 0 leaves the report out.",
)
@_json
@_foreground
def run_explore(
    network: Path,
    grid_seeds: int,
    truncation_psi: float,
    morph_seeds: str,
    frames: int,
    outdir: Path | None,
    device: str | None,
    archive: Path | None,
    memorization_samples: int,
    as_json: bool,
) -> None:
    """A sample grid, a looping morph of a trained generator and the memorisation report (its nearest training
    faces), as files and Prefect artifacts."""
    from flows.explore import explore  # lazy: Prefect, torch

    try:
        seeds = [int(s) for s in morph_seeds.split(",") if s.strip()]
    except ValueError:
        raise GhostsError(f"--morph-seeds {morph_seeds!r}: give whole numbers separated by commas") from None
    _print(
        explore(
            network=str(network),
            grid_seeds=grid_seeds,
            truncation_psi=truncation_psi,
            morph_seeds=seeds,
            frames=frames,
            outdir=str(outdir) if outdir else None,
            device=device,
            archive=str(archive.resolve()) if archive else None,
            memorization_samples=memorization_samples,
        ),
        as_json,
    )


# ------------------------------------------------------------------------------------------- serve, server


def _api_url() -> str:
    """PREFECT_API_URL, else a Prefect server on this machine's default port; else a clear error."""
    url = _configured_api_url()
    if url:
        return url
    try:
        with urllib.request.urlopen(f"{LOCAL_API}/health", timeout=3) as resp:
            if resp.status == 200:
                return LOCAL_API
    except (urllib.error.URLError, OSError):
        pass
    raise GhostsError(
        f"no Prefect server: start one with `ghosts server` (or `make server`) in another terminal, "
        f"or point PREFECT_API_URL at yours (looked at {LOCAL_API})"
    )


@click.command()
@click.option(
    "--cron",
    default=None,
    metavar='"0 3 * * *"',
    help="Schedule of scrape-and-align (cron syntax); without it, nothing is scheduled.",
)
@click.option("--timezone", default="UTC", show_default=True, help="Time zone of the schedule.")
@_source_options
@click.option("--no-train-on-freeze", "no_train", is_flag=True, help="Do not train when a dataset is frozen.")
@training_options(rename=_PIPELINE_RENAMES)
@data_option
def serve(cron: str | None, timezone: str, no_train: bool, data: Path | None, **kw) -> None:
    """Serve the ghosts deployments until stopped (Ctrl-C): scrape-and-align on --cron, train on every freeze.

    Needs a Prefect server (`ghosts server`); the schedule and the runs show in its UI. Freezing a dataset
    (`ghosts run freeze`, the pipeline) emits `ghosts.dataset.frozen`, which starts the `train` deployment.
    """
    # lazy: Prefect and the deployments' flows (seconds)
    from prefect import serve as prefect_serve
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.deploy import ServeOptions, build_deployments
    from flows.scrape import ensure_instagram_limit

    settings = settings_from(kw, _PIPELINE_RENAMES)
    opts = ServeOptions(
        data=_workspace(data),
        cron=cron,
        timezone=timezone,
        **_sources(kw, required=False),
        train_on_freeze=not no_train,
        settings=settings,
    ).validate()
    url = _api_url()  # after the options: a typo is reported before "start a server first"
    deployments = build_deployments(opts)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        ensure_instagram_limit()
        click.echo(
            f"serving {len(deployments)} deployments on {url.removesuffix('/api')} "
            f"(schedule: {cron + ' ' + timezone if cron else 'none'}; train on freeze: {not no_train})"
        )
        prefect_serve(*deployments)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=4200, show_default=True, help="Port of the API and UI.")
def server(host: str, port: int) -> None:
    """Start a local Prefect server with its UI (runs until Ctrl-C); `make server` does the same."""
    api = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/api"
    click.echo(
        f"Prefect UI: {api.removesuffix('/api')}\nIn other terminals: export PREFECT_API_URL={api}  "
        f"(then `ghosts serve ...`; workers: `prefect worker start --pool process`)",
        err=True,
    )
    env = {
        **os.environ,
        "PREFECT_SERVER_ANALYTICS_ENABLED": os.environ.get("PREFECT_SERVER_ANALYTICS_ENABLED", "false"),
    }
    if host not in ("0.0.0.0", "::") and "PREFECT_UI_API_URL" not in env:
        env["PREFECT_UI_API_URL"] = api  # else the UI looks for the API on port 4200 whatever --port says
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    os.execvpe(argv[0], argv, env)


COMMANDS = [run, serve, server]
