"""What is in a workspace, counted: images by status and source, faces, decisions, datasets, runs."""
from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from curation.catalog.schema import DatasetVersion, Decision, Face, Image, NearDuplicate, TrainingRun, count_by


def workspace_status(ws) -> dict[str, Any]:
    with ws.session() as s:
        live_faces = Face.deleted.is_(False)
        datasets = s.execute(
            select(DatasetVersion.name, DatasetVersion.version, DatasetVersion.resolution, DatasetVersion.count,
                   DatasetVersion.path).order_by(DatasetVersion.name, DatasetVersion.version)
        ).all()
        return {
            "workspace": str(ws.root),
            "images": {
                "total": s.scalar(select(func.count()).select_from(Image)) or 0,
                "by_status": count_by(s, Image.status),
                "by_source": count_by(s, Image.source_kind),
                "by_tag": {k: v for k, v in count_by(s, Image.query).items() if k != "None"},
                "near_duplicate_links": s.scalar(select(func.count()).select_from(NearDuplicate)) or 0,
            },
            "faces": {
                "total": s.scalar(select(func.count()).select_from(Face).where(live_faces)) or 0,
                "manual": s.scalar(select(func.count()).select_from(Face).where(live_faces, Face.manual)) or 0,
                "flagged": s.scalar(select(func.count()).select_from(Face).where(live_faces, Face.flagged)) or 0,
                "by_decision": {
                    k: v for k, v in s.execute(
                        select(Face.decision, func.count()).where(live_faces).group_by(Face.decision)
                    ).all()
                },
            },
            "decisions_recorded": s.scalar(select(func.count()).select_from(Decision)) or 0,
            "datasets": [
                {"name": n, "version": v, "resolution": r, "count": c, "path": p} for n, v, r, c, p in datasets
            ],
            "training_runs": count_by(s, TrainingRun.status),
        }
