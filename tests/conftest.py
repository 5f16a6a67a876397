"""Shared fixtures: the read-only photo test data and fresh workspaces in temporary folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata"


@pytest.fixture(autouse=True)
def _clean_ghosts_env(monkeypatch):
    # A developer's own GHOSTS_DATA / GHOSTS_DB_URL must never leak into a test workspace.
    for key in list(os.environ):
        if key.startswith("GHOSTS_"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    d = TESTDATA / "faces"
    if not (d / "Tom_Cruise_avp_2014_4.jpg").exists():
        pytest.fail(f"test photos missing: expected ../shared/testdata/faces beside the repo (looked in {d})")
    return d


@pytest.fixture
def workspace(tmp_path):
    from curation.catalog.workspace import init_workspace

    ws = init_workspace(tmp_path / "ws")
    yield ws
    ws.close()
