"""The Prefect events ghosts emits, and the one place their names and payloads are written down."""

from __future__ import annotations

from typing import Any

from prefect.events import Event, emit_event

DATASET_FROZEN = "ghosts.dataset.frozen"
DATASET_RESOURCE_PREFIX = "ghosts.dataset."


def dataset_resource(name: str, version: int) -> dict[str, str]:
    return {
        "prefect.resource.id": f"{DATASET_RESOURCE_PREFIX}{name}.v{version}",
        "prefect.resource.name": f"{name} v{version}",
    }


def frozen_payload(result, workspace: str) -> dict[str, Any]:
    """What a `ghosts.dataset.frozen` event carries (the `train` deployment's trigger reads these keys).

    archive: absolute path of the zip; sha256: its digest (the training idempotency key is built from it);
    workspace: the workspace folder, so the triggered training records its run in the same catalog.
    """
    return {
        "archive": str(result.path),
        "sha256": result.sha256,
        "name": result.name,
        "version": result.version,
        "count": result.count,
        "resolution": result.resolution,
        "created": result.created,
        "workspace": workspace,
    }


def emit_dataset_frozen(result, workspace: str) -> Event | None:
    """Emit `ghosts.dataset.frozen` for a `curation.datasets.freeze.FreezeResult` (None when events are off)."""
    return emit_event(
        DATASET_FROZEN,
        resource=dataset_resource(result.name, result.version),
        payload=frozen_payload(result, workspace),
    )
