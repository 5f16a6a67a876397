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
        r = run(
            "--data",
            str(workspace.root),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env={"GHOSTS_REVIEW_TOKEN": "x" * 24},
        )
    assert r.exit_code == 1 and f"port {port} on 127.0.0.1 is in use" in r.output


def test_missing_workspace_is_reported(tmp_path):
    r = run("--data", str(tmp_path / "nowhere"))
    assert r.exit_code == 1 and "ghosts init" in r.output


def test_bad_reviewer_name_is_refused(workspace):
    r = run("--data", str(workspace.root), "--reviewer", "<script>")
    assert r.exit_code == 1 and "reviewer" in r.output


def test_status_lists_rounds_open_and_closed(workspace):
    from curation.review import complete_selection, decide, open_round
    from tests.curation.test_review_support import make_catalog

    faces = make_catalog(workspace, photos=2, faces_per_photo=2)["faces"]
    first = open_round(workspace, target=3, reviewer="ann")
    decide(workspace, faces[:2], "accepted", "ann")
    complete_selection(workspace, "bob")
    decide(workspace, faces[2:3], "accepted", "ann")  # opens the next round
    r = CliRunner().invoke(main, ["status", "--data", str(workspace.root)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = [x for x in r.output.splitlines() if x.startswith("round")]
    assert (
        lines[0].startswith(f"round    {first.id + 1} open since ")
        and "by ann, target 3, 1 decisions" in lines[0]
    )
    assert (
        lines[1].startswith(f"round    {first.id} closed ") and "by bob: 2 accepted of target 3" in lines[1]
    )


def test_target_size_out_of_range_is_refused(workspace):
    r = run("--data", str(workspace.root), "--target-size", "4")
    assert r.exit_code == 2 and "--target-size" in r.output
