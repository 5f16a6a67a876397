"""`review-gate`: wait for a person to finish the selection on the review page.

The flow opens (or joins) the review round with its own flow run id, publishes what is left to review and
where, then pauses. "Selection done" on the review page closes the round and resumes this run with a
`ReviewDone` input (`complete_selection` here, which passes `resume_waiting_run` to the review room's
`complete_selection`); the Prefect UI's resume form does the same by hand.
"""
from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput
from prefect.runtime import flow_run

from curation.catalog.errors import GhostsError
from curation.catalog.schema import ReviewRound
from curation.review import selection
from curation.review.selection import RunNotWaiting, open_round, parse_run_id, review_counts
from flows.artifacts import artifact_key, markdown_table
from flows.workspace import open_data, resolve_data

REVIEW_URL = "http://127.0.0.1:8765/"  # where `ghosts review` serves the page by default


def resume_waiting_run(run_id: str, run_input: dict) -> None:
    """Resume the paused flow run `run_id` (the review room's `Resume`); RunNotWaiting when it is not paused."""
    try:
        # _sync: this is a plain function even when a caller happens to run inside an event loop.
        resume_flow_run(parse_run_id(run_id), run_input=run_input, _sync=True)
    except (NotPausedError, FlowPauseTimeout, ObjectNotFound) as e:
        raise RunNotWaiting(str(e)) from e


def complete_selection(ws, reviewer: str) -> ReviewRound:
    """"Selection done": close the open round and resume the flow run waiting on it, if any."""
    return selection.complete_selection(ws, reviewer, resume=resume_waiting_run)


class ReviewDone(RunInput):
    """What resumes the gate: the review page sends all three; in the Prefect UI, a reviewer name is enough."""

    accepted: int = 0  # faces accepted when the selection was closed
    reviewer: str = "prefect-ui"  # who closed it
    round_id: int | None = None  # the review round (ReviewRound.id)


def gate_markdown(counts: dict[str, Any], target: int, data: str, review_url: str, timeout_hours: float) -> str:
    left = max(target - counts.get("accepted", 0), 0)
    table = markdown_table([(k, counts.get(k, 0)) for k in ("accepted", "rejected", "skipped", "undecided", "total")],
                           header=("faces", "count"))
    return (
        f"## Review needed: {counts.get('accepted', 0)} of {target} faces accepted ({left} to go)\n\n"
        f"{table}\n\n"
        f"Open the review page at [{review_url}]({review_url}) (start it with "
        f"`ghosts review --data {data} --target {target}` if it is not running), choose the faces, and press "
        f"**Selection done**: this run then goes on to freeze the dataset. Resuming this run from the Prefect UI "
        f"does the same. The run waits {timeout_hours:g} hours at most."
    )


@flow(name="review-gate", log_prints=True)
def review_gate(
    target: int = 1000,  # faces wanted (~1k is enough for StyleGAN2-ADA's small-data regime)
    data: str | None = None,  # workspace folder; None: GHOSTS_DATA or ./data
    review_url: str = REVIEW_URL,  # the address people open to review
    timeout_hours: float = 72,  # give up waiting after this long (the round stays open)
    poll_interval: int = 10,  # seconds between checks for the resume
) -> dict[str, Any]:
    """Pause until the review is done; return the round's figures."""
    logger = get_run_logger()
    data = resolve_data(data)
    ws = open_data(data)
    if target < 1:
        raise GhostsError(f"review target must be at least 1 (got {target})")
    rnd = open_round(ws, target=target, flow_run_id=str(flow_run.id))
    counts = review_counts(ws)
    md = gate_markdown(counts, target, data, review_url, timeout_hours)
    create_markdown_artifact(md, key=artifact_key("review-gate"), description="Waiting for the review")
    logger.info("waiting for the review of round %s: open %s and press Selection done", rnd.id, review_url)
    try:
        done = pause_flow_run(
            wait_for_input=ReviewDone.with_initial_data(description=md, accepted=counts.get("accepted", 0),
                                                        round_id=rnd.id),
            timeout=max(1, int(timeout_hours * 3600)), poll_interval=poll_interval, key=f"review-round-{rnd.id}",
        )
    except FlowPauseTimeout:
        raise GhostsError(f"nobody pressed Selection done within {timeout_hours:g} hours; the review round stays "
                          "open: finish it and run the pipeline again (what is decided is kept)") from None
    after = review_counts(ws)
    if after.get("round_open") and after.get("round_id") == rnd.id:
        # Resumed from the Prefect UI: close the round as the review page would have.
        complete_selection(ws, reviewer=done.reviewer or "prefect-ui")
        after = review_counts(ws)
    logger.info("review done by %s: %d faces accepted", done.reviewer, after["accepted"])
    return {"round_id": rnd.id, "accepted": after["accepted"], "reviewer": done.reviewer, "target": target}
