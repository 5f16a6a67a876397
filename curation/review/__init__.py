"""The review page: where a person picks the best faces, by keyboard, with every decision saved at once.

Plain functions (used by the app, the CLI and the Prefect review gate):
    decide(ws, face_ids, decision, reviewer, reason=None) -> Batch
    undo_last(ws, reviewer) -> Batch | None
    open_round(ws, target=None, flow_run_id=None) -> ReviewRound
    complete_selection(ws, reviewer, resume=None) -> ReviewRound

The web app itself is curation.review.app.create_app(ws, config, resume) (FastAPI: imported only by those
who serve it).
"""

from curation.review.config import ReviewConfig, make_config
from curation.review.decisions import Batch, decide, decision_counts, delete_face, undo_last
from curation.review.selection import complete_selection, current_round, open_round

__all__ = [
    "Batch",
    "ReviewConfig",
    "complete_selection",
    "current_round",
    "decide",
    "decision_counts",
    "delete_face",
    "make_config",
    "open_round",
    "undo_last",
]
