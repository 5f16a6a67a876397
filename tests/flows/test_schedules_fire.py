"""Schedules fire: a real `prefect server start` (its scheduler service included) and served deployments.

The in-process test harness the other flow tests use runs no scheduler loop, so a broken scheduler (SQLAlchemy
2.1 under Prefect 3.8: "Can't evaluate bulk DML statement" on every loop, no scheduled run ever created) passed
them all while nothing nightly ever ran. Here a server runs as its own process with a one-second scheduler loop,
and two `serve` processes register their deployments with it:

- a two-second interval deployment of a tiny flow, served the way `ghosts serve` serves (prefect.serve of
  to_deployment): the scheduler must create a run and the served runner must take it and complete it;
- `ghosts serve --cron "* * * * *"` itself: the scheduler must turn its scrape-and-align schedule into
  scheduled runs on the next minutes, with the parameters the command was given.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any Prefect setting (the session's test harness has its own), plus
    a private PREFECT_HOME and the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


class Processes:
    """Subprocesses in their own process groups, each with its output in a log file; all killed at the end."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []
        self.server: subprocess.Popen | None = None
        self.stopped: set[int] = (
            set()
        )  # never signal a group twice: its id could belong to someone else by then

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.started.append((name, proc))
        return proc

    def log(self, name: str) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return text[-4000:]

    def logs_of_all(self) -> str:
        return "\n".join(
            f"----- {name} (exit {p.poll()}) -----\n{self.log(name)}" for name, p in self.started
        )

    def stop(self, *names: str) -> None:
        """Stop the named processes (all when none named), SIGTERM first, then SIGKILL for their groups."""
        chosen = [
            proc
            for name, proc in reversed(self.started)
            if (not names or name in names) and proc.pid not in self.stopped
        ]
        self.stopped.update(proc.pid for proc in chosen)
        for proc in chosen:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5  # a served runner waits for its flow run: no need here
        for proc in chosen:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            try:  # the group too: a served runner's flow-run children, uvicorn's workers
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def procs(tmp_path_factory):
    p = Processes(tmp_path_factory.mktemp("schedule-logs"))
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture(scope="module")
def scheduler_server(procs, tmp_path_factory) -> str:
    """`prefect server start` with a one-second scheduler loop; yields its API URL."""
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = _env(
        tmp_path_factory.mktemp("server-home"),
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="1",
        PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS="1",
        # a handful of runs ahead, not the default hour's worth (1,800 runs of a 2 s interval)
        PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS="2",
        PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS="5",
        PREFECT_SERVER_SERVICES_SCHEDULER_MIN_SCHEDULED_TIME="PT10S",
    )
    server = procs.start(
        "server",
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        REPO,
    )
    procs.server = server
    _until(lambda: _healthy(api), 120, "the Prefect server to answer /health", procs, server)
    return api


def _healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _until(predicate, timeout: float, what: str, procs: Processes, *must_live: subprocess.Popen):
    """Poll predicate() (every 0.5 s, at most `timeout` s) until it returns something truthy; fail with every
    process's log if it does not, or as soon as a process that must keep running has exited."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        dead = [p for p in must_live if p.poll() is not None]
        if dead:
            pytest.fail(f"a process exited while waiting for {what}\n{procs.logs_of_all()}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}\n{procs.logs_of_all()}")


def _post(api: str, path: str, body: dict) -> list[dict]:
    resp = httpx.post(f"{api}{path}", json=body, timeout=10)
    resp.raise_for_status()
    return resp.json()


def _deployment(api: str, flow_name: str, name: str) -> dict | None:
    try:
        resp = httpx.get(f"{api}/deployments/name/{flow_name}/{name}", timeout=5)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None


def _runs(api: str, deployment_id: str) -> list[dict]:
    return _post(
        api,
        "/flow_runs/filter",
        {
            "limit": 50,
            "offset": 0,
            "sort": "EXPECTED_START_TIME_ASC",
            "deployments": {"id": {"any_": [deployment_id]}},
        },
    )


TICK_FLOW = """
import os
import sys
from pathlib import Path

from prefect import flow, serve
from prefect.runtime import flow_run


@flow(name="tick")
def tick(out: str) -> str:
    # the run leaves its id behind: proof that the served runner executed this code, not just a state change
    (Path(out) / f"{flow_run.id}.done").write_text("ran")
    return flow_run.id


if __name__ == "__main__":
    serve(tick.to_deployment(name="every-2s", interval=2, parameters={"out": sys.argv[1]}))
"""


def test_interval_schedule_creates_runs_that_the_served_runner_completes(scheduler_server, procs, tmp_path):
    api = scheduler_server
    script = tmp_path / "tick_flow.py"
    script.write_text(textwrap.dedent(TICK_FLOW))
    out = tmp_path / "out"
    out.mkdir()
    serving = procs.start(
        "serve-tick",
        [sys.executable, str(script), str(out)],
        _env(tmp_path / "home", PREFECT_API_URL=api, PREFECT_RUNNER_POLL_FREQUENCY="1"),
        tmp_path,
    )

    deployment = _until(
        lambda: _deployment(api, "tick", "every-2s"), 60, "the served deployment", procs, serving
    )
    assert [s["schedule"]["interval"] for s in deployment["schedules"]] == [2.0]

    def completed():
        runs = _runs(api, deployment["id"])
        return [r for r in runs if r["state_type"] == "COMPLETED"]

    done = _until(completed, 60, "a scheduled run of tick/every-2s to complete", procs, serving, procs.server)
    run = done[0]
    assert run["auto_scheduled"], "the run was not created by the server's scheduler"
    assert run["state_name"] == "Completed"
    assert (out / f"{run['id']}.done").read_text() == "ran"
    procs.stop("serve-tick")  # its runs every 2 s would only load the box from here on


def test_ghosts_serve_cron_schedule_becomes_scheduled_runs(scheduler_server, procs, tmp_path):
    api = scheduler_server
    photos = tmp_path / "photos"  # empty: a run that starts at a minute boundary has nothing to analyse
    photos.mkdir()
    workspace = tmp_path / "ws"
    ghosts = str(Path(sys.executable).with_name("ghosts"))
    subprocess.run([ghosts, "init", "--data", str(workspace)], check=True, capture_output=True, timeout=120)
    serving = procs.start(
        "ghosts-serve",
        [
            ghosts,
            "serve",
            "--cron",
            "* * * * *",
            "--import",
            str(photos),
            "--no-train-on-freeze",
            "--data",
            str(workspace),
        ],
        _env(tmp_path / "home", PREFECT_API_URL=api),
        tmp_path,
    )

    deployment = _until(
        lambda: _deployment(api, "scrape-and-align", "scheduled"),
        90,
        "ghosts serve's scrape-and-align/scheduled deployment",
        procs,
        serving,
        procs.server,
    )
    assert [(s["schedule"]["cron"], s["active"]) for s in deployment["schedules"]] == [("* * * * *", True)]

    def scheduled():
        runs = [r for r in _runs(api, deployment["id"]) if r["auto_scheduled"]]
        return runs if len(runs) >= 2 else None

    runs = _until(
        scheduled, 30, "the scheduler to schedule scrape-and-align runs", procs, serving, procs.server
    )
    starts = [datetime.fromisoformat(r["expected_start_time"]) for r in runs]
    assert all(t.second == 0 and t.microsecond == 0 for t in starts)  # every minute, on the minute
    assert starts == sorted(set(starts))
    assert runs[0]["parameters"]["paths"] == [str(photos)]
    assert runs[0]["parameters"]["data"] == str(workspace.resolve())
    procs.stop("ghosts-serve")
