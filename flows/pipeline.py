"""`pipeline`: the whole chain once: scrape (or import) -> analyse -> review gate -> freeze -> train."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from curation.catalog.errors import GhostsError
from curation.review.autoaccept import REVIEWER, apply_rule, parse_rule
from flows.artifacts import artifact_key, markdown_table
from flows.explore import explore
from flows.freeze import freeze
from flows.review_gate import REVIEW_URL, complete_selection, review_gate
from flows.runners import make_task_runner
from flows.scrape import scrape_and_align
from flows.train import TrainSettings, train
from flows.workspace import open_data, resolve_data


@task(name="auto-accept", cache_policy=NO_CACHE)
def auto_accept(data: str, rule: str) -> dict[str, Any]:
    """Apply an --auto-accept rule in place of the review, and close the round as the review page would."""
    ws = open_data(data)
    result = apply_rule(ws, rule)
    complete_selection(ws, reviewer=REVIEWER)
    out = result.as_dict()
    create_markdown_artifact(
        f"## Review skipped: auto-accept `{result.rule}`\n\n"
        + markdown_table(
            [(k.replace("_", " "), v) for k, v in out.items() if k != "rule"], header=("faces", "count")
        ),
        key=artifact_key("review-gate"),
        description="Faces accepted by rule instead of by a person",
    )
    return out


@flow(name="pipeline", log_prints=True)
def pipeline(
    tags: list[str] | None = None,  # hashtags to scrape, without '#'
    paths: list[str] | None = None,  # local files and folders to import (instead of, or besides, tags)
    limit: int | None = None,  # new images per tag
    session: str | None = None,  # saved Instagram session (see `ghosts login`)
    target: int = 1000,  # faces wanted from the review
    auto_accept_rule: str | None = None,  # e.g. "score>=0.6,max=200": skip the human step
    name: str = "ghosts",  # dataset name
    resolution: int = 256,  # dataset side in px
    labels: str = "none",  # none | source-tag
    train_after: bool = True,  # train once the dataset is frozen
    explore_after: bool = True,  # then a sample grid and a morph of the trained generator
    settings: TrainSettings | None = None,  # training options; None: TrainSettings() defaults
    data: str | None = None,  # workspace folder; None: GHOSTS_DATA or ./data
    detector: str = "hog",  # hog | cnn
    batch_size: int = 8,  # images per analysis task
    runner: str = "processes",  # processes (analysis is CPU-bound) | threads | dask
    workers: int | None = None,  # analysis workers
    dask_address: str | None = None,  # a Dask scheduler for analysis
    review_url: str = REVIEW_URL,
    review_timeout_hours: float = 72,
    review_poll_interval: int = 10,  # seconds between checks for "Selection done"
) -> dict[str, Any]:
    """Run every step once; pauses at the review gate unless `auto_accept_rule` is given."""
    logger = get_run_logger()
    settings = settings or TrainSettings()
    data = resolve_data(data)
    open_data(data)
    # Check everything the user typed before the first slow step.
    if not tags and not paths:
        raise GhostsError("nothing to bring in: give at least one tag (--tag) or a local folder (--import)")
    if auto_accept_rule:
        parse_rule(auto_accept_rule)
    make_task_runner(runner, workers, dask_address)

    brought = scrape_and_align(
        tags=tags,
        limit=limit,
        session=session,
        paths=paths,
        data=data,
        detector=detector,
        target_size=resolution,
        batch_size=batch_size,
        runner=runner,
        workers=workers,
        dask_address=dask_address,
    )
    if auto_accept_rule:
        review = auto_accept(data, auto_accept_rule)
    else:
        review = review_gate(
            target=target,
            data=data,
            review_url=review_url,
            timeout_hours=review_timeout_hours,
            poll_interval=review_poll_interval,
        )
    frozen = freeze(name=name, resolution=resolution, labels=labels, data=data)
    trained = (
        train(archive=frozen["path"], settings=settings, sha256=frozen["sha256"], data=data)
        if train_after
        else None
    )
    explored = None
    if trained and trained.get("snapshot"):
        logger.info("trained on %s: last snapshot %s", frozen["path"], trained["snapshot"])
        if explore_after:
            explored = explore(network=trained["snapshot"], device=settings.device)
    return {"scrape": brought, "review": review, "freeze": frozen, "train": trained, "explore": explored}
