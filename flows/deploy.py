"""The deployments `ghosts serve` runs: scrape-and-align on a cron schedule, train on every frozen dataset.

`prefect.yaml` at the repository root describes the same deployments for work pools (`prefect deploy --all`);
this module is the no-infrastructure way: one long-running process that serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger

from curation.catalog.errors import GhostsError
from flows.events import DATASET_FROZEN, DATASET_RESOURCE_PREFIX
from flows.explore import explore
from flows.freeze import freeze
from flows.pipeline import pipeline
from flows.review_gate import review_gate
from flows.runners import make_task_runner
from flows.scrape import scrape_and_align
from flows.train import TrainSettings, train

# The train deployment's parameters, filled in from the event by Prefect's templating.
TRIGGER_PARAMETERS = {
    "archive": "{{ event.payload.archive }}",
    "sha256": "{{ event.payload.sha256 }}",
    "data": "{{ event.payload.workspace }}",
}


@dataclass
class ServeOptions:
    data: str  # workspace folder (absolute)
    cron: str | None = None  # scrape-and-align schedule, e.g. "0 3 * * *"; None: no schedule
    timezone: str = "UTC"
    tags: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    limit: int | None = None
    session: str | None = None
    detector: str = "hog"
    runner: str = "processes"
    workers: int | None = None
    dask_address: str | None = None
    train_on_freeze: bool = True
    settings: TrainSettings = field(default_factory=TrainSettings)

    def validate(self) -> ServeOptions:
        if self.cron is not None:
            try:
                CronSchedule(cron=self.cron, timezone=self.timezone)
            except ValueError as e:  # pydantic's ValidationError; its message names the bad field
                raise GhostsError(
                    f"--cron {self.cron!r} / --timezone {self.timezone!r}: {_first_line(e)}"
                ) from None
            if not self.tags and not self.paths:
                raise GhostsError(
                    "a schedule needs something to bring in: give --tag (or --import) with --cron"
                )
        make_task_runner(self.runner, self.workers, self.dask_address)
        return self


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def build_deployments(opts: ServeOptions) -> list[RunnerDeployment]:
    """scrape-and-align (scheduled), train (event-triggered), and review-gate, freeze, pipeline and explore to
    run from the UI, all with the workspace and the user's options as default parameters."""
    opts.validate()
    scrape_params: dict[str, Any] = {
        "tags": opts.tags,
        "paths": opts.paths,
        "limit": opts.limit,
        "session": opts.session,
        "data": opts.data,
        "detector": opts.detector,
        "runner": opts.runner,
        "workers": opts.workers,
        "dask_address": opts.dask_address,
    }
    deployments = [
        scrape_and_align.to_deployment(
            name="scheduled",
            parameters=scrape_params,
            schedules=[CronSchedule(cron=opts.cron, timezone=opts.timezone)] if opts.cron else None,
            description="Scrape the tags and import the folders, then analyse every new image.",
            tags=["ghosts"],
        ),
        review_gate.to_deployment(name="manual", parameters={"data": opts.data}, tags=["ghosts"]),
        freeze.to_deployment(name="manual", parameters={"data": opts.data}, tags=["ghosts"]),
        pipeline.to_deployment(
            name="manual",
            parameters={**scrape_params, "settings": opts.settings.model_dump()},
            tags=["ghosts"],
        ),
        explore.to_deployment(name="manual", tags=["ghosts"]),
    ]
    if opts.train_on_freeze:
        deployments.append(
            train.to_deployment(
                name="on-freeze",
                parameters={"settings": opts.settings.model_dump(), "data": opts.data},
                triggers=[frozen_trigger()],
                description=f"Train on every dataset as it is frozen (event {DATASET_FROZEN}); once per archive.",
                tags=["ghosts"],
            )
        )
    return deployments


def frozen_trigger() -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name="train-on-freeze",
        expect={DATASET_FROZEN},
        match={"prefect.resource.id": f"{DATASET_RESOURCE_PREFIX}*"},
        parameters=TRIGGER_PARAMETERS,
    )
