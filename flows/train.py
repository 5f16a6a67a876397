"""`train`: train StyleGAN2-ADA on a frozen archive, once per archive, reporting progress to Prefect.

Started by the pipeline, by hand, or by the `ghosts.dataset.frozen` event (the `train` deployment's
trigger). The run is claimed in the catalog under the idempotency key `train-<archive sha256>` (curation.catalog.runs),
so an event delivered twice, or the pipeline and a served deployment reacting to the same freeze, start one
training; a claim left by a failed or vanished run is taken over and resumed from its last snapshot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound
from prefect.runtime import flow_run

from curation.catalog.errors import GhostsError
from curation.catalog.runs import claim_training_run, finish_training_run, record_tick
from flows.artifacts import artifact_key, data_uri
from flows.workspace import open_data, resolve_data
from training.checkpoint import latest_snapshot
from training.config import TrainSettings, build_options, resolve_resume
from training.dataset import file_sha256
from training.loop import train as run_training

__all__ = ["TrainSettings", "run_outdir", "train", "train_network"]


def _flow_run_alive(run_id: str) -> bool:
    """Is that flow run still going? Unknown runs count as gone."""
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(run_id)).state
    except (ValueError, ObjectNotFound, httpx.HTTPError):  # not a run id, deleted run, API unreachable
        return False
    return state is not None and not state.is_final()


def run_outdir(ws, archive: Path, sha256: str) -> Path:
    """One parent folder per archive, so `--resume latest` inside it can only find this archive's runs."""
    return ws.runs_dir / f"{archive.stem}-{sha256[:12]}"


@task(name="train-network", cache_policy=NO_CACHE)
def train_network(
    data: str, archive: str, settings: TrainSettings, outdir: str, resume_latest: bool, run_id: int
) -> dict[str, Any]:
    ws = open_data(data)
    resume = settings.resume  # any --resume value: a file, a run folder, latest, a named source
    if resume_latest and latest_snapshot(Path(outdir)) is not None:
        resume = "latest"  # continue the interrupted run exactly
    opts = build_options(archive, outdir, settings, resume=resume)
    if resume == "latest":
        get_run_logger().info("resuming the interrupted run in %s", outdir)
    total = opts.kimg
    progress_id = create_progress_artifact(
        progress=0.0,
        key=artifact_key("train-progress"),
        description=f"kimg of {total:g} for {Path(archive).name}",
    )

    def on_tick(stats: dict, fakes: Path | None) -> None:
        kimg = float(stats.get("Progress/kimg", 0.0))
        update_progress_artifact(
            progress_id,
            progress=min(100.0, 100.0 * kimg / total),
            description=f"{kimg:.3f} of {total:g} kimg",
        )
        if fakes is not None:
            create_image_artifact(
                image_url=data_uri(Path(fakes)),
                key=artifact_key("train-fakes"),
                description=f"Generated faces at {kimg:.3f} kimg ({Path(fakes).name})",
            )
        record_tick(ws, run_id, kimg)

    result = run_training(opts, progress=on_tick)
    snapshot = str(result.snapshot) if result.snapshot is not None else None
    update_progress_artifact(
        progress_id, progress=100.0, description=f"done: {result.cur_nimg / 1000:g} kimg"
    )
    rows = [
        {"statistic": k, "value": round(v, 6) if isinstance(v, float) else v}
        for k, v in sorted(result.stats.items())
    ]
    create_table_artifact(
        table=rows or [{"statistic": "kimg", "value": result.cur_nimg / 1000}],
        key=artifact_key("train-stats"),
        description="Statistics of the last training tick",
    )
    return {
        "run_dir": str(result.run_dir),
        "snapshot": snapshot,
        "kimg": result.cur_nimg / 1000,
        "augment_p": result.augment_p,
        "stats": result.stats,
    }


@flow(name="train", log_prints=True)
def train(
    archive: str,  # the dataset zip written by freeze
    settings: TrainSettings | None = None,  # the training options (training.config); None: their defaults
    sha256: str | None = None,  # expected archive digest (the frozen event carries it); checked when given
    data: str | None = None,  # workspace folder; None: GHOSTS_DATA or ./data
    stale_after_hours: float = 6,  # a claimed run silent this long is presumed dead and taken over
) -> dict[str, Any]:
    """Train on `archive` unless this archive was (or is being) trained already."""
    logger = get_run_logger()
    settings = settings or TrainSettings()
    data = resolve_data(data)
    ws = open_data(data)
    path = Path(archive).expanduser()
    if not path.is_file():
        raise GhostsError(
            f"no dataset archive at {path}: freeze one first (`ghosts freeze`), or copy it here"
        )
    resolve_resume(settings.resume)  # a wrong --resume fails now, before a run is claimed
    digest = file_sha256(path)
    if sha256 and sha256 != digest:
        raise GhostsError(
            f"{path} has sha256 {digest[:16]}..., not the {sha256[:16]}... that was frozen: the file "
            "changed or is a different version; freeze again"
        )
    outdir = run_outdir(ws, path, digest)
    claim = claim_training_run(
        ws,
        sha256=digest,
        outdir=outdir,
        cfg=settings.cfg,
        kimg=settings.kimg,
        options={"archive": str(path.resolve()), "settings": settings.model_dump()},
        owner=str(flow_run.id) if flow_run.id else None,
        owner_alive=_flow_run_alive,
        stale_after_s=stale_after_hours * 3600,
    )
    if claim.action == "skip":
        logger.info("not training: %s", claim.reason)
        return {
            "skipped": True,
            "reason": claim.reason,
            "training_run_id": claim.run_id,
            "outdir": claim.outdir,
            "snapshot": claim.last_snapshot,
            "sha256": digest,
        }
    if claim.reason:
        logger.info(claim.reason)
    try:
        out = train_network(data, str(path), settings, claim.outdir, claim.action == "resume", claim.run_id)
    except BaseException:
        finish_training_run(ws, claim.run_id, "failed")
        raise
    finish_training_run(ws, claim.run_id, "completed", run_dir=out["run_dir"], last_snapshot=out["snapshot"])
    return {"skipped": False, "training_run_id": claim.run_id, "sha256": digest, **out}
