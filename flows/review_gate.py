"""`review-gate`: wait for a person to finish the selection on the review page.

The flow opens (or joins) the review round with its own flow run id, publishes what is left to review and
where, then pauses. "Selection done" on the review page closes the round and resumes this run with a
`ReviewDone` input (`complete_selection` here, which passes `resume_waiting_run` to the review room's
`complete_selection`); the Prefect UI's resume form does the same by hand.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DECISIONS, ReviewRound
from curation.review import selection
from curation.review.selection import RunNotWaiting, open_round, parse_run_id, review_counts
from flows.artifacts import artifact_key, markdown_table
from flows.local_api import api_healthy
from flows.workspace import open_data, resolve_data

REVIEW_URL = "http://127.0.0.1:8765/"  # where `ghosts review` serves the page by default


def _runs_dir(ws) -> Path:
    return Path(ws.root) / "prefect-runs"


def record_run_api(ws, run_id: str, api_url: str | None) -> None:
    """Remember which Prefect API the gate's run waits on (a foreground run's temporary server has a port of
    its own), so "Selection done" and `ghosts run resume` resume it there. Atomic write."""
    if not api_url:
        return
    d = _runs_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump({"flow_run_id": str(run_id), "api_url": api_url}, f)
    os.replace(tmp, d / f"{parse_run_id(run_id)}.json")


def recorded_run_api(ws, run_id: str) -> str | None:
    try:
        return json.loads((_runs_dir(ws) / f"{parse_run_id(run_id)}.json").read_text())["api_url"]
    except (OSError, ValueError, KeyError, GhostsError):
        return None


def _current_api() -> str | None:
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def _how_to_resume(run_id: str) -> str:
    return (
        f"resume it from the Prefect UI (the run's Resume button), or with `ghosts run resume {run_id}` "
        "(PREFECT_API_URL set to its server)"
    )


def resume_waiting_run(run_id: str, run_input: dict, api_url: str | None = None) -> None:
    """Resume the paused (or suspended) flow run `run_id` on `api_url` (default: the configured API).

    RunNotWaiting when the run is there but not waiting any more; a GhostsError saying why and how to resume
    it when the API cannot be reached or does not know the run (the review round then stays open)."""
    from prefect import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = api_url or _current_api()
    if not url:
        raise GhostsError(
            f"no Prefect API is configured to resume flow run {run_id} with: set PREFECT_API_URL "
            f"to the server it runs on, or {_how_to_resume(run_id)}"
        )
    if not api_healthy(url):
        raise GhostsError(
            f"the Prefect API at {url}, where flow run {run_id} waits, does not answer (the run's "
            f"process or server stopped?): start that server again and {_how_to_resume(run_id)}"
        )
    rid = parse_run_id(run_id)
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(rid)
        except ObjectNotFound:
            raise GhostsError(
                f"flow run {run_id} is not on the Prefect API at {url}: it ran on another server; "
                f"{_how_to_resume(run_id)}"
            ) from None
        if not run.state or not run.state.is_paused():
            raise RunNotWaiting(
                f"flow run {run_id} is {run.state.name if run.state else 'without a state'}, "
                "not waiting for the review"
            )
        response = client.resume_flow_run(rid, run_input=run_input)
    if response.status == SetStateStatus.REJECT:
        if response.state and response.state.type == StateType.FAILED:
            raise RunNotWaiting(f"flow run {run_id} timed out waiting and can no longer be resumed")
        raise GhostsError(f"Prefect refused to resume flow run {run_id}: {response.details.reason}")


def make_resume(ws):
    """The review room's `Resume` for this workspace: each run resumed on the API it was recorded with."""

    def resume(run_id: str, run_input: dict) -> None:
        resume_waiting_run(run_id, run_input, recorded_run_api(ws, run_id))

    return resume


def complete_selection(ws, reviewer: str) -> ReviewRound:
    """ "Selection done": close the open round and resume the flow run waiting on it, if any."""
    return selection.complete_selection(ws, reviewer, resume=make_resume(ws))


class ReviewDone(RunInput):
    """What resumes the gate: the review page sends all three; in the Prefect UI, a reviewer name is enough."""

    accepted: int = 0  # faces accepted when the selection was closed
    reviewer: str = "prefect-ui"  # who closed it
    round_id: int | None = None  # the review round (ReviewRound.id)


def gate_markdown(
    counts: dict[str, Any], target: int, data: str, review_url: str, timeout_hours: float
) -> str:
    left = max(target - counts.get("accepted", 0), 0)
    table = markdown_table([(k, counts.get(k, 0)) for k in (*DECISIONS, "total")], header=("faces", "count"))
    return (
        f"## Review needed: {counts.get('accepted', 0)} of {target} faces accepted ({left} to go)\n\n"
        f"{table}\n\n"
        f"Open the review page at [{review_url}]({review_url}) (start it with "
        f"`ghosts review --data {data} --target {target}` if it is not running), choose the faces, and press "
        f"**Selection done**: this run then goes on to freeze the dataset. Resuming this run from the Prefect UI "
        f"does the same. The run waits {timeout_hours:g} hours at most."
    )


def _waits_as_deployment() -> bool:
    """Suspend (exit, freeing the worker; rescheduled on resume) only a run of a review-gate deployment: a
    foreground run, or the gate inside a pipeline run, pauses in its process."""
    from prefect.runtime import deployment

    return bool(deployment.id) and not flow_run.parent_flow_run_id


def _round_of_this_run(ws) -> ReviewRound | None:
    """A suspended gate runs again from the top once resumed: its round (closed by then) is the one it
    opened, not a new one."""
    from sqlalchemy import select

    with ws.session() as s:
        return s.scalars(
            select(ReviewRound)
            .where(ReviewRound.flow_run_id == str(flow_run.id))
            .order_by(ReviewRound.id.desc())
            .limit(1)
        ).first()


@flow(
    name="review-gate", log_prints=True, persist_result=True
)  # suspension reruns the flow: results persisted
def review_gate(
    target: int = 1000,  # faces wanted (~1k is enough for StyleGAN2-ADA's small-data regime)
    data: str | None = None,  # workspace folder; None: GHOSTS_DATA or ./data
    review_url: str = REVIEW_URL,  # the address people open to review
    timeout_hours: float = 72,  # give up waiting after this long (the round stays open)
    poll_interval: int = 10,  # seconds between checks for the resume (foreground pause)
) -> dict[str, Any]:
    """Wait until the review is done (paused in-process; suspended when run as a deployment); return the
    round's figures."""
    logger = get_run_logger()
    data = resolve_data(data)
    ws = open_data(data)
    if target < 1:
        raise GhostsError(f"review target must be at least 1 (got {target})")
    again = _round_of_this_run(ws)  # None on the first run
    rnd = again or open_round(ws, target=target, flow_run_id=str(flow_run.id))
    record_run_api(ws, str(flow_run.id), _current_api())
    counts = review_counts(ws)
    md = gate_markdown(counts, target, data, review_url, timeout_hours)
    wanted = ReviewDone.with_initial_data(description=md, accepted=counts.get("accepted", 0), round_id=rnd.id)
    timeout, key = max(1, int(timeout_hours * 3600)), f"review-round-{rnd.id}"
    try:
        if _waits_as_deployment():
            if again is None:
                create_markdown_artifact(
                    md, key=artifact_key("review-gate"), description="Waiting for the review"
                )
                logger.info(
                    "suspending until the review of round %s is done: open %s and press Selection done",
                    rnd.id,
                    review_url,
                )
            done = suspend_flow_run(wait_for_input=wanted, timeout=timeout, key=key)
        else:
            create_markdown_artifact(
                md, key=artifact_key("review-gate"), description="Waiting for the review"
            )
            logger.info(
                "waiting for the review of round %s: open %s and press Selection done", rnd.id, review_url
            )
            done = pause_flow_run(
                wait_for_input=wanted, timeout=timeout, poll_interval=poll_interval, key=key
            )
    except FlowPauseTimeout:
        raise GhostsError(
            f"nobody pressed Selection done within {timeout_hours:g} hours; the review round stays "
            "open: finish it and run the pipeline again (what is decided is kept)"
        ) from None
    after = review_counts(ws)
    if after.get("round_open") and after.get("round_id") == rnd.id:
        # Resumed from the Prefect UI: close the round as the review page would have.
        complete_selection(ws, reviewer=done.reviewer or "prefect-ui")
        after = review_counts(ws)
    logger.info("review done by %s: %d faces accepted", done.reviewer, after["accepted"])
    return {"round_id": rnd.id, "accepted": after["accepted"], "reviewer": done.reviewer, "target": target}
