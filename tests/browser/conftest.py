"""Browser tests: one headless Chromium per session, one review workspace built once from the test photos.

Chromium is Debian's (/usr/bin/chromium, installed by `.ci/run`); without it these tests fail, loudly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


# Package scope: while Playwright's sync API is open it registers a running event loop in the main thread, and
# Prefect's sync/async dispatch then hands later tests (outside tests/browser) coroutines instead of results.
@pytest.fixture(scope="package")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"browser tests need Chromium at {CHROMIUM} (Debian package `chromium`; .ci/run installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def review_ws(tmp_path_factory, faces_dir):
    """The test photos imported and analysed the real way (detection, landmarks, alignment, previews)."""
    from curation.catalog.workspace import init_workspace
    from curation.sources.ingest import ingest_paths

    ws = init_workspace(tmp_path_factory.mktemp("review") / "ws")
    summary = ingest_paths(ws, [faces_dir], progress=False)
    assert summary.added >= 10, summary.as_dict()
    try:
        from curation.analysis.analyze import analyze_workspace
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("alignment"):
            raise
        faces_from_annotations(ws, faces_dir)  # until the alignment room lands
    else:
        analyze_workspace(ws, progress=False)
    yield ws
    ws.close()


def faces_from_annotations(ws, faces_dir: Path) -> None:
    """Faces from the 68-point landmark annotations shipped with the test photos (dlib's example XML files),
    with plain box crops as previews: the review page's input without running the analysis."""
    import xml.etree.ElementTree as ET

    import numpy as np
    from PIL import Image as PILImage
    from sqlalchemy import select

    from curation.catalog.imaging import load_rgb
    from curation.catalog.schema import Face, Image

    with ws.session() as s:
        by_name = {(i.provenance or {}).get("name"): i.id for i in s.scalars(select(Image))}
        for i in s.scalars(select(Image).where(Image.path.is_not(None))):
            i.status = "no_face"
    for xml in sorted(faces_dir.glob("*_with_face_landmarks.xml")):
        for node in ET.parse(xml).getroot().iter("image"):
            image_id = by_name.get(node.get("file"))
            if image_id is None:
                continue
            with ws.session() as s:
                img = s.get(Image, image_id)
                rgb = load_rgb(ws.abspath(img.path))
                img.status = "analyzed"
                for k, box in enumerate(node.iter("box")):
                    x0, y0 = float(box.get("left")), float(box.get("top"))
                    x1, y1 = x0 + float(box.get("width")), y0 + float(box.get("height"))
                    parts = sorted(box.iter("part"), key=lambda p: int(p.get("name")))
                    lm = [[float(p.get("x")), float(p.get("y"))] for p in parts]
                    side = x1 - x0
                    face = Face(
                        image_id=image_id,
                        index=k,
                        detector="hog",
                        box=[x0, y0, x1, y1],
                        landmarks=lm,
                        score=round(float(np.clip(side / 120, 0.05, 1.0)), 3),
                        upscaled=side < 256,
                        flagged=side < 256,
                        quality={"source": "landmark annotation", "flags": ["upscaled"]},
                    )
                    s.add(face)
                    s.flush()
                    m = side * 0.4
                    crop = PILImage.fromarray(rgb).crop((int(x0 - m), int(y0 - m), int(x1 + m), int(y1 + m)))
                    rel = f"previews/annotations/{face.id}.png"
                    ws.abspath(rel).parent.mkdir(parents=True, exist_ok=True)
                    crop.resize((256, 256), PILImage.Resampling.LANCZOS).save(ws.abspath(rel))
                    face.preview_path = rel


@pytest.fixture(scope="module")
def server(review_ws):
    """The review app over the analysed test photos, served by uvicorn in a thread."""
    from curation.review import ReviewConfig
    from curation.review.app import create_app
    from curation.review.server import serving

    app = create_app(review_ws, ReviewConfig(reviewer="tester", target=5))
    with serving(app) as url:
        yield url


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, device_scale_factor=1)
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    yield pg
    ctx.close()
    # A CSP violation or a script error is a bug even when the test's own checks pass.
    assert not errors, errors
