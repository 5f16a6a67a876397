"""`scrape-and-align`: bring new photos in (Instagram tags and/or local folders), then analyse every new image.

Idempotent by construction: each tag resumes from its saved feed position and never re-fetches a post that
is in the catalog, and analysis takes every image still marked `new`, so re-running after a crash continues
where the last run stopped.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_client, get_run_logger, task
from prefect.artifacts import create_image_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.tasks import exponential_backoff

from curation.analysis.analyze import workspace_target_size
from curation.catalog.errors import GhostsError
from curation.catalog.status import batch_outcome, pending_image_ids
from curation.catalog.workers import default_workers
from curation.sources.ingest import ingest_paths
from curation.sources.instagram.scraper import ACCOUNT_WIDE, scrape_each_tag, scrape_tags, unique_tags
from flows.artifacts import artifact_key, contact_sheet, data_uri
from flows.runners import in_worker, make_task_runner
from flows.worker_pool import analyze_batch_here, identities_here
from flows.workspace import open_data, resolve_data

INSTAGRAM_LIMIT = "instagram"  # the global concurrency limit every Instagram request holds a slot of
CONTACT_SHEET_FACES = 64  # faces on the run's contact sheet


class ScrapeNetworkError(GhostsError):
    """Instagram could not be reached: worth retrying later (unlike a refusal, which retrying makes worse)."""


def _retry_on_network(task, task_run, state) -> bool:
    """Retry a tag only when Instagram could not be reached; a refusal is not retried."""
    return isinstance(state.result(raise_on_failure=False), ScrapeNetworkError)


def ensure_instagram_limit(slots: int = 1) -> None:
    """Create the `instagram` global concurrency limit when missing (an existing one, maybe edited in the UI,
    is left alone): one account, one request stream, however many runs are going."""
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(INSTAGRAM_LIMIT)
            return
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=INSTAGRAM_LIMIT, limit=slots)
            )
        except ObjectAlreadyExists:
            pass  # another run created it first


# ----------------------------------------------------------------------------------------------- tasks


@task(
    name="scrape-tag",
    task_run_name="scrape #{tag}",
    cache_policy=NO_CACHE,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=60),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_on_network,
)
def scrape_tag(
    data: str,
    tag: str,
    limit: int | None = None,
    session: str | None = None,
    max_requests_per_hour: int | None = None,
) -> dict[str, Any]:
    """Scrape one tag, holding the `instagram` slot so parallel runs never gang up on the account."""
    ws = open_data(data)
    with concurrency(INSTAGRAM_LIMIT, occupy=1):
        summary = scrape_tags(
            ws,
            [tag],
            session=session,
            limit=limit,
            progress=False,
            max_requests_per_hour=max_requests_per_hour,
        )
    outcome = summary.tags[0]
    if outcome.stop_kind == "network" and outcome.fetched == 0:
        raise ScrapeNetworkError(outcome.stopped or f"#{tag}: could not reach Instagram")
    result = summary.as_dict()["tags"][0]
    result["fetched"] = outcome.fetched
    result["account_wide_stop"] = outcome.stop_kind in ACCOUNT_WIDE
    return result


@task(name="import-paths", cache_policy=NO_CACHE)
def import_paths(data: str, paths: list[str], recursive: bool = True) -> dict[str, Any]:
    return ingest_paths(open_data(data), paths, recursive=recursive, progress=False).as_dict()


@task(name="pending-images", cache_policy=NO_CACHE)
def pending_images(data: str) -> list[int]:
    """Ids of stored images not analysed yet (status `new`), oldest first."""
    return pending_image_ids(open_data(data))


@task(name="analyze-batch", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def analyze_batch(
    data: str, image_ids: list[int], detector: str = "hog", target_size: int | None = None
) -> dict[str, Any]:
    """Detect, landmark, align and score the faces of a few images: in a worker process of the `processes`
    runner, else in this task's thread or Dask worker."""
    return in_worker(analyze_batch_here, data, image_ids, detector, target_size)


@task(name="group-identities", cache_policy=NO_CACHE)
def group_identities(data: str) -> dict[str, Any]:
    """Group the new faces into people: once, after every batch is in."""
    return in_worker(identities_here, data)


@flow(name="analyze-images", log_prints=True)
def analyze_images_flow(
    data: str,
    image_ids: list[int],
    batch_size: int = 8,
    detector: str = "hog",
    target_size: int | None = None,  # None: the workspace setting
) -> list[dict]:
    """Analyse `image_ids` in batches, one mapped task per batch, on whatever task runner the caller chose;
    then group the new faces into people, once."""
    batches = [image_ids[i : i + batch_size] for i in range(0, len(image_ids), batch_size)]
    if not batches:
        return []
    futures = analyze_batch.map(data, batches, detector, target_size)
    results = [f.result() for f in futures]
    group_identities(data)
    return results


@task(name="report-scrape", cache_policy=NO_CACHE)
def report(data: str, image_ids: list[int], sources: dict[str, Any]) -> dict[str, Any]:
    """Table artifact (new images, faces, rejects by reason) and a contact sheet of the new faces."""
    ws = open_data(data)
    outcome = batch_outcome(ws, image_ids)
    by_status, reasons, faces = outcome.by_status, outcome.reasons, outcome.faces
    refused = [r for src in sources.values() for r in src.get("rejected", [])]
    for r in refused:
        reasons[f"refused at ingest: {r['reason']}"] = reasons.get(f"refused at ingest: {r['reason']}", 0) + 1
    rows = [
        {"measure": "new images", "value": len(image_ids)},
        {"measure": "faces found", "value": len(faces)},
    ]
    rows += [{"measure": f"images {k}", "value": v} for k, v in sorted(by_status.items())]
    rows += [{"measure": f"rejected: {k}", "value": v} for k, v in sorted(reasons.items())]
    for name, src in sources.items():
        if src.get("stopped"):
            rows.append({"measure": f"{name} stopped", "value": src["stopped"]})
    create_table_artifact(
        table=rows,
        key=artifact_key("scrape-and-align-summary"),
        description="New images, faces found, and rejects by reason",
    )
    previews = [ws.abspath(p) for _, p, _ in faces if p][:CONTACT_SHEET_FACES]
    sheet = contact_sheet(previews)
    if sheet is not None:
        create_image_artifact(
            image_url=data_uri(sheet),
            key=artifact_key("scrape-and-align-faces"),
            description=f"The best {len(previews)} of {len(faces)} new faces, by score",
        )
    return {"new_images": len(image_ids), "faces": len(faces), "by_status": by_status, "rejects": reasons}


def spread_batches(
    images: int, batch_size: int, runner: str, workers: int | None, dask_address: str | None
) -> int:
    """Images per analysis task: `batch_size`, or fewer when that leaves local workers idle (4 photos, 2
    workers: 2 batches of 2, not 1 of 4). A Dask scheduler's size is not known here: `batch_size` as given."""
    if dask_address or images < 1:
        return batch_size
    slots = workers or (default_workers() if runner != "dask" else 2)
    return max(1, min(batch_size, -(-images // slots)))


# ------------------------------------------------------------------------------------------------ flow


@flow(name="scrape-and-align", log_prints=True)
def scrape_and_align(
    tags: list[str] | None = None,  # hashtags to scrape, without '#'
    limit: int | None = None,  # new images per tag
    session: str | None = None,  # saved Instagram session (see `ghosts login`)
    paths: list[str] | None = None,  # local files and folders to import instead of, or besides, tags
    data: str | None = None,  # workspace folder; None: GHOSTS_DATA or ./data
    detector: str = "hog",  # hog (fast) or cnn (slower, finds more)
    target_size: int | None = None,  # dataset side (smaller crops flagged upscaled); None: workspace setting
    batch_size: int = 8,  # images per analysis task at most (fewer when that gives every local worker some)
    runner: str = "processes",  # processes (analysis is CPU-bound) | threads | dask
    workers: int | None = None,  # threads/processes/local Dask workers; None: the runner's default
    dask_address: str | None = None,  # a Dask scheduler (tcp://host:8786) to fan analysis out to
    max_requests_per_hour: int | None = None,  # cap on Instagram requests, on top of instaloader's limits
) -> dict[str, Any]:
    """Scrape each tag (one task per tag, in turn) and import paths, then analyse every new image."""
    logger = get_run_logger()
    data = resolve_data(data)
    ws = open_data(data)
    if batch_size < 1:
        raise GhostsError(f"batch_size must be at least 1 (got {batch_size})")
    task_runner = make_task_runner(runner, workers, dask_address)  # validate before any network traffic

    sources: dict[str, Any] = {}
    if tags:
        ensure_instagram_limit()
        clean = unique_tags(tags)

        def scrape_one(tag: str) -> dict[str, Any]:
            outcome = scrape_tag(data, tag, limit, session, max_requests_per_hour)
            if outcome.get("stopped"):
                logger.warning(outcome["stopped"])
            return outcome

        outcomes, skipped = scrape_each_tag(clean, scrape_one, lambda o: o["account_wide_stop"])
        sources.update({f"#{tag}": o for tag, o in zip(clean, outcomes)})
        for rest in skipped:
            sources[f"#{rest}"] = {"stopped": f"#{rest}: not tried after the refusal above", "fetched": 0}
        if not paths and all(s.get("fetched", 0) == 0 and s.get("stopped") for s in sources.values()):
            lines = "\n".join(f"  {s['stopped']}" for s in sources.values())
            raise GhostsError(f"nothing could be fetched from Instagram:\n{lines}")
    if paths:
        sources["import"] = import_paths(data, list(paths))

    pending = pending_images(data)
    logger.info("%d image(s) to analyse", len(pending))
    # Settled once here: batches running at once would each insert the setting the first time.
    target_size = workspace_target_size(ws, target_size)
    analyze_images_flow.with_options(task_runner=task_runner)(
        data,
        pending,
        spread_batches(len(pending), batch_size, runner, workers, dask_address),
        detector,
        target_size,
    )
    summary = report(data, pending, sources)
    summary["sources"] = sources
    summary["workspace"] = str(ws.root)
    return summary
