"""Training runs in the catalog, claimed by idempotency key so that one archive is trained once.

The `train` flow can be started twice for the same archive: the `ghosts.dataset.frozen` event delivered
twice, the pipeline training in the foreground while a served deployment reacts to the same freeze, or a
retry after a crash. The key `train-<archive sha256>` is unique in `training_runs`; whoever inserts it
trains. Later claimants skip while the owner is alive, take over (resuming from the last snapshot) when the
owner failed or went silent, and skip for good once the run completed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from curation.catalog.queries import first_row
from curation.catalog.schema import DatasetVersion, TrainingRun, utcnow


def _version_of(session, sha256: str) -> DatasetVersion | None:
    """The newest dataset version whose archive has this sha256 (None for an archive from elsewhere)."""
    return first_row(
        session, select(DatasetVersion).where(DatasetVersion.sha256 == sha256), DatasetVersion.id.desc()
    )


def _add_running(
    session,
    sha256: str,
    outdir: Path,
    cfg: str,
    kimg: float,
    options: dict[str, Any],
    *,
    started_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
) -> TrainingRun:
    """Add (and flush, so it has its id) the `running` row of a training run on the archive `sha256`, tied to
    the dataset version that archive is, when the workspace froze it."""
    dataset = _version_of(session, sha256)
    row = TrainingRun(
        run_dir=str(outdir),
        dataset_id=dataset.id if dataset else None,
        dataset_sha256=sha256,
        cfg=cfg,
        kimg_target=kimg,
        status="running",
        started_at=started_at or utcnow(),
        options=options,
        idempotency_key=idempotency_key,
    )
    session.add(row)
    session.flush()
    return row


# A run whose owner has not reported a tick for this long is presumed dead (a killed process leaves its
# Prefect flow run "Running" until something notices). Ticks at 1024 px on one GPU take tens of minutes.
STALE_AFTER_S = 6 * 3600


@dataclass
class Claim:
    run_id: int  # TrainingRun.id
    action: str  # start | resume | skip
    reason: str | None
    outdir: str
    status: str  # the row's status after the claim
    last_snapshot: str | None = None


def training_key(sha256: str) -> str:
    return f"train-{sha256}"


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return t.replace(tzinfo=dt.UTC) if t is not None and t.tzinfo is None else t


def claim_training_run(
    ws,
    *,
    sha256: str,
    outdir: Path,
    cfg: str,
    kimg: float,
    options: dict[str, Any],
    owner: str | None,  # the claiming Prefect flow run id
    owner_alive: Callable[[str], bool],  # is that flow run still going (not in a final state)?
    stale_after_s: float = STALE_AFTER_S,
) -> Claim:
    key = training_key(sha256)
    now = utcnow()
    body = {**options, "outdir": str(outdir), "flow_run_id": owner, "heartbeat": now.isoformat()}
    try:
        with ws.session() as s:
            row = _add_running(s, sha256, outdir, cfg, kimg, body, started_at=now, idempotency_key=key)
            return Claim(row.id, "start", None, str(outdir), "running")
    except IntegrityError:
        pass

    with ws.session() as s:
        row = s.scalars(select(TrainingRun).where(TrainingRun.idempotency_key == key)).one()
        run_id, status, started = row.id, row.status, row.started_at
        prev = dict(row.options or {})
        outdir_prev, snap, run_dir = prev.get("outdir") or row.run_dir, row.last_snapshot, row.run_dir
    holder = prev.get("flow_run_id")
    if status == "completed":
        return Claim(
            run_id, "skip", f"this archive was already trained (run {run_dir})", outdir_prev, status, snap
        )
    if status == "running" and holder and holder != owner:
        beat = (
            _aware(dt.datetime.fromisoformat(prev["heartbeat"])) if prev.get("heartbeat") else _aware(started)
        )
        fresh = beat is not None and (now - beat).total_seconds() < stale_after_s
        if fresh and owner_alive(holder):
            return Claim(
                run_id,
                "skip",
                f"flow run {holder} is training this archive already",
                outdir_prev,
                status,
                snap,
            )
    # Failed, crashed, stale, or our own earlier attempt: take the run over, unless someone else just did.
    with ws.session() as s:
        taken = s.execute(
            update(TrainingRun)
            .where(TrainingRun.id == run_id, TrainingRun.status == status, TrainingRun.started_at == started)
            .values(
                status="running",
                started_at=now,
                finished_at=None,
                cfg=cfg,
                kimg_target=kimg,
                options={**prev, **body, "taken_over_from": holder},
            )
        ).rowcount
    if not taken:
        return Claim(
            run_id, "skip", "another flow run took this training over a moment ago", outdir_prev, status, snap
        )
    return Claim(
        run_id, "resume", f"taking over from {status} run (flow run {holder})", outdir_prev, "running", snap
    )


def record_tick(ws, run_id: int, kimg: float, snapshot: str | None = None) -> None:
    """Heartbeat: the owner is alive at `kimg`; remember the newest snapshot."""
    with ws.session() as s:
        row = s.get(TrainingRun, run_id)
        row.options = {**(row.options or {}), "heartbeat": utcnow().isoformat(), "kimg": kimg}
        if snapshot:
            row.last_snapshot = snapshot


def finish_training_run(
    ws, run_id: int, status: str, run_dir: str | None = None, last_snapshot: str | None = None
) -> None:
    with ws.session() as s:
        row = s.get(TrainingRun, run_id)
        row.status = status
        row.finished_at = utcnow()
        if run_dir:
            row.run_dir = run_dir
        if last_snapshot:
            row.last_snapshot = last_snapshot


def workspace_holding(archive: Path, data: Path | None = None, *, from_data: bool = False):
    """The workspace an archive belongs to, for runs started outside the `train` flow (`ghosts train`,
    `torchrun -m training`): with `from_data` (the archive is the newest one frozen in the --data workspace) that
    workspace; else the nearest folder above the archive that is a workspace, else the --data one (`data`, or
    GHOSTS_DATA when None). None when none of them is one (an archive copied elsewhere: nothing to record it in)."""
    import os

    from curation.catalog.errors import GhostsError
    from curation.catalog.workspace import MARKER, open_workspace

    above = [p for p in Path(archive).resolve().parents if (p / MARKER).exists()][:1]
    if from_data:  # None: GHOSTS_DATA, else ./data, where the newest frozen archive was looked up
        candidates = [data, *above]
    else:
        named = data if data is not None else os.environ.get("GHOSTS_DATA") or None
        candidates = [*above, named] if named is not None else above
    for root in candidates:
        try:
            return open_workspace(root)
        except GhostsError:
            continue
    return None


@contextlib.contextmanager
def recorded_run(
    archive: Path,
    outdir: Path,
    cfg: str,
    kimg: float,
    options: dict[str, Any],
    started_by: str,
    *,
    data: Path | None = None,
    from_data: bool = False,
):
    """Record a training run started by hand in its archive's workspace (workspace_holding: `data` and
    `from_data` say which --data was given and whether the archive is its newest frozen one), status running,
    then completed or failed, so `ghosts status` and takedown's list of runs see it. Yields a callable taking
    the run folder and last snapshot when the run ends well; yields None (recording nothing) outside any
    workspace."""
    ws = workspace_holding(archive, data, from_data=from_data)
    if ws is None:
        yield None
        return
    import hashlib

    digest = hashlib.sha256()
    with open(archive, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    options = {**options, "archive": str(Path(archive).resolve()), "started_by": started_by}
    with ws.session() as s:
        run_id = _add_running(s, sha, outdir, cfg, kimg, options).id
    ended: dict[str, Any] = {}
    try:
        yield lambda run_dir, snapshot: ended.update(run_dir=run_dir, last_snapshot=snapshot)
    except BaseException:
        finish_training_run(ws, run_id, "failed")
        raise
    finish_training_run(
        ws, run_id, "completed", run_dir=ended.get("run_dir"), last_snapshot=ended.get("last_snapshot")
    )


def archive_training_status(ws, sha256: str) -> str | None:
    """The status of the `train` flow's claim on this archive (running, completed, failed), None when none."""
    with ws.session() as s:
        return s.scalar(select(TrainingRun.status).where(TrainingRun.idempotency_key == training_key(sha256)))
