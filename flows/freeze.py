"""`freeze`: freeze the accepted faces into a dataset version and announce it with `ghosts.dataset.frozen`.

The event is what starts training when `ghosts serve` (or a prefect.yaml deployment) is running: the `train`
deployment has a trigger on it. Freezing the same selection again returns the existing version and emits the
event again, unless that archive was trained or is being trained: then no event, so no train run is created
only to skip (and training is idempotent per archive besides).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from curation.catalog.runs import archive_training_status
from curation.datasets.freeze import freeze_dataset
from flows.artifacts import artifact_key, markdown_table
from flows.events import DATASET_FROZEN, emit_dataset_frozen
from flows.workspace import open_data, resolve_data


@task(name="freeze-dataset", cache_policy=NO_CACHE)
def freeze_task(data: str, name: str, resolution: int, labels: str, mirror_check: bool):
    return freeze_dataset(
        open_data(data), name, resolution=resolution, labels=labels, mirror_check=mirror_check, progress=False
    )


@flow(name="freeze", log_prints=True)
def freeze(
    name: str = "ghosts",  # dataset name: datasets/NAME/vN/NAME-vN-RES.zip
    resolution: int = 256,  # output side in px (power of two); FFHQ itself is 1024
    labels: str = "none",  # none | source-tag (class = the tag that found the image)
    mirror_check: bool = False,  # refuse selections holding mirrored or duplicate faces
    data: str | None = None,  # workspace folder; None: GHOSTS_DATA or ./data
) -> dict[str, Any]:
    """Freeze the reviewed selection, emit `ghosts.dataset.frozen`, and return the version's facts."""
    data = resolve_data(data)
    result = freeze_task(data, name, resolution, labels, mirror_check)
    # One train flow run per archive: an archive trained (or being trained) already is not announced again,
    # so refreezing the same selection creates no train run that would only skip.
    trained = archive_training_status(open_data(data), result.sha256)
    if trained in ("running", "completed"):
        event = None
        get_run_logger().info(
            "not emitting %s: this archive is %s already",
            DATASET_FROZEN,
            "trained" if trained == "completed" else "being trained",
        )
    else:
        event = emit_dataset_frozen(result, data)
    get_run_logger().info(
        "%s %s v%d: %d faces at %d px, sha256 %s",
        "froze" if result.created else "unchanged:",
        result.name,
        result.version,
        result.count,
        result.resolution,
        result.sha256[:16],
    )
    create_markdown_artifact(
        f"## {result.name} v{result.version}\n\n"
        + markdown_table(
            [
                ("archive", f"`{result.path}`"),
                ("sha256", f"`{result.sha256}`"),
                ("faces", result.count),
                ("resolution", f"{result.resolution} px"),
                ("new version", "yes" if result.created else "no (same selection)"),
            ],
            header=("", ""),
        )
        + (
            f"\n\nEmitted `{DATASET_FROZEN}`."
            if event
            else f"\n\n`{DATASET_FROZEN}` not emitted ({trained or 'events are off'})."
        ),
        key=artifact_key("dataset", result.name),
        description="The frozen dataset version",
    )
    out = result.as_dict()
    out["event_id"] = str(event.id) if event is not None else None
    out["workspace"] = data
    out["training"] = trained
    return out
