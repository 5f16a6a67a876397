"""Browser tests: one headless Chromium per session, one review workspace built once from the test photos.

Chromium is Debian's (/usr/bin/chromium, installed by `.ci/run`); without it these tests fail, loudly.
"""
from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="session")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"browser tests need Chromium at {CHROMIUM} (Debian package `chromium`; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def review_ws(tmp_path_factory, faces_dir):
    """The test photos imported and analysed the real way (detection, landmarks, alignment, previews)."""
    from alignment.analyze import analyze_workspace

    from curation.ingest import ingest_paths
    from curation.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("review") / "ws")
    summary = ingest_paths(ws, [faces_dir], progress=False)
    assert summary.added >= 10, summary.as_dict()
    analyze_workspace(ws, progress=False)
    yield ws
    ws.close()


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
