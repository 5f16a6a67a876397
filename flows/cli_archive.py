"""`ghosts freeze`, `pack`, `verify` and `takedown`: the dataset archive commands."""

# The commands import their rooms inside their bodies, for start-up cost: `ghosts --help` and every other
# command load torch, dlib, FastAPI or SQLAlchemy only when they need them.
from __future__ import annotations

import os
from pathlib import Path

import click

from flows.cli_options import (
    choice_option,
    count_option,
    data_option,
    echo_json,
    file_option,
    json_option,
    open_ws,
    same_person_option,
    workers_option,
)


def _power_of_two(ctx, param, value):
    if value is not None and (value < 4 or value & (value - 1)):
        raise click.BadParameter("must be a power of two (4, 8, ..., 1024)")
    return value


@click.command()
@click.option("--name", required=True, help="Dataset name; versions go to datasets/NAME/vN/.")
@click.option(
    "--resolution",
    type=int,
    default=256,
    show_default=True,
    callback=_power_of_two,
    help="Side of the aligned faces in px (a power of two).",
)
@choice_option(
    "--labels", choices=("none", "source-tag"), help="Class labels: none, or the tag that found each image."
)
@click.option(
    "--mirror-check",
    is_flag=True,
    help="Refuse when two faces are mirror images or duplicates of each other (x-flip training would "
    "count them twice).",
)
@workers_option("Alignment threads (default: one per core).")
@click.option(
    "--max-person-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Warn when one person holds more than this share of the faces (e.g. 0.05); the card states it.",
)
@click.option(
    "--max-owner-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Warn when one account holds more than this share of the faces.",
)
@json_option("Print the new version as JSON.")
@data_option
def freeze(name, as_json, data, **options):
    """Freeze the accepted faces into a new immutable dataset version (zip + manifest.json)."""
    from curation.datasets.freeze import freeze_dataset

    ws = open_ws(data)
    # The other options are freeze_dataset's keywords of the same names; click passes them through.
    r = freeze_dataset(ws, name, progress=not as_json, **options)
    for w in r.warnings if not as_json else ():
        click.echo(f"warning: {w}", err=True)
    if as_json:
        echo_json(r.as_dict())
    elif r.created:
        click.echo(
            f"{r.name} v{r.version}: {r.count} faces at {r.resolution}px -> {r.path}\nsha256 {r.sha256}"
        )
    else:
        click.echo(f"{r.name} v{r.version} already holds exactly this selection ({r.count} faces): {r.path}")
    if r.created:
        _announce_frozen(r, ws, quiet=as_json)


def _announce_frozen(result, ws, quiet: bool) -> None:
    """Emit `ghosts.dataset.frozen` to the Prefect server the user is connected to, so a `train` deployment
    triggered by it starts training. Without a configured server there is nobody to hear it: skip quietly
    rather than start an ephemeral one."""
    if not _prefect_api_may_be_set():
        return  # about 1 s of CPU saved: importing Prefect to read an unset setting
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return
    from flows.events import emit_dataset_frozen

    try:
        emit_dataset_frozen(result, str(ws.root))
    except Exception as e:  # noqa: BLE001 - the archive is frozen either way; say why training will not start by itself
        click.echo(
            f"warning: could not emit ghosts.dataset.frozen to {PREFECT_API_URL.value()}: {e}", err=True
        )
        return
    if not quiet:
        click.echo(f"emitted ghosts.dataset.frozen to {PREFECT_API_URL.value()}")


def _prefect_api_may_be_set() -> bool:
    """False only when no place Prefect 3 reads settings from can hold an API URL: no PREFECT_* environment
    variable, and no profiles file, .env, prefect.toml or pyproject.toml naming one. Anything that might, and
    Prefect itself decides."""
    if any(k.startswith("PREFECT_") for k in os.environ):
        return True
    places = {  # (PREFECT_HOME, which would move the profiles file, is a PREFECT_* variable: answered above)
        Path.home() / ".prefect" / "profiles.toml": ("PREFECT_API_URL",),
        Path(".env"): ("PREFECT_API_URL",),
        Path("prefect.toml"): ("api",),
        Path("pyproject.toml"): ("tool.prefect",),
    }
    for path, words in places.items():
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if any(w in text for w in words):
            return True
    return False


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@file_option("--out", help="The archive to write (.zip).")
@click.option(
    "--resolution",
    type=int,
    default=None,
    callback=_power_of_two,
    help="Resize every image to this side (default: they must already be the same power-of-two square).",
)
@click.option("--center-crop", is_flag=True, help="Crop non-square images to their central square.")
@workers_option("Encoding threads (default: one per core).")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@json_option("Print the result as JSON.")
def pack(folder, out, as_json, **options):
    """Pack a folder of prepared images into a StyleGAN2-ADA dataset archive (like its dataset_tool.py)."""
    from curation.datasets.pack import pack_folder

    r = pack_folder(folder, out, progress=not as_json, **options)  # --resolution, --center-crop, ...
    if as_json:
        echo_json(r.as_dict())
        return
    i = r.info
    click.echo(
        f"packed {i.count} images, {i.resolution}px {i.mode}, into {i.path} in {r.seconds:.1f} s "
        f"({r.workers} workers; resized {r.resized}, cropped {r.cropped})\nsha256 {i.sha256}"
    )


@click.command()
@click.argument("archive", type=click.Path(dir_okay=False, path_type=Path))
@file_option(
    "--manifest",
    required=False,
    help="Check against this manifest (default: manifest.json beside the zip, when it names it).",
)
@count_option(
    "--max-size", help="Refuse archives whose members add up to more bytes than this (default 1 TiB)."
)
@json_option("Print the report as JSON.")
@click.pass_context
def verify(ctx, archive, manifest, max_size, as_json):
    """Check a dataset archive: names, sizes, modes, dataset.json, provenance, sha256. Exit 1 on any fault."""
    from curation.datasets.format import DEFAULT_MAX_ARCHIVE_BYTES
    from curation.datasets.verify import verify_archive

    rep = verify_archive(
        archive, manifest=manifest, max_bytes=max_size or DEFAULT_MAX_ARCHIVE_BYTES, progress=not as_json
    )
    if as_json:
        echo_json(rep.as_dict())
    elif rep.ok:
        click.echo(
            f"ok: {archive}: {rep.count} images, {rep.resolution}px {rep.mode}, "
            f"{'labelled' if rep.labelled else 'no labels'}"
            + (f", matches {rep.manifest}" if rep.manifest else "")
            + f"\nsha256 {rep.sha256}"
        )
    else:
        for fault in rep.faults:
            click.echo(f"fault: {fault}")
        if rep.more_faults:
            click.echo(f"... and {rep.more_faults} more faults")
        click.echo(f"ghosts: error: {archive} failed verification: {rep.faults[0]}", err=True)
    if not rep.ok:
        ctx.exit(1)


@click.command()
@click.option("--owner", help="Every image posted by this account.")
@click.option("--image", help="One image, by sha256 (or its first 8+ hex digits).")
@click.option("--post", help="Every image of this post (URL).")
@file_option(
    "--face",
    required=False,
    exists=True,
    help="Every image with a face of the person in this photo (matches are listed first).",
)
@same_person_option(
    "With --face: descriptor distance below which a face counts as that person (lower: stricter)."
)
@click.option("--yes", is_flag=True, help="With --face: remove the matches without asking.")
@click.option("--reason", required=True, help="Who asked and why; kept with the takedown record.")
@click.option(
    "--purge",
    is_flag=True,
    help="Also delete the archive files of the old versions that held the images, and the reals grids of the "
    "training runs that used them (the originals, previews and personal catalog fields go in any case).",
)
@json_option("Print the result as JSON.")
@data_option
def takedown(face, threshold, yes, as_json, data, **which):
    """Remove a person's or a post's images for good: new versions of every dataset without them, the originals,
    previews and personal catalog fields deleted, the same images refused if they come back."""
    from curation.datasets.takedown import takedown as run_takedown

    ws = open_ws(data)
    face_images = _face_matches(ws, face, threshold, yes, as_json) if face else None
    # --owner, --image, --post, --reason and --purge are run_takedown's keywords of the same names.
    r = run_takedown(ws, face_images=face_images, progress=not as_json, **which)
    if as_json:
        echo_json(r.as_dict())
        return
    click.echo(
        f"takedown #{r.takedown_id}: {len(r.images)} images excluded (--{r.kind} {r.value})"
        + (" (already taken down before: finished what was left)" if r.already else "")
    )
    click.echo(
        f"  removed {len(r.removed_files)} files (originals, previews, run grids) and blanked the personal "
        f"fields of {r.scrubbed_rows} catalog rows; the same images are refused if imported again"
    )
    for v in r.new_versions:
        click.echo(
            f"  new version {v['name']} v{v['version']}: {v['count']} images ({v['removed']} removed) -> {v['path']}"
        )
    for name in r.emptied:
        click.echo(f"  {name}: no image left, so no new version")
    for v in r.superseded:
        click.echo(f"  superseded {v['name']} v{v['version']} ({v['path']})")
    for p in r.purged:
        click.echo(f"  deleted {p}")
    if not r.catalog_scrubbed:
        click.echo(
            "  warning: another process holds the catalog, so its file still holds the blanked values in "
            "free pages or its log; run the same takedown again when it is free"
        )
    for v in r.kept_versions:
        click.echo(
            f"  kept {v['name']} v{v['version']} ({v['path']}): it still holds the images; "
            "run the takedown again with --purge to delete it"
        )
    if r.training_runs:
        click.echo("training runs that used the old versions (retrain or delete their snapshots):")
        for t in r.training_runs:
            click.echo(f"  run {t['id']} [{t['status']}] {t['run_dir']}")
    elif r.superseded:
        click.echo("no training run used the old versions")


def _face_matches(ws, photo: Path, threshold: float, yes: bool, as_json: bool) -> list[str]:
    """The sha256s of the images holding a face like the one in `photo`, listed and confirmed (or --yes)."""
    from curation.analysis.identities import faces_like_photo
    from curation.catalog.errors import GhostsError

    matches = faces_like_photo(ws, photo, threshold=threshold)
    if not matches:
        raise GhostsError(f"no face in the catalog is closer than {threshold} to the face in {photo}")
    images = sorted({m.image_sha256 for m in matches})
    if not as_json or not yes:
        click.echo(
            f"{len(matches)} faces in {len(images)} images are closer than {threshold} to the face in {photo}:",
            err=as_json,
        )
        for m in matches:
            extra = f", removes {m.others} other faces of the same photo" if m.others else ""
            click.echo(
                f"  face {m.face_id}  distance {m.distance:.3f}  person {m.person_id}  [{m.decision}]  "
                f"image {m.image_sha256[:16]}{extra}",
                err=as_json,
            )
    if not yes and (as_json or not click.confirm(f"take down these {len(images)} images?", default=False)):
        raise GhostsError("nothing removed (confirm the matches, or pass --yes)")
    return images


COMMANDS = [freeze, pack, verify, takedown]
