"""What the `ghosts` command modules share: the --data option, opening the workspace it names, JSON output,
and the option shapes several commands declare (a path, a choice, a count, --json, --workers, --threshold, --network).

flows/cli.py assembles the commands of flows/cli_<room>.py; those modules import this one, never cli.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path

import click


def path_option(*decls: str, help: str, required: bool = True, file_okay=True, dir_okay=True, **kw):
    """An option naming a file or folder, as a Path (required unless said otherwise)."""
    kind = click.Path(file_okay=file_okay, dir_okay=dir_okay, exists=kw.pop("exists", False), path_type=Path)
    return click.option(*decls, required=required, type=kind, help=help, **kw)


def file_option(*decls: str, help: str, **kw):
    """An option naming one file (--out, --archive, --target ...)."""
    return path_option(*decls, help=help, dir_okay=False, **kw)


def folder_option(*decls: str, help: str, **kw):
    """An option naming a folder (--outdir ...; --data is data_option)."""
    return path_option(*decls, help=help, file_okay=False, **kw)


def choice_option(*decls: str, choices: tuple[str, ...], help: str):
    """One of `choices`; the first is the default, shown in --help."""
    return click.option(
        *decls, type=click.Choice(list(choices)), default=choices[0], show_default=True, help=help
    )


def json_option(help: str = "Print a machine-readable summary."):
    """--json: the command prints one JSON document instead of its text."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def count_option(*decls: str, help: str, minimum: int = 1, default: int | None = None):
    """A whole number of at least `minimum`. With a default, --help shows it; without, leaving the option out
    gives None (no limit, or the command's own choice)."""
    shown = {"show_default": True} if default is not None else {}
    return click.option(*decls, type=click.IntRange(min=minimum), default=default, help=help, **shown)


def number_option(*decls: str, help: str, minimum: float, default: float):
    """A number of at least `minimum` (seconds, megabytes), its default shown in --help."""
    return click.option(
        *decls, type=click.FloatRange(min=minimum), default=default, show_default=True, help=help
    )


def workers_option(help: str):
    """--workers N (at least 1); None lets the command pick (one per core)."""
    return count_option("--workers", help=help)


SAME_PERSON = 0.6  # alignment.identity.SAME_PERSON (not imported here: it would load dlib for --help)


def same_person_option(help: str):
    """--threshold: the face-descriptor distance below which two faces count as one person."""
    return click.option(
        "--threshold",
        type=click.FloatRange(0, 2, min_open=True),
        default=SAME_PERSON,
        show_default=True,
        help=help,
    )


class WorkspaceFolder(click.Path):
    """--data: a folder (made by `ghosts init`). A file given instead, most often a dataset archive typed the
    way NVlabs' train.py takes it, is refused with what to type: `--archive FILE` where the command has one."""

    def __init__(self):
        super().__init__(file_okay=False, path_type=Path)

    def convert(self, value, param, ctx):
        if not isinstance(value, Path | str) or not Path(value).is_file():
            return super().convert(value, param, ctx)
        takes_archive = ctx is not None and any(p.name == "archive" for p in ctx.command.params)
        self.fail(
            f"--data is the workspace folder in ghosts (as on every ghosts command), and {value} is a file, "
            + (
                f"not one. To train this archive type `--archive {value}` (NVlabs' train.py calls it --data), "
                "or `--data WORKSPACE`."
                if takes_archive
                else "not one: type `--data WORKSPACE`, the folder `ghosts init` made."
            ),
            param,
            ctx,
        )


data_option = click.option(
    "--data",
    "data",
    type=WorkspaceFolder(),
    envvar="GHOSTS_DATA",
    default=None,
    show_default="./data",
    help="Workspace folder (env GHOSTS_DATA).",
)
network_option = path_option(
    "--network", "network", help="Snapshot: network-snapshot-NNNNNN (.json, .safetensors or the common stem)."
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
