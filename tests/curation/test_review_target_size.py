"""The target size as one workspace setting: `ghosts analyze` and `ghosts review` write it, the analysis, the
review page's flags and filters, auto-accept and manual crops read it (default 512)."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import select

from alignment.quality import DEFAULT_TARGET_SIZE, TARGET_SIZE_SETTING
from curation.analysis.analyze import analyze_images
from curation.catalog.schema import Face, Image, get_setting, set_setting
from curation.review.app import create_app
from curation.review.config import ReviewConfig
from flows.cli import main

PHOTO = "Tom_Cruise_avp_2014_4.jpg"
CRUISE_SIDE = 704.9  # the face's crop side at the photo's own size (565 x 800)


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _tile_ids(html: str) -> list[int]:
    return [int(x) for x in re.findall(r'class="tile[^"]*" data-face-id="(\d+)"', html)]


@pytest.fixture
def two_faces(workspace, faces_dir, tmp_path):
    """The same face at two scales, crops of about 300 and 600 px; imported, not analysed yet."""
    folder = tmp_path / "in"
    folder.mkdir()
    with PILImage.open(faces_dir / PHOTO) as im:
        for side in (300, 600):
            k = side / CRUISE_SIDE
            im.resize((round(im.width * k), round(im.height * k)), PILImage.LANCZOS).save(
                folder / f"face{side}.jpg", quality=95
            )
    assert _run("import", folder, "--data", workspace.root).exit_code == 0
    return workspace


def _faces_by_side(ws) -> dict[int, Face]:
    with ws.session() as s:
        rows = s.execute(select(Face, Image.path).join(Image, Face.image_id == Image.id)).all()
        s.expunge_all()
    return {300 if f.quad_size < 450 else 600: f for f, _ in rows}


def test_analyze_without_flag_uses_512_then_target_size_256_is_followed_by_the_page(two_faces):
    ws = two_faces
    r = _run("analyze", "--workers", "1", "--no-identities", "--data", ws.root)
    assert r.exit_code == 0, r.output
    faces = _faces_by_side(ws)
    assert set(faces) == {300, 600}
    assert 250 < faces[300].quad_size < 350 and 550 < faces[600].quad_size < 650
    # No flag, fresh workspace: the default 512, written by nothing (the setting stays unset until chosen).
    assert faces[300].upscaled and not faces[600].upscaled
    assert faces[300].quality["target_size"] == DEFAULT_TARGET_SIZE == 512
    with ws.session() as s:
        assert get_setting(s, TARGET_SIZE_SETTING) is None

    def page(flag: str, client: TestClient) -> list[int]:
        r = client.get(f"/?flag={flag}&decision=all")
        assert r.status_code == 200, r.text
        return sorted(_tile_ids(r.text))

    with TestClient(create_app(ws, ReviewConfig(reviewer="ann")), base_url="http://127.0.0.1") as c:
        assert page("upscaled", c) == [faces[300].id]
        assert "flags @512px" in c.get("/").text

    # The user works towards 256: the analysis (even with nothing left to analyse) keeps the choice ...
    r = _run("analyze", "--workers", "1", "--no-identities", "--target-size", "256", "--data", ws.root)
    assert r.exit_code == 0 and "analysed 0 images" in r.output
    with ws.session() as s:
        assert get_setting(s, TARGET_SIZE_SETTING) == 256
    # ... and the page's filter, tiles and detail follow it without a new analysis.
    with TestClient(create_app(ws, ReviewConfig(reviewer="ann")), base_url="http://127.0.0.1") as c:
        assert page("upscaled", c) == []
        html = c.get("/").text
        assert "flags @256px" in html and 'data-target-size="256"' in html
        api = c.get("/api/faces?decision=all").json()
        assert [("upscaled" in t["hints"]) for t in api["faces"]] == [False, False]

    # `ghosts review --target-size 1024` (the same setting through the review's config): both upscaled now.
    with TestClient(
        create_app(ws, ReviewConfig(reviewer="ann", target_size=1024)), base_url="http://127.0.0.1"
    ) as c:
        assert page("upscaled", c) == sorted(f.id for f in faces.values())
    with ws.session() as s:
        assert get_setting(s, TARGET_SIZE_SETTING) == 1024


def test_the_scrape_flows_batches_follow_the_setting(two_faces):
    """A workspace set to 1024 (by the review) analyses new images at 1024 in the flows' batch unit
    (`analyze_images`, which the scrape flow's tasks call with no target size of their own)."""
    ws = two_faces
    with ws.session() as s:
        set_setting(s, TARGET_SIZE_SETTING, 1024)
        ids = list(s.scalars(select(Image.id)))
    assert analyze_images(ws, ids)["faces"] == 2
    faces = _faces_by_side(ws)
    assert faces[300].upscaled and faces[600].upscaled
    assert faces[600].quality["target_size"] == 1024


def test_analyze_target_size_must_be_a_dataset_side(workspace):
    r = CliRunner().invoke(main, ["analyze", "--target-size", "300", "--data", str(workspace.root)])
    assert r.exit_code == 2 and "--target-size" in r.output
