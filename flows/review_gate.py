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

from prefect import flow, get_client, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.responses import SetStateStatus
from prefect.exceptions import FlowPauseTimeout, ObjectNotFound
from prefect.flow_runs import pause_flow_run, suspend_flow_run
from prefect.input import RunInput
from prefect.runtime import deployment, flow_run
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings
from sqlalchemy import select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DECISIONS, ReviewRound
from curation.review import selection
from curation.review.selection import RunNotWaiting, open_round, parse_run_id, review_counts
from flows.artifacts import artifact_key, markdown_table
from flows.local_api import TEMPORARY_API_ENV, api_healthy
from flows.workspace import open_data, resolve_data

REVIEW_URL = "http://127.0.0.1:8765/"  # where `ghosts review` serves the page by default


def _runs_dir(ws) -> Path:
    return Path(ws.root) / "prefect-runs"


def record_run_api(ws, run_id: str, api_url: str | None) -> None:
    """Remember which Prefect API the gate's run waits on (a foreground run's temporary server has a port of
    its own, and no UI), so "Selection done" and `ghosts run resume` resume it there. Atomic write."""
    if not api_url:
        return
    d = _runs_dir(ws)
    d.mkdir(parents=True, exist_ok=True)
    record = {
        "flow_run_id": str(run_id),
        "api_url": api_url,
        "temporary": os.environ.get(TEMPORARY_API_ENV) == api_url,
    }
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, d / f"{parse_run_id(run_id)}.json")


def recorded_run(ws, run_id: str) -> dict | None:
    """What `record_run_api` wrote for `run_id` (api_url, temporary), or None."""
    try:
        record = json.loads((_runs_dir(ws) / f"{parse_run_id(run_id)}.json").read_text())
        return {"api_url": str(record["api_url"]), "temporary": bool(record.get("temporary"))}
    except (OSError, ValueError, KeyError, TypeError, GhostsError):
        return None


def recorded_run_api(ws, run_id: str) -> str | None:
    record = recorded_run(ws, run_id)
    return record["api_url"] if record else None


def _current_api() -> str | None:
    return get_current_settings().api.url or None


def _ui_link(url: str, run_id: str) -> str:
    """The run's page in the Prefect UI of the server at API `url` (Prefect's own default: the API URL
    without /api)."""
    base = url.rstrip("/")
    base = base.removesuffix("/api")
    return f"{base}/runs/flow-run/{run_id}"


def _how_to_resume(run_id: str, url: str | None, temporary: bool = False) -> str:
    command = f"`ghosts run resume {run_id}`"
    if not url:
        return f"resume it with `PREFECT_API_URL=<its server's API> ghosts run resume {run_id}`"
    if temporary:
        return f"resume it with {command} while the command that runs it is still going"
    return (
        f"resume it with `PREFECT_API_URL={url} ghosts run resume {run_id}`, or from the Prefect UI: "
        f"{_ui_link(url, run_id)} (Resume)"
    )


def _not_resumable(state) -> str:
    """Why a run in `state` cannot be resumed, and what to do instead."""
    if state is None:
        return "has no state: it cannot be resumed; run the pipeline again to go on (what is decided is kept)"
    if state.type == StateType.COMPLETED:
        return (
            f"is {state.name}, not Paused: it went on already (resumed from the Prefect UI or "
            "`ghosts run resume`?); nothing to resume"
        )
    if state.type in (StateType.RUNNING, StateType.SCHEDULED, StateType.PENDING):
        return f"is {state.name}, not Paused: it was resumed already and is going on; nothing to resume"
    return (
        f"is {state.name}, not Paused: it cannot be resumed; run the pipeline again to go on (what is "
        "decided is kept)"
    )


def resume_waiting_run(
    run_id: str, run_input: dict, api_url: str | None = None, temporary: bool = False
) -> None:
    """Resume the paused (or suspended) flow run `run_id` on `api_url` (the API it was recorded on; default:
    the one this process is configured with). `temporary`: that API was a foreground command's own server.

    RunNotWaiting when the run is there but not paused (its state, and what to do instead); a GhostsError
    saying exactly why and how to resume it when the API cannot be reached or does not know the run (the
    review round then stays open)."""
    here = _current_api()
    url = api_url or here
    if not url:
        raise GhostsError(
            f"no Prefect API is known for flow run {run_id}: none was recorded for it in this workspace and "
            f"this process has no PREFECT_API_URL; {_how_to_resume(run_id, None)}"
        )
    elsewhere = f" (this page talks to {here})" if here and here != url else ""
    if not api_healthy(url):
        gone = (
            "the foreground command that ran it ended, and its temporary server with it: run the "
            "pipeline again to go on (what is decided is kept)"
            if temporary
            else f"start that server again, then {_how_to_resume(run_id, url)}"
        )
        raise GhostsError(
            f"the Prefect API at {url}, where flow run {run_id} waits{elsewhere}, does not answer: {gone}"
        )
    rid = parse_run_id(run_id)
    with temporary_settings(updates={PREFECT_API_URL: url}), get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(rid)
        except ObjectNotFound:
            where = (
                f"it was recorded on {api_url}, whose database no longer has it"
                if api_url
                else "no API was recorded for it, so it ran on another server"
            )
            raise GhostsError(
                f"flow run {run_id} is not on the Prefect API at {url}: {where}; "
                f"{_how_to_resume(run_id, None)}"
            ) from None
        if not run.state or not run.state.is_paused():
            raise RunNotWaiting(f"flow run {run_id} on {url} {_not_resumable(run.state)}")
        response = client.resume_flow_run(rid, run_input=run_input)
    if response.status == SetStateStatus.REJECT:
        if response.state and response.state.type == StateType.FAILED:
            raise RunNotWaiting(
                f"flow run {run_id} on {url} timed out waiting and can no longer be resumed; run the "
                "pipeline again to go on (what is decided is kept)"
            )
        raise GhostsError(
            f"Prefect at {url} refused to resume flow run {run_id}: {response.details.reason}; "
            f"{_how_to_resume(run_id, url, temporary)}"
        )


def make_resume(ws):
    """The review room's `Resume` for this workspace: each run resumed on the API it was recorded with."""

    def resume(run_id: str, run_input: dict) -> None:
        record = recorded_run(ws, run_id) or {"api_url": None, "temporary": False}
        resume_waiting_run(run_id, run_input, record["api_url"], record["temporary"])

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


def _resumed_already(run_id: str, run_input: dict) -> None:
    """The `Resume` of a gate closing its own round: the run is this one, going on already."""


def _waits_as_deployment() -> bool:
    """Suspend (exit, freeing the worker; rescheduled on resume) only a run of a review-gate deployment: a
    foreground run, or the gate inside a pipeline run, pauses in its process."""
    return bool(deployment.id) and not flow_run.parent_flow_run_id


def _round_of_this_run(ws) -> ReviewRound | None:
    """A suspended gate runs again from the top once resumed: its round (closed by then) is the one it
    opened, not a new one."""
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
        # Resumed from the Prefect UI: close the round as the review page would have. The run waiting on it
        # is this one, resumed already: nothing to resume (and this thread may know no API to ask).
        selection.complete_selection(ws, done.reviewer or "prefect-ui", resume=_resumed_already)
        after = review_counts(ws)
    logger.info("review done by %s: %d faces accepted", done.reviewer, after["accepted"])
    return {"round_id": rnd.id, "accepted": after["accepted"], "reviewer": done.reviewer, "target": target}
