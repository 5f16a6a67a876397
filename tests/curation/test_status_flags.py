"""`ghosts status` counts flagged faces under the workspace's target size, as the review page does, not the
stored `flagged` column (written for the target the analysis ran with)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from curation.catalog.schema import Face, set_setting
from curation.catalog.status import workspace_status
from curation.catalog.thresholds import TARGET_SIZE_SETTING
from curation.sources.ingest import ingest_bytes
from flows.cli import main
from tests.curation.test_review_support import add_face, photo_bytes


def _faces(ws) -> None:
    """Analysed at 512: a 300-px and a 600-px crop (stored flags as the analysis wrote them), one blurry
    600-px crop, and one face without a measured side that the analysis flagged."""
    image_id = ingest_bytes(
        ws, photo_bytes(1), name="a.png", source_kind="folder", source_ref="a.png"
    ).image_id
    small = add_face(ws, image_id, index=0, box=[0.0, 0.0, 300.0, 300.0], upscaled=True, flagged=True)
    big = add_face(ws, image_id, index=1, box=[0.0, 0.0, 600.0, 600.0])
    add_face(ws, image_id, index=2, box=[0.0, 0.0, 600.0, 600.0], blur=5.0, flagged=True)
    unmeasured = add_face(ws, image_id, index=3, flagged=True)
    with ws.session() as s:
        for fid, side in ((small, 300.0), (big, 600.0)):
            s.get(Face, fid).quad_size = side
        s.get(Face, unmeasured).quad_size = None


def _flagged_cli(ws) -> int:
    r = CliRunner().invoke(main, ["status", "--json", "--data", str(ws.root)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)["faces"]["flagged"]


def test_flagged_follows_the_target_size_setting(workspace):
    _faces(workspace)
    # No setting: 512, the small crop is upscaled, plus the blurry and the unmeasured ones.
    assert workspace_status(workspace)["faces"]["flagged"] == 3
    with workspace.session() as s:
        set_setting(s, TARGET_SIZE_SETTING, 256)  # the small crop is big enough now
    assert workspace_status(workspace)["faces"]["flagged"] == 2
    with workspace.session() as s:
        set_setting(s, TARGET_SIZE_SETTING, 1024)  # both measured clean crops are too small now
    assert workspace_status(workspace)["faces"]["flagged"] == 4
    assert _flagged_cli(workspace) == 4
