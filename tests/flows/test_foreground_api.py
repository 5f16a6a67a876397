"""Foreground runs against real Prefect servers: one API for the command and its worker processes, a lost API
ends the run with one message, and the review gate resumed where its run waits (`ghosts run resume`), or
suspended when it runs as a deployment.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from curation.catalog.errors import GhostsError
from curation.catalog.schema import ReviewRound
from curation.review.selection import open_round
from flows.review_gate import complete_selection, make_resume, record_run_api, recorded_run_api
from tests.flows.conftest import flow_run_state, start_gate
from tests.flows.test_schedules_fire import REPO, Processes, _env, _free_port, _healthy, _until

pytestmark = pytest.mark.slow

GHOSTS = [sys.executable, "-m", "flows"]


@pytest.fixture()
def procs(tmp_path):
    p = Processes(tmp_path)
    try:
        yield p
    finally:
        p.stop()


def _server(procs: Processes, home: Path, name: str = "server") -> str:
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = procs.start(
        name,
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-services",
            "--no-ui",
        ],
        _env(home),
        REPO,
    )
    _until(lambda: _healthy(api), 120, "the Prefect server to answer /health", procs, server)
    return api


def _init(ws: Path, env: dict) -> None:
    subprocess.run(GHOSTS + ["init", "--data", str(ws)], env=env, cwd=REPO, check=True, capture_output=True)


def _run(argv: list[str], env: dict, *, timeout: float) -> subprocess.CompletedProcess:
    """`argv` run from the repository, its output captured as text; the test reads the return code."""
    return subprocess.run(
        argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_a_run_whose_api_disappears_exits_with_one_message(procs, tmp_path):
    api = _server(procs, tmp_path / "server-home")
    env = _env(tmp_path / "client-home", PREFECT_API_URL=api, GHOSTS_API_GRACE="4")
    ws = tmp_path / "ws"
    _init(ws, env)
    with open(tmp_path / "out", "wb") as out, open(tmp_path / "err", "wb") as err:
        run = subprocess.Popen(
            GHOSTS + ["run", "review-gate", "--data", str(ws), "--target", "1", "--json"],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _until(
            lambda: "waiting for the review" in (tmp_path / "err").read_text(errors="replace"),
            120,
            "the gate to pause",
            procs,
        )
        os.killpg(procs.started[0][1].pid, signal.SIGKILL)  # the server goes away under the paused run
        t0 = time.monotonic()
        rc = run.wait(timeout=120)  # never hangs: the watchdog gives the API 4 s, checking every 2 s
        took = time.monotonic() - t0
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text(errors="replace")
    assert rc == 1, stderr[-3000:]
    doc = json.loads(stdout)  # the one JSON document, nothing else on stdout
    assert f"the Prefect API at {api} stopped answering" in doc["error"]
    assert stderr.count("ghosts: error:") == 1 and "rerun the command" in stderr
    assert took < 60, f"took {took:.0f} s to notice"


def test_foreground_without_an_api_starts_one_server_for_all_its_processes(tmp_path, few_faces):
    env = _env(tmp_path / "home")  # no PREFECT_API_URL, no profile: the "foreground" mode
    ws = tmp_path / "ws"
    _init(ws, env)
    done = _run(
        GHOSTS
        + [
            "run",
            "scrape-and-align",
            "--import",
            str(few_faces),
            "--data",
            str(ws),
            "--runner",
            "processes",
            "--workers",
            "2",
            "--batch-size",
            "2",
            "--json",
        ],
        env,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["new_images"] == 4 and result["faces"] >= 1
    assert sum(result["by_status"].values()) == 4 and "new" not in result["by_status"]  # every photo analysed
    # Two analysis batches ran in worker processes, each right the first time (a worker that read the
    # catalog wrong failed and was retried); none of them, nor any thread, started a server of its own.
    assert done.stderr.count("Finished in state Completed") >= 4 and "Retry 1/1" not in done.stderr
    assert "Starting temporary server" not in done.stderr, done.stderr[-3000:]
    port = done.stderr.split("View at http://127.0.0.1:", 1)[1].split("/", 1)[0]
    assert not _healthy(f"http://127.0.0.1:{port}/api")  # the command's server stopped with it


def test_ghosts_run_resume_resumes_the_gate_on_its_recorded_api(prefect_api, workspace):
    from flows.cli import main

    th, box, run_id = start_gate(workspace, target=5)
    assert recorded_run_api(workspace, run_id) == prefect_api
    res = CliRunner().invoke(
        main, ["run", "resume", "--data", str(workspace.root), "--reviewer", "carol", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert (doc["flow_run_id"], doc["api_url"], doc["resumed"], doc["accepted"]) == (
        run_id,
        prefect_api,
        True,
        0,
    )
    th.join(timeout=120)
    assert "error" not in box, box.get("error")
    assert box["result"]["reviewer"] == "carol" and flow_run_state(run_id).is_completed()
    again = CliRunner().invoke(main, ["run", "resume", run_id, "--data", str(workspace.root), "--json"])
    assert again.exit_code == 1 and "nothing to resume" in json.loads(again.stdout)["error"]


def test_selection_done_says_why_a_run_on_a_lost_server_was_not_resumed(workspace):
    import uuid

    run_id = str(uuid.uuid4())
    rnd = open_round(workspace, target=3, flow_run_id=run_id)
    record_run_api(workspace, run_id, "http://127.0.0.1:9/api")  # nothing listens there
    with pytest.raises(GhostsError) as e:
        complete_selection(workspace, "dora")
    msg = str(e.value)
    assert "http://127.0.0.1:9/api" in msg and "does not answer" in msg
    assert f"ghosts run resume {run_id}" in msg and "Prefect UI" in msg and "still open" in msg
    with workspace.session() as s:
        assert s.get(ReviewRound, rnd.id).done_at is None  # pressing again (or `ghosts run resume`) retries
    with pytest.raises(GhostsError, match="does not answer"):  # what `ghosts review` passes the page
        make_resume(workspace)(run_id, {"accepted": 0, "reviewer": "dora", "round_id": rnd.id})


SERVE = textwrap.dedent("""
    import sys
    from prefect import serve
    from flows.review_gate import review_gate
    serve(review_gate.to_deployment(name="gate", parameters={"data": sys.argv[1], "target": 2}))
""")


def test_the_gate_as_a_deployment_suspends_and_resumes_on_selection_done(procs, tmp_path):
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from curation.catalog.settings import Settings
    from curation.catalog.workspace import open_workspace

    api = _server(procs, tmp_path / "server-home")
    env = _env(tmp_path / "serve-home", PREFECT_API_URL=api, PREFECT_RUNNER_POLL_FREQUENCY="1")
    ws_dir = tmp_path / "ws"
    _init(ws_dir, env)
    (tmp_path / "serve_gate.py").write_text(SERVE)
    server = procs.started[0][1]
    served = procs.start("serve", [sys.executable, str(tmp_path / "serve_gate.py"), str(ws_dir)], env, REPO)
    with temporary_settings(updates={PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        dep = _until(
            lambda: _deployment(client, "review-gate/gate"), 120, "the deployment", procs, server, served
        )
        run = client.create_flow_run_from_deployment(dep.id)
        state = _until(
            lambda: _state_named(client, run.id, "Suspended"),
            180,
            "the gate to suspend",
            procs,
            server,
            served,
        )
        assert state.is_paused()  # suspended, not paused in a process: the served runner's process is gone
        ws = open_workspace(ws_dir, Settings())
        assert recorded_run_api(ws, str(run.id)) == api
        rnd = complete_selection(ws, "erin")
        assert rnd.done_at is not None
        final = _until(
            lambda: _final(client, run.id), 180, "the resumed gate to finish", procs, server, served
        )
        assert final.is_completed(), procs.logs_of_all()
    # Its process exited at the suspension and the served runner started it again after the resume ...
    assert procs.log("serve").count("Beginning flow run") == 2, procs.log("serve")
    with ws.session() as s:  # ... in the round it opened, not a new one
        assert [(r.id, r.closed_by) for r in s.query(ReviewRound)] == [(rnd.id, "erin")]


def _deployment(client, name):
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_deployment_by_name(name)
    except ObjectNotFound:
        return None


def _state_named(client, run_id, name):
    state = client.read_flow_run(run_id).state
    if state is not None and state.is_final():
        pytest.fail(f"the run ended as {state.name} before it was {name}: {state.message}")
    return state if state is not None and state.name == name else None


def _final(client, run_id):
    state = client.read_flow_run(run_id).state
    return state if state is not None and state.is_final() else None


FORKED = textwrap.dedent("""
    import multiprocessing, os
    from flows.local_api import TEMPORARY_API_ENV, api_healthy, foreground_api
    with foreground_api(None) as url:
        names = [p.name for p in multiprocessing.active_children()]
        print(url, api_healthy(url), os.environ[TEMPORARY_API_ENV] == url, names)
    print(api_healthy(url), TEMPORARY_API_ENV in os.environ)
""")


def test_the_temporary_server_is_forked_from_a_command_without_threads(tmp_path):
    done = _run([sys.executable, "-c", FORKED], _env(tmp_path / "home"), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    during, after = done.stdout.strip().splitlines()
    assert during.endswith("True True ['ghosts-prefect-server']"), during  # the forked child, answering
    assert after == "False False"  # stopped with the block, and the environment as it was


def test_the_temporary_server_is_a_new_process_when_threads_run(tmp_path, monkeypatch):
    from flows.local_api import TEMPORARY_API_ENV, api_healthy, foreground_api

    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "home"))
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, daemon=True)  # a thread: forking is not safe now
    busy.start()
    try:
        with foreground_api(None) as url:
            assert api_healthy(url) and os.environ[TEMPORARY_API_ENV] == url
            assert not [p for p in multiprocessing.active_children() if "prefect" in p.name]
    finally:
        stop.set()
    assert not api_healthy(url) and TEMPORARY_API_ENV not in os.environ
