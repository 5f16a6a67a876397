"""One Prefect API for a foreground command and every process it starts, watched so a lost API never hangs it.

Without PREFECT_API_URL, Prefect starts a temporary server inside each process that needs one: analysis
worker processes (spawned by the process-pool task runner) each started their own, which cost a minute for
four photos. `foreground_api()` starts one server for the whole command instead (`prefect server start`,
without its services and UI: a foreground run needs neither), exports its address in the environment so
every child process inherits it, and stops it when the command ends.

`api_watchdog()` polls the API's health endpoint while the command runs; when the API stops answering for
`GHOSTS_API_GRACE` seconds (default 20) it prints one line and ends the process with exit status 1, since
Prefect's client would otherwise retry, and a crashed engine may wait forever.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

from curation.catalog.errors import GhostsError

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
def foreground_api(configured: str | None, warm: Callable[[], object] | None = None) -> Iterator[str]:
    """Yield the API URL every process of this command uses: `configured`, else a temporary server's.

    `warm` runs while the server starts (importing the flow modules overlaps the server's start-up)."""
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below, after the server stops
    argv = [
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
    ]
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_parent_death_signal(),
    )  # noqa: PLW1509 - one prctl call, no imports
    restore = _exit_on_sigterm()
    try:
        end = time.monotonic() + START_TIMEOUT_S
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
        from prefect.context import refresh_global_settings_context
        from prefect.settings import PREFECT_API_URL, temporary_settings

        old = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = url  # inherited by every worker process
        # ... and seen by this process's threads outside any settings context (the process pool's event and
        # log forwarding thread started a server of its own otherwise).
        refresh_global_settings_context()
        try:
            with temporary_settings(updates={PREFECT_API_URL: url}):
                yield url
        finally:
            if old is None:
                os.environ.pop("PREFECT_API_URL", None)
            else:
                os.environ["PREFECT_API_URL"] = old
            refresh_global_settings_context()
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        restore()


def _parent_death_signal():
    """What the server's process runs before exec: SIGTERM when this command's process ends, however it ends
    (Linux; prctl PR_SET_PDEATHSIG). libc is loaded here, so the child only makes one call, imports nothing."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util
    import signal

    try:
        prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, int(signal.SIGTERM), 0, 0, 0)


def _exit_on_sigterm():
    """SIGTERM (a `kill`, a supervisor stopping the command) becomes SystemExit, so the temporary server is
    stopped on the way out; returns what puts the previous handler back."""
    import signal

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
                    os.write(_json_fd(), (json.dumps({"error": message}) + "\n").encode())
                os.write(2, f"ghosts: error: {message}\n".encode())
                os._exit(1)

    thread = threading.Thread(target=watch, name="ghosts-api-watchdog", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()


def _json_fd() -> int:
    from flows.cli_options import json_stdout_fd

    return json_stdout_fd()
