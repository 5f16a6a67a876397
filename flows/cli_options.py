"""What the `ghosts` command modules share: the --data option, opening the workspace it names, JSON output.

flows/cli.py assembles the commands of flows/cli_<room>.py; those modules import this one, never cli.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click

data_option = click.option(
    "--data",
    "data",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="GHOSTS_DATA",
    default=None,
    show_default="./data",
    help="Workspace folder (env GHOSTS_DATA).",
)


def open_ws(data: Path | None):
    """The workspace named by --data / GHOSTS_DATA / ./data, which must have been initialised."""
    # Imported here for start-up cost: SQLAlchemy is not needed by `ghosts --help` or commands without a workspace.
    from curation.catalog.settings import Settings
    from curation.catalog.workspace import open_workspace

    return open_workspace(data, Settings())


# Where echo_json writes while a `--json` command runs (json_output): the real stdout, which everything else
# (click.echo, print, logs, progress bars, child processes) no longer reaches.
_json_out = None


def json_stdout_fd() -> int:
    """The file descriptor JSON goes to (1 outside json_output)."""
    try:
        return _json_out.fileno() if _json_out is not None else 1
    except (AttributeError, OSError, ValueError):
        return 1


@contextlib.contextmanager
def json_output():
    """For a `--json` command: stdout goes to stderr (at the file-descriptor level when stdout is a real file,
    so child processes follow), and echo_json writes the one JSON document to the real stdout."""
    global _json_out
    saved, saved_out = sys.stdout, _json_out
    fd = dup = None
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if fd is not None:
        sys.stdout.flush()
        dup = os.dup(fd)
        os.dup2(2, fd)
        _json_out = os.fdopen(dup, "w", closefd=False)
    else:
        _json_out = saved
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stdout = saved
        try:
            _json_out.flush()
        finally:
            if dup is not None:
                os.dup2(dup, fd)
                os.close(dup)
            _json_out = saved_out


def echo_json(obj) -> None:
    """The command's one JSON document, on the real stdout even while json_output() diverts the rest."""
    text = json.dumps(obj, indent=2, default=str)
    if _json_out is not None:
        _json_out.write(text + "\n")
        _json_out.flush()
    else:
        click.echo(text)
