"""Analysis fanned out to a Dask cluster gives exactly what threads give."""

from __future__ import annotations

import shutil

from sqlalchemy import select

from curation.catalog.schema import Face, Image
from curation.catalog.workspace import open_workspace
from curation.sources.ingest import ingest_paths


def _faces(ws) -> list[tuple]:
    """Everything analysis wrote, keyed by the photo's content, rounded past float noise."""
    with ws.session() as s:
        rows = s.execute(
            select(
                Image.sha256,
                Image.status,
                Face.index,
                Face.box,
                Face.landmarks,
                Face.quad,
                Face.score,
                Face.flagged,
            )
            .outerjoin(Face, Face.image_id == Image.id)
            .order_by(Image.sha256, Face.index)
        ).all()

    def rnd(v):
        if isinstance(v, list):
            return [rnd(x) for x in v]
        return round(v, 3) if isinstance(v, float) else v

    return [tuple(rnd(v) for v in row) for row in rows]


def test_dask_runner_matches_threads(prefect_api, workspace, few_faces, tmp_path):
    from distributed import LocalCluster

    from flows.scrape import scrape_and_align

    ingest_paths(workspace, [few_faces], progress=False)
    workspace.close()
    copy = tmp_path / "copy"
    shutil.copytree(workspace.root, copy)

    threads = scrape_and_align(data=str(workspace.root), runner="threads", workers=1, batch_size=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        dask = scrape_and_align(data=str(copy), dask_address=cluster.scheduler_address, batch_size=1)

    assert threads["new_images"] == dask["new_images"] == 4
    a, b = _faces(open_workspace(workspace.root)), _faces(open_workspace(copy))
    assert a == b
    assert sum(1 for row in a if row[2] is not None) >= 3  # faces were found, not just nothing twice
