"""One Prefect API for a foreground command and every process it starts, watched so a lost API never hangs it.

Without PREFECT_API_URL, Prefect starts a temporary server inside each process that needs one: analysis
worker processes (spawned by the process-pool task runner) each started their own, which cost a minute for
four photos. `foreground_api()` starts one server for the whole command instead (Prefect's API app without
its services and UI, as `prefect server start --no-services --no-ui` runs it: a foreground run needs
neither), forked from the command's own process, which has Prefect imported already, while that process
starts its analysis workers and imports the flows; it exports the server's address in the environment so
every child process inherits it, and stops it when the command ends.

`api_watchdog()` polls the API's health endpoint while the command runs; when the API stops answering for
`GHOSTS_API_GRACE` seconds (default 20) it prints one line and ends the process with exit status 1, since
Prefect's client would otherwise retry, and a crashed engine may wait forever.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from prefect.context import refresh_global_settings_context
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
from prefect.settings import PREFECT_API_URL, temporary_settings

from curation.catalog.errors import GhostsError
from flows.cli_options import json_stdout_fd

TEMPORARY_API_ENV = "GHOSTS_TEMPORARY_API"  # the temporary server's API URL, while a command runs on one
START_TIMEOUT_S = 60  # the temporary server's start-up (migrating a fresh database included)
HEALTH_EVERY_S = 2.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api_healthy(url: str, timeout: float = 3.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


@contextlib.contextmanager
def foreground_api(
    configured: str | None,
    warm: Callable[[], object] | None = None,
    prestart: Callable[[], contextlib.AbstractContextManager] | None = None,
) -> Iterator[str]:
    """Yield the API URL every process of this command uses: `configured`, else a temporary server's.

    `prestart` (the analysis worker processes, flows.worker_pool.prestarted) is entered for the whole block,
    and `warm` runs, while the server starts: spawning the workers (they load their models) and importing the
    flow modules overlap the server's start-up. With an API configured, only `prestart` runs."""
    with contextlib.ExitStack() as stack:
        if configured:
            if prestart is not None:
                stack.enter_context(prestart())
            yield configured
            return
        yield stack.enter_context(_temporary_api(warm, prestart, stack))


@contextlib.contextmanager
def _temporary_api(
    warm: Callable[[], object] | None,
    prestart: Callable[[], contextlib.AbstractContextManager] | None,
    stack: contextlib.ExitStack,
) -> Iterator[str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below, after the server stops
    proc = _start_server(port, log)
    restore = _exit_on_sigterm()
    try:
        end = time.monotonic() + START_TIMEOUT_S
        if prestart is not None:
            stack.enter_context(prestart())  # closed after the server stops
        if warm is not None:
            warm()
        while not api_healthy(url, timeout=1):
            if proc.poll() is not None or time.monotonic() > end:
                log.seek(0)
                tail = log.read().decode(errors="replace").strip().splitlines()[-5:]
                raise GhostsError(
                    "could not start a temporary Prefect server for this run"
                    + (f": {' / '.join(tail)}" if tail else "")
                    + " (or set PREFECT_API_URL, e.g. after `ghosts server`)"
                )
            time.sleep(0.2)
        old = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # inherited by every worker process
        os.environ[TEMPORARY_API_ENV] = (
            url  # the review gate records that its run's API goes with the command
        )
        # ... and seen by this process's threads outside any settings context (the process pool's event and
        # log forwarding thread started a server of its own otherwise).
        refresh_global_settings_context()
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield url
        finally:
            os.environ.pop(TEMPORARY_API_ENV, None)
            if old is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = old
            refresh_global_settings_context()
    finally:
        if proc.poll() is None:
            _flush_to_api()
        proc.stop()
        log.close()
        restore()


def _flush_to_api(timeout: float = 5.0) -> None:
    """Send the logs and events still queued (a crashed run's last lines) while the temporary server still
    answers: at exit Prefect would retry them against the stopped server for over a minute."""
    for worker in (APILogWorker, EventsWorker):
        with contextlib.suppress(Exception):
            worker.drain_all(timeout=timeout)


class _Server:
    """The temporary server's process, started by `_start_server` one way or the other."""

    def __init__(self, popen: subprocess.Popen | None = None, forked: multiprocessing.Process | None = None):
        self._popen, self._forked = popen, forked

    def poll(self) -> int | None:
        return self._popen.poll() if self._popen is not None else self._forked.exitcode

    def stop(self) -> None:
        if self.poll() is not None:
            return
        if self._popen is not None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._popen.kill()
                self._popen.wait()
            return
        self._forked.terminate()
        self._forked.join(timeout=10)
        if self._forked.exitcode is None:
            self._forked.kill()
            self._forked.join()


def _start_server(port: int, log) -> _Server:
    """`prefect server start --no-services --no-ui` on 127.0.0.1:`port`, its output to `log`.

    Forked from this process when it runs no other thread (Linux): the child has Prefect imported already,
    which saves the seconds a new interpreter spends importing it again; else a new `prefect` process."""
    prctl = _prctl()
    if prctl is not None and _can_fork():
        for stream in (sys.stdout, sys.stderr):  # nothing buffered here may be written twice
            with contextlib.suppress(Exception):
                stream.flush()
        child = multiprocessing.get_context("fork").Process(
            target=_serve_forked, args=(port, log.fileno(), prctl), name="ghosts-prefect-server", daemon=True
        )
        child.start()
        return _Server(forked=child)
    env = {**os.environ, **_SERVER_ENV}
    env.pop("PREFECT_API_URL", None)
    argv = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    return _Server(
        popen=subprocess.Popen(
            [*argv, "--no-services", "--no-ui"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=None if prctl is None else functools.partial(prctl, *_PDEATHSIG_ARGS),  # noqa: PLW1509 - one prctl call, no imports
        )
    )


_SERVER_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_SERVER_UI_ENABLED": "false",
}


def _can_fork() -> bool:
    """Forking copies only the calling thread: a lock another thread holds would stay locked in the child."""
    return threading.active_count() == 1 and "torch" not in sys.modules


def _serve_forked(port: int, log_fd: int, prctl) -> None:
    """The forked server child: its own session, SIGTERM when the command's process ends, output to the log,
    settings from the environment as a new `prefect server start` would read them."""
    os.setsid()
    prctl(*_PDEATHSIG_ARGS)
    if os.getppid() == 1:
        os._exit(1)  # the command ended before the signal was armed
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.environ.update(_SERVER_ENV)
    os.environ.pop("PREFECT_API_URL", None)
    refresh_global_settings_context()
    # Imported here, in the server's child only: the API app takes seconds to import, and the command's own
    # process never needs it.
    import uvicorn
    from prefect.server.api.server import create_app

    uvicorn.run(create_app(final=True, webserver_only=True), host="127.0.0.1", port=port, log_level="warning")


_PDEATHSIG_ARGS = (1, int(signal.SIGTERM), 0, 0, 0)  # prctl(PR_SET_PDEATHSIG, SIGTERM)


def _prctl():
    """libc's prctl (Linux), loaded here so the server's child only makes one call and imports nothing; the
    child asks it for SIGTERM when this command's process ends, however it ends. None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl
    except (OSError, AttributeError):
        return None


def _exit_on_sigterm():
    """SIGTERM (a `kill`, a supervisor stopping the command) becomes SystemExit, so the temporary server is
    stopped on the way out; returns what puts the previous handler back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _grace_s() -> float:
    try:
        return max(float(os.environ.get("GHOSTS_API_GRACE", "20")), 1.0)
    except ValueError:
        return 20.0


@contextlib.contextmanager
def api_watchdog(url: str, as_json: bool = False) -> Iterator[None]:
    """While the block runs, end the process (exit 1, one message) if the API at `url` stops answering."""
    stop = threading.Event()
    grace = _grace_s()

    def watch() -> None:
        last_ok = time.monotonic()
        while not stop.wait(HEALTH_EVERY_S):
            if api_healthy(url, timeout=min(3.0, grace)):
                last_ok = time.monotonic()
                continue
            if time.monotonic() - last_ok >= grace and not stop.is_set():
                message = (
                    f"the Prefect API at {url} stopped answering (for {grace:g} s): this run cannot "
                    "report or continue; start the server again and rerun the command (what was "
                    "stored is kept, and a rerun continues from there)"
                )
                if as_json:
                    os.write(json_stdout_fd(), (json.dumps({"error": message}) + "\n").encode())
                os.write(2, f"ghosts: error: {message}\n".encode())
                os._exit(1)

    thread = threading.Thread(target=watch, name="ghosts-api-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
