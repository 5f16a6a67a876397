"""What the `ghosts` command modules share: the --data option, opening the workspace it names, JSON output.

flows/cli.py assembles the commands of flows/cli_<room>.py; those modules import this one, never cli.py.
"""
from __future__ import annotations

import json
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


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))
