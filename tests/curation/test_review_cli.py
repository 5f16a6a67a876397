"""`ghosts review` refuses to start unsafely or uselessly, with a message and exit status 1."""
from __future__ import annotations

import socket

from click.testing import CliRunner

from flows.cli import main


def run(*args: str, env: dict | None = None):
    return CliRunner().invoke(main, ["review", *args], env=env, catch_exceptions=False)


def test_non_loopback_without_token_is_refused(workspace):
    r = run("--data", str(workspace.root), "--host", "0.0.0.0")
    assert r.exit_code == 1 and "without an access token" in r.output and "--token" in r.output


def test_short_token_is_refused(workspace):
    r = run("--data", str(workspace.root), "--host", "0.0.0.0", "--token", "abc")
    assert r.exit_code == 1 and "at least 16 characters" in r.output


def test_token_from_the_environment_is_accepted_but_port_in_use_is_reported(workspace):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run("--data", str(workspace.root), "--host", "127.0.0.1", "--port", str(port),
                env={"GHOSTS_REVIEW_TOKEN": "x" * 24})
    assert r.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in r.output


def test_missing_workspace_is_reported(tmp_path):
    r = run("--data", str(tmp_path / "nowhere"))
    assert r.exit_code == 1 and "ghosts init" in r.output


def test_bad_reviewer_name_is_refused(workspace):
    r = run("--data", str(workspace.root), "--reviewer", "<script>")
    assert r.exit_code == 1 and "reviewer" in r.output
