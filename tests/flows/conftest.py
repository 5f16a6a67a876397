"""The ONE Prefect test server of the session, and workspaces with real photos for the flow tests.

Prefect reads some settings when it is first imported, so the environment is set here, before any test
module of this folder imports it; the harness fixture repeats the important ones with temporary_settings in
case another folder's tests imported Prefect first.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import pytest

from curation.catalog.schema import ReviewRound

_PREFECT_HOME = tempfile.mkdtemp(prefix="ghosts-prefect-home-")
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ.setdefault("PREFECT_HOME", _PREFECT_HOME)
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "false"


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory):
    """A temporary Prefect server (API + database) for the whole session; yields its API URL."""
    from prefect.settings import (
        PREFECT_HOME,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT,
        PREFECT_SERVER_ANALYTICS_ENABLED,
        temporary_settings,
    )
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    updates = {
        PREFECT_HOME: home,
        PREFECT_SERVER_ANALYTICS_ENABLED: False,
        PREFECT_RESULTS_PERSIST_BY_DEFAULT: False,
    }
    with temporary_settings(updates=updates), prefect_test_harness(server_startup_timeout=90):
        from prefect.settings import get_current_settings

        yield get_current_settings().api.url


def wait_for(predicate, timeout: float = 60, every: float = 0.2, what: str = "condition"):
    """Poll until predicate() is truthy; returns its value or fails the test with `what`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def read_artifacts(key: str, flow_run_id=None) -> list:
    """Artifacts with `key` (every version, newest first), optionally of one flow run, from the test server."""
    import httpx
    from prefect.client.schemas.objects import Artifact
    from prefect.settings import get_current_settings

    body: dict = {"artifacts": {"key": {"any_": [key]}}, "limit": 200, "offset": 0, "sort": "CREATED_DESC"}
    if flow_run_id is not None:
        body["artifacts"]["flow_run_id"] = {"any_": [str(flow_run_id)]}
    # The sync client's read_artifacts sends nulls the 3.8 server refuses; the REST call is one line.
    resp = httpx.post(f"{get_current_settings().api.url}/artifacts/filter", json=body, timeout=30)
    resp.raise_for_status()
    return Artifact.model_validate_list(resp.json())


def read_artifact(key: str, flow_run_id=None):
    """The newest artifact with `key`, or None."""
    found = read_artifacts(key, flow_run_id)
    return found[0] if found else None


def flow_run_state(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def start_gate(ws, **kw):
    """The review gate of `ws` run in a thread, returned once its flow run is paused: (thread, box, run id).
    The box gets the gate's "result", or the "error" it raised."""
    # Prefect (which flows.review_gate imports) only once PREFECT_HOME above is set, as everywhere in this file.
    from flows.review_gate import review_gate

    box: dict = {}

    def target():
        try:
            box["result"] = review_gate(data=str(ws.root), poll_interval=1, **kw)
        except BaseException as e:  # noqa: BLE001 - handed to the test thread, whose assertion reports it
            box["error"] = e

    th = threading.Thread(target=target, daemon=True)
    th.start()

    def paused_run():
        with ws.session() as s:
            rnd = s.query(ReviewRound).filter(ReviewRound.done_at.is_(None)).one_or_none()
            run_id = rnd.flow_run_id if rnd else None
        return run_id if run_id and flow_run_state(run_id).is_paused() else None

    return th, box, wait_for(paused_run, timeout=90, what="the review gate to pause")


@pytest.fixture(scope="session")
def few_faces(faces_dir, tmp_path_factory) -> Path:
    """Four of the test photos (symlinked): a frontal face, two PASCAL scenes, and a photo with no face."""
    d = tmp_path_factory.mktemp("few-faces")
    for name in ("Tom_Cruise_avp_2014_4.jpg", "2008_001322.jpg", "2009_004587.jpg", "dogs.jpg"):
        os.symlink(faces_dir / name, d / name)
    return d
