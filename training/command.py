"""The `train` command, shared by `ghosts train`, `python -m training` and `torchrun -m training`, and the
click options of every command that trains (`training_options`), generated from training.config.TrainSettings.

`--data` is the workspace folder, as on every ghosts command; `--archive ZIP` names the dataset archive (what
NVlabs' train.py calls --data). Without --archive, the newest frozen dataset version of the workspace trains.
"""

from __future__ import annotations

import os
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import annotated_types
import click

from curation.catalog.errors import GhostsError
from training.config import Flag, TrainSettings, make_settings

# --------------------------------------------------------------------------- options from TrainSettings


def _click_type(name: str) -> tuple[Any, bool, str]:
    """click's type for TrainSettings field `name`, whether it is an on/off flag, and its bounds as text for the
    help. The bounds themselves are checked by TrainSettings (one message, exit 1, the same in a flow run)."""
    info = TrainSettings.model_fields[name]
    ann = info.annotation
    if typing.get_origin(ann) in (typing.Union, types.UnionType):  # X | None
        ann = next(a for a in typing.get_args(ann) if a is not type(None))
    if ann is bool:
        return None, True, ""
    if typing.get_origin(ann) is typing.Literal:
        return click.Choice(typing.get_args(ann)), False, ""
    if ann in (int, float):
        lo = hi = None
        for m in info.metadata:
            if isinstance(m, annotated_types.Ge):
                lo = ("<=", m.ge)
            elif isinstance(m, annotated_types.Gt):
                lo = ("<", m.gt)
            elif isinstance(m, annotated_types.Le):
                hi = ("<=", m.le)
            elif isinstance(m, annotated_types.Lt):
                hi = ("<", m.lt)
        if lo and hi:
            bounds = f"{lo[1]}{lo[0]}x{hi[0]}{hi[1]}"
        elif lo:
            bounds = f"x{lo[0].replace('<', '>')}{lo[1]}"
        else:
            bounds = f"x{hi[0]}{hi[1]}" if hi else ""
        return ann, False, bounds
    return str, False, ""  # str, and lists typed as a comma list (metrics)


def _dest(name: str, rename: dict[str, str]) -> str:
    return rename[name].lstrip("-").replace("-", "_") if name in rename else name


def training_options(fn: Callable | None = None, *, rename: dict[str, str] | None = None):
    """Decorator: one click option per TrainSettings field, with its default, help and bounds. `rename` maps a
    field to another flag where a command already uses the name for something else (`ghosts run pipeline`'s
    --workers are analysis workers, so the data loader's are --train-workers there)."""
    rename = rename or {}

    def decorate(f: Callable) -> Callable:
        for name in reversed(list(TrainSettings.model_fields)):
            info = TrainSettings.model_fields[name]
            flag = rename.get(name) or TrainSettings.flag(name)
            kind, is_flag, bounds = _click_type(name)
            metavar = next((m.metavar for m in info.metadata if isinstance(m, Flag) and m.metavar), None)
            default = info.default
            if isinstance(default, list):
                default = ",".join(default) or "none"
            extra: dict[str, Any] = {"show_default": default is not None}
            if is_flag:
                decl = f"{flag}/--no-{flag[2:]}"
            else:
                decl = flag
                extra.update(type=kind, metavar=metavar)
            text = f"{info.description} [{bounds}]" if bounds else info.description
            f = click.option(decl, _dest(name, rename), default=default, help=text, **extra)(f)
        return f

    return decorate(fn) if fn is not None else decorate


def settings_from(kw: dict[str, Any], rename: dict[str, str] | None = None) -> TrainSettings:
    """Pop the options `training_options` added out of a command's keyword arguments, as TrainSettings."""
    rename = rename or {}
    return make_settings(**{name: kw.pop(_dest(name, rename)) for name in TrainSettings.model_fields})


# ------------------------------------------------------------------------------------ which archive


def newest_frozen_archive(data: Path | str | None) -> Path:
    """The archive of the newest dataset version frozen in workspace `data` (GHOSTS_DATA / ./data when None)
    that no takedown superseded; a GhostsError when there is none or its file is gone."""
    # Imported here for start-up cost: SQLAlchemy and the workspace are not needed by `ghosts --help`.
    from sqlalchemy import select

    from curation.catalog.schema import DatasetVersion
    from curation.catalog.settings import Settings
    from curation.catalog.workspace import open_workspace

    try:
        ws = open_workspace(data, Settings())
    except GhostsError as e:
        raise GhostsError(
            f"{e} (`ghosts train --data` names a workspace; to train a dataset archive, type --archive ZIP)"
        ) from None
    with ws.session() as s:
        v = s.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.superseded_reason.is_(None))
            .order_by(DatasetVersion.created_at.desc(), DatasetVersion.id.desc())
            .limit(1)
        ).first()
        if v is None:
            raise GhostsError(
                f"workspace {ws.root} has no frozen dataset yet: run `ghosts freeze` first, or name an "
                "archive with --archive ZIP"
            )
        path, label = ws.abspath(v.path), f"{v.name} v{v.version}"
    if not path.is_file():
        raise GhostsError(
            f"the newest frozen dataset of {ws.root}, {label}, is missing at {path}: freeze again, or name "
            "an archive with --archive ZIP"
        )
    return path


def archive_to_train(archive: Path | None, data: Path | None) -> Path:
    """--archive when given; else the newest frozen version of the --data workspace. A --data that names an
    archive (NVlabs' spelling) is refused with what to type instead."""
    if data is not None and (data.suffix.lower() == ".zip" or data.is_file()):
        raise click.UsageError(
            f"--data is the workspace folder in ghosts (as on every ghosts command), and {data} is not one. "
            f"To train this archive type `--archive {data}` (NVlabs' train.py calls it --data), or "
            "`--data WORKSPACE` to train the newest dataset version frozen in that workspace."
        )
    if archive is not None:
        return archive
    path = newest_frozen_archive(data)
    click.echo(f"training on {path} (the newest frozen dataset version)", err=True)
    return path


# --------------------------------------------------------------------------------------- commands


@click.command(
    name="train", context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    metavar="ZIP",
    help="Dataset archive (.zip) written by `ghosts freeze` (NVlabs' --data) [the newest one in --data].",
)
@click.option(
    "--data",
    "data",
    type=click.Path(path_type=Path),
    envvar="GHOSTS_DATA",
    default=None,
    show_default="./data",
    help="Workspace folder (env GHOSTS_DATA); without --archive, its newest frozen dataset version trains.",
)
@click.option(
    "--outdir",
    default=Path("runs"),
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Parent folder of the run folders NNNNN-<dataset>-<cfg>.",
)
@training_options
@click.option("--dry-run", is_flag=True, help="Print the resolved options and exit.")
def train(archive: Path | None, data: Path | None, outdir: Path, dry_run: bool, **kw) -> None:
    """Train StyleGAN2-ADA on a frozen dataset archive."""
    # Imported here for start-up cost: the loop and the archive reader import torch.
    from curation.catalog.runs import recorded_run
    from training.config import build_options
    from training.loop import train as run_training

    settings = settings_from(kw)
    from_data = archive is None  # the newest archive frozen in the --data workspace, recorded there
    archive = archive_to_train(archive, data)
    opts = build_options(archive, outdir, settings, dry_run=dry_run)
    if opts.dry_run or int(os.environ.get("RANK", "0")) != 0:  # one record per run: rank 0's
        result = run_training(opts)
    else:  # in the catalog of the archive's workspace, so `ghosts status` and takedown list it
        with recorded_run(
            Path(archive),
            Path(outdir),
            settings.cfg,
            settings.kimg,
            {"command": "ghosts train", "settings": settings.model_dump()},
            started_by="ghosts train / torchrun -m training",
            data=data,
            from_data=from_data,
        ) as done:
            result = run_training(opts)
            if done is not None:
                done(str(result.run_dir), str(result.snapshot) if result.snapshot is not None else None)
    if not opts.dry_run and result.snapshot is not None:
        click.echo(f"run folder {result.run_dir}; last snapshot {result.snapshot.name}")


@click.command(name="import-network", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("pkl", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the snapshot <name>.safetensors + <name>.json.",
)
def import_network(pkl: Path, out: Path) -> None:
    """Convert an NVlabs StyleGAN2(-ADA) network pickle into a ghosts snapshot, reading it safely (nothing in
    the file is run). Every --network and `ghosts train --resume` also take the .pkl directly."""
    # Imported here for start-up cost: checkpoint imports torch.
    from training.checkpoint import load_snapshot, write_snapshot

    snap = load_snapshot(pkl)
    stem = write_snapshot(snap, out / pkl.stem)
    g = snap.meta["G_kwargs"]
    click.echo(
        f"wrote {stem}.safetensors and {stem.name}.json: {g['img_resolution']} px, "
        f"{'G, G_ema and D' if snap.meta['D_kwargs'] else 'G and G_ema'}, augment p "
        f"{snap.augment_p:.4f}, sha256 {snap.meta['source']['sha256'][:12]}..."
    )
