"""The `ghosts` command line: one click group; each room's commands live in flows/cli_<room>.py."""

# init, import and status import their rooms inside their bodies, for start-up cost (SQLAlchemy, Pillow):
# `ghosts --help` and the other rooms' commands do not load them.
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import click

from curation.catalog.errors import GhostsError, environment_message
from flows.cli_options import data_option, echo_json, json_output, open_ws


class GhostsGroup(click.Group):
    """Every user-facing failure ends as one line on stderr and exit status 1 (with `--json`, also one JSON
    object with an `error` field on stdout): a GhostsError, or an environment fault (full disk, read-only
    folder, locked or damaged catalog) that `environment_message` recognises. Anything else is a bug and
    keeps its traceback."""

    def parse_args(self, ctx, args):
        ctx.meta["ghosts.json"] = "--json" in args
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        if not ctx.meta.get("ghosts.json"):
            return self._invoke(ctx)
        with json_output():  # one JSON document on stdout; logs, progress and child processes on stderr
            try:
                return self._invoke(ctx)
            except click.ClickException as e:  # a usage error: JSON too, then click's usual message
                echo_json({"error": e.format_message()})
                raise

    def _invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except GhostsError as e:
            self._fail(ctx, str(e))
        except Exception as e:
            why = environment_message(e)
            if why is None:
                if ctx.meta.get("ghosts.json") and not isinstance(
                    e, (click.ClickException, click.exceptions.Exit, click.Abort)
                ):
                    echo_json({"error": f"{type(e).__name__}: {e}"})
                raise
            self._fail(ctx, why)

    @staticmethod
    def _fail(ctx, message: str):
        if ctx.meta.get("ghosts.json"):
            echo_json({"error": message})
        click.echo(f"ghosts: error: {message}", err=True)
        sys.exit(1)


@click.group(
    cls=GhostsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.version_option(package_name="ghosts")
def main() -> None:
    """ghosts: hashtags -> aligned faces -> reviewed dataset -> StyleGAN2-ADA.

    Typical order: init, import or scrape, analyze, review, freeze, train, generate.
    """


@main.command()
@data_option
def init(data: Path | None) -> None:
    """Create a workspace (catalog, image store, folders); safe to run again."""
    from curation.catalog.settings import Settings
    from curation.catalog.workspace import init_workspace

    ws = init_workspace(data, Settings())
    click.echo(f"workspace ready at {ws.root} (catalog: {ws.catalog_file or ws.db_url.split('?')[0]})")


@main.command(name="import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@data_option
def import_(paths: tuple[Path, ...], recursive: bool, as_json: bool, data: Path | None) -> None:
    """Import local image files and folders into the catalog.

    One bad item never stops the batch: files that are not acceptable images are refused with a reason,
    paths that cannot be read (missing, unreadable, a symlink loop, a named pipe) are listed as failed;
    exact duplicates are skipped and near duplicates linked. Exit status 1 when any path failed, else 0.
    """
    from curation.sources.ingest import ingest_paths

    ws = open_ws(data)
    summary = ingest_paths(ws, paths, recursive=recursive, progress=not as_json)
    failed = (
        f"{len(summary.failed)} of the paths could not be read (listed above); the other items were imported"
        if summary.failed
        else None
    )
    if as_json:
        echo_json({**summary.as_dict(), **({"error": failed} if failed else {})})
    else:
        click.echo(
            f"added {summary.added}, duplicates {summary.duplicates}, near duplicates "
            f"{summary.near_duplicates}, converted {summary.converted}, refused {len(summary.rejected)}, "
            f"failed {len(summary.failed)}, skipped non-images {summary.skipped}"
        )
        for r in summary.rejected:
            click.echo(f"  refused {r['path']}: {r['reason']}")
        for r in summary.failed:
            click.echo(f"  failed {r['path']}: {r['reason']}")
    if failed:
        click.echo(f"ghosts: error: {failed}", err=True)
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable counts.")
@data_option
def status(as_json: bool, data: Path | None) -> None:
    """Counts of images, faces, decisions, datasets and training runs (reads a read-only workspace too)."""
    from curation.catalog.settings import Settings
    from curation.catalog.status import people_line, round_lines, workspace_status
    from curation.catalog.workspace import open_workspace

    ws = open_workspace(data, Settings(), read_only=True)  # writes nothing, not even SQLite's lock files
    try:
        st = workspace_status(ws)
    finally:
        ws.close()
    if as_json:
        echo_json(st)
        return
    im, fa = st["images"], st["faces"]
    click.echo(f"workspace {st['workspace']}")
    click.echo(
        f"images   {im['total']}  " + "  ".join(f"{k}={v}" for k, v in sorted(im["by_status"].items()))
    )
    click.echo("sources  " + "  ".join(f"{k}={v}" for k, v in sorted(im["by_source"].items())))
    if im["by_tag"]:
        click.echo("tags     " + "  ".join(f"#{k}={v}" for k, v in sorted(im["by_tag"].items())))
    click.echo(
        f"faces    {fa['total']}  manual={fa['manual']}  flagged={fa['flagged']}  "
        + "  ".join(f"{k}={v}" for k, v in sorted(fa["by_decision"].items()))
    )
    click.echo(people_line(st["people"]))
    for d in st["datasets"]:
        state = d["state"] + (f" ({d['superseded_reason']})" if d.get("superseded_reason") else "")
        click.echo(
            f"dataset  {d['name']} v{d['version']}  {d['count']} x {d['resolution']}px  {d['path']}  [{state}]"
        )
    if st["training_runs"]:
        click.echo("runs     " + "  ".join(f"{k}={v}" for k, v in st["training_runs"].items()))
    for line in round_lines(st.get("review_rounds", [])):
        click.echo(line)


# Each room contributes its commands from its own module, flows/cli_<room>.py (COMMANDS = [...]). The modules
# are imported when one of their commands is looked up, not at start-up, for start-up cost: `ghosts pack` loads
# the archive room alone, not Instaloader (cli_sources), Prefect (cli_flows) or torch (cli_train); listing the
# commands (`ghosts --help`) imports them all. tests/flows/test_cli_lazy.py checks this table against COMMANDS.
ROOM_COMMANDS = {
    "cli_align": ("align", "analyze"),
    "cli_archive": ("freeze", "pack", "verify", "takedown"),
    "cli_review": ("review",),
    "cli_sources": ("login", "scrape", "import-urls", "import-scraped"),
    "cli_train": ("train", "import-network"),
    "cli_latent": ("generate", "interpolate", "project", "style-mix", "direction"),
    "cli_identity": ("people", "memorization"),
    "cli_flows": ("run", "serve", "server"),
    "cli_demo": ("demo",),
}
_ROOM_OF = {name: room for room, names in ROOM_COMMANDS.items() for name in names}


class _LazyCommands(dict):
    """The group's name -> command table; a room's module is imported the first time one of its names is read,
    and every room's when the table is listed."""

    def _load(self, name) -> None:
        room = _ROOM_OF.get(name)
        if room is not None and not dict.__contains__(self, name):
            for cmd in importlib.import_module(f"flows.{room}").COMMANDS:
                dict.setdefault(self, cmd.name, cmd)

    def _load_all(self) -> None:
        for name in _ROOM_OF:
            self._load(name)

    def get(self, name, default=None):
        self._load(name)
        return dict.get(self, name, default)

    def __getitem__(self, name):
        self._load(name)
        return dict.__getitem__(self, name)

    def __contains__(self, name) -> bool:
        self._load(name)
        return dict.__contains__(self, name)

    def __iter__(self):
        self._load_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        self._load_all()
        return dict.__len__(self)

    def keys(self):
        self._load_all()
        return dict.keys(self)

    def values(self):
        self._load_all()
        return dict.values(self)

    def items(self):
        self._load_all()
        return dict.items(self)


main.commands = _LazyCommands(main.commands)
