"""Review rounds: a round is open while people review, and "Selection done" closes it.

A pipeline that waits for the review (the Prefect review-gate flow) opens or joins the round with its paused flow
run id; closing the round resumes that run with the selection's figures, through the `Resume` its caller passes
(flows.review_gate.resume_waiting_run). Nothing here imports Prefect: the review app starts fast and works
without a Prefect server.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Decision, Image, ReviewRound, utcnow
from curation.review.decisions import (  # current_round, last_round: importable from here too
    DEFAULT_TARGET,
    WRITE_LOCK,
    current_round,
    decision_counts,
    last_round,
    top_counts,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TARGET",
    "Completion",
    "Resume",
    "RunNotWaiting",
    "complete_selection",
    "current_round",
    "finish_round",
    "last_round",
    "open_round",
    "review_counts",
    "round_history",
]


def open_round(
    ws, target: int | None = None, flow_run_id: str | None = None, reviewer: str | None = None
) -> ReviewRound:
    """Return the open review round, creating it if none is open.

    `target` (faces wanted) and `flow_run_id` (a paused flow run to resume when the selection is done) update
    the open round when given. A new round inherits the last round's target, or DEFAULT_TARGET.
    """
    if target is not None and target < 1:
        raise GhostsError(f"review target must be at least 1 (got {target})")
    if flow_run_id is not None:
        parse_run_id(flow_run_id)
    with WRITE_LOCK, ws.session() as s:
        rnd = current_round(s)
        if rnd is None:
            prev = last_round(s)
            rnd = ReviewRound(
                target=target or (prev.target if prev and prev.target else DEFAULT_TARGET),
                reviewer=reviewer,
                started_at=utcnow(),
            )
            s.add(rnd)
        if target is not None:
            rnd.target = target
        if flow_run_id is not None:
            rnd.flow_run_id = str(flow_run_id)
        s.flush()
        return rnd


def parse_run_id(flow_run_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(flow_run_id))
    except ValueError:
        raise GhostsError(f"not a Prefect flow run id: {flow_run_id!r}") from None


class RunNotWaiting(Exception):
    """Raised by a `Resume` when the flow run is no longer paused (already resumed, timed out, gone)."""


# Resumes the paused flow run `run_id` with `run_input` (flows.review_gate.resume_waiting_run does it with
# Prefect). Raises RunNotWaiting when the run is not paused any more; any other error may pass (Prefect API
# unreachable), so the round is reopened for another try.
Resume = Callable[[str, dict], None]


@dataclass
class Completion:
    """What "Selection done" did: the closed round and what became of the run waiting on it."""

    round: ReviewRound
    resumed: bool  # a waiting flow run was resumed
    note: str  # one line for the reviewer


def complete_selection(ws, reviewer: str, resume: Resume | None = None) -> ReviewRound:
    """Close the open review round ("Selection done") and resume the flow run waiting on it, if any.

    The round gets `done_at`, `reviewer` and `accepted` (live faces whose current decision is accepted). When
    the round has a `flow_run_id`, that paused Prefect flow run is resumed with
    `prefect.flow_runs.resume_flow_run(flow_run_id, run_input=...)` where run_input is:

        {"accepted": int,    # faces accepted when the selection was closed
         "reviewer": str,    # who pressed "Selection done"
         "round_id": int}    # ReviewRound.id, to read the round back from the catalog

    The round is committed closed before the resume, so the resumed run reads a finished round. If the resume
    fails for a reason that may pass (Prefect API unreachable), the round is reopened and a GhostsError raised,
    so pressing the button again retries. If the run is no longer paused (already resumed, timed out, gone),
    the round stays closed and a warning is logged; so it does when no `resume` is given (nothing here can
    reach Prefect). With no round open, one is created and closed at once. `finish_round` also says, in one
    line for the reviewer, whether the run was resumed, and if not, exactly why and what to do.
    """
    return finish_round(ws, reviewer, resume).round


def finish_round(ws, reviewer: str, resume: Resume | None = None) -> Completion:
    """`complete_selection`, also saying whether a waiting run was resumed (for the page's message)."""
    if not reviewer:
        raise GhostsError("completing a selection needs a reviewer name")
    with WRITE_LOCK, ws.session() as s:  # no decision slips in between counting and closing
        rnd = current_round(s)
        if rnd is None:
            prev = last_round(s)
            rnd = ReviewRound(
                target=prev.target if prev and prev.target else DEFAULT_TARGET,
                started_at=utcnow(),
                reviewer=reviewer,
            )
            s.add(rnd)
        rnd.accepted = decision_counts(s)["accepted"]
        rnd.reviewer = rnd.reviewer or reviewer
        rnd.closed_by = reviewer
        rnd.done_at = utcnow()
        s.flush()
        round_id, run_id, accepted = rnd.id, rnd.flow_run_id, rnd.accepted
    note = f"selection done: {accepted} faces accepted"
    resumed = False
    if run_id:
        resumed, why = _resume(
            ws, resume, round_id, run_id, {"accepted": accepted, "reviewer": reviewer, "round_id": round_id}
        )
        note += (
            f"; pipeline run {run_id} resumed" if resumed else f"; pipeline run {run_id} not resumed: {why}"
        )
    else:
        note += (
            "; no pipeline run is recorded for this round, so none was resumed (a run paused at its review "
            "gate on this workspace resumes with `ghosts run resume RUN_ID`)"
        )
    with ws.session() as s:
        return Completion(s.get(ReviewRound, round_id), resumed, note)


def _resume(ws, resume: Resume | None, round_id: int, run_id: str, run_input: dict) -> tuple[bool, str]:
    """(True, "") once resumed; (False, why and what to do) when the run is not waiting any more. A failure
    that may pass reopens the round and raises a GhostsError saying why and how to resume."""
    try:
        if resume is None:
            raise RunNotWaiting(
                "this review page was started without a way to reach Prefect; resume the run with "
                f"`ghosts run resume {run_id}`"
            )
        resume(run_id, run_input)
        return True, ""
    except RunNotWaiting as e:
        log.warning("review round %s closed, but flow run %s was not resumed: %s", round_id, run_id, e)
        return False, str(e)
    except Exception as e:
        with WRITE_LOCK, ws.session() as s:
            rnd = s.get(ReviewRound, round_id)
            rnd.done_at, rnd.closed_by = None, None
        why = str(e) if isinstance(e, GhostsError) else f"{type(e).__name__}: {e}"
        raise GhostsError(
            f"could not resume the pipeline run {run_id} waiting on this review: {why}. The round is still "
            "open: press Selection done again once that is fixed"
        ) from e


def round_history(session, limit: int = 20) -> list[dict]:
    """The newest rounds, newest first: id, opened, closed, who opened and closed it, accepted, target, and
    how many decisions were recorded in it."""
    rounds = session.scalars(select(ReviewRound).order_by(ReviewRound.id.desc()).limit(limit)).all()
    made = (
        dict(
            session.execute(
                select(Decision.round_id, func.count())
                .where(Decision.round_id.in_([r.id for r in rounds]))
                .group_by(Decision.round_id)
            ).all()
        )
        if rounds
        else {}
    )
    return [
        {
            "id": r.id,
            "opened": r.started_at,
            "closed": r.done_at,
            "opened_by": r.reviewer,
            "closed_by": r.closed_by,
            "accepted": r.accepted,
            "target": r.target,
            "decisions": int(made.get(r.id, 0)),
            "flow_run_id": r.flow_run_id,
        }
        for r in rounds
    ]


def round_figures(session) -> dict:
    """The open round, or else the last one, as the counter shows it: its target (the default without one), id,
    whether it is open, who closed it, when, and how many it accepted; None for each without any round."""
    rnd = current_round(session) or last_round(session)
    return {
        "target": rnd.target if rnd and rnd.target else DEFAULT_TARGET,
        "round_id": rnd.id if rnd else None,
        "round_open": bool(rnd and rnd.done_at is None),
        "round_closed_by": rnd.closed_by if rnd else None,
        "round_closed_at": rnd.done_at.isoformat() if rnd and rnd.done_at else None,
        "round_accepted": rnd.accepted if rnd else None,
    }


def review_counts(ws) -> dict:
    """Faces per decision plus the round's target: what the counter "accepted N / target T" shows."""
    with ws.session() as s:
        counts = decision_counts(s)
        counts.update(round_figures(s))
        # Beside the target: who and which hashtag fill the selection (so one account can't fill the dataset).
        counts["top_owners"] = top_counts(s, Image.owner)
        counts["top_tags"] = top_counts(s, Image.query)
        return counts
