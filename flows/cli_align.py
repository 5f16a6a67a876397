"""`ghosts analyze` (faces of the catalog's new images) and `ghosts align` (photo files to aligned PNGs)."""

# The commands import their rooms inside their bodies, for start-up cost: `ghosts --help` and every other
# command load torch, dlib, FastAPI or SQLAlchemy only when they need them.
from __future__ import annotations

import atexit
import functools
import gc
from pathlib import Path

import click

from curation.catalog.errors import GhostsError
from flows.cli_options import (
    choice_option,
    data_option,
    echo_json,
    folder_option,
    json_option,
    open_ws,
    workers_option,
)

SIZES = ("64", "128", "256", "512", "1024")
WORKERS_HELP = "Worker processes (default: one per available core; 1 runs in this process)."
DETECTOR_HELP = "dlib's HOG detector (fast) or its CNN detector (slower, finds more faces)."


@click.command()
@workers_option(WORKERS_HELP)
@choice_option("--detector", choices=("hog", "cnn"), help=DETECTOR_HELP)
@click.option(
    "--target-size",
    type=click.Choice(SIZES),
    default=None,
    help="Dataset side the flags refer to: faces whose crop is smaller are flagged upscaled. Kept as the "
    "workspace setting (the review page follows it); default: that setting, or 512.",
)
@click.option(
    "--retry-errors",
    is_flag=True,
    help="Also retry images in `error` that could not be decoded (those whose cause may have passed, "
    "such as a missing store file or an unwritable previews/ folder, are retried anyway).",
)
@click.option(
    "--identities/--no-identities",
    default=True,
    show_default=True,
    help="Then describe each new face (~0.1 s per face per core) and group faces into people: a second "
    "phase with its own progress bar, after every face is recorded (the faces never wait for it; an "
    "interrupted phase is finished by the next `ghosts analyze` or `ghosts people`). Without it, "
    "`ghosts people` does it later.",
)
@json_option()
@data_option
def analyze(
    workers: int | None,
    detector: str,
    target_size: str | None,
    retry_errors: bool,
    identities: bool,
    as_json: bool,
    data: Path | None,
) -> None:
    """Detect, landmark, align and score the faces of every image not analysed yet.

    Each face gets its box, 68 landmarks, FFHQ crop quad, quality measures and a 256-px preview. Resumable: a
    rerun only does what is missing. An unreadable image is marked `error` with the reason and never stops
    the batch; an image without faces is marked `no_face`.
    """
    from curation.analysis.analyze import analyze_workspace

    ws = open_ws(data)
    summary = analyze_workspace(
        ws,
        workers=workers,
        detector=detector,
        target_size=None if target_size is None else int(target_size),
        progress=not as_json,
        retry_errors=retry_errors,
        identities=identities,
    )
    if as_json:
        echo_json(summary.as_dict())
        return
    click.echo(
        f"analysed {summary.images} images in {summary.seconds:.1f} s: {summary.analyzed} with faces, "
        f"{summary.no_face} without, {summary.error} errors; {summary.faces} faces "
        f"({summary.flagged} flagged)" + (f"; {summary.retried} retried" if summary.retried else "")
    )
    if summary.identities:
        i = summary.identities
        click.echo(
            f"people: {i['people']} ({i['new_people']} new), the largest holds "
            f"{100 * i['largest_share']:.1f}% of the grouped faces"
        )
    for e in summary.errors[:20]:
        click.echo(f"  image {e['image_id']}: {e['reason']}")
    if summary.error > 20:
        click.echo(f"  ... and {summary.error - 20} more (ghosts status, or the review page's photo view)")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@folder_option("--out", "out_dir", help="Folder for the aligned faces (<stem>_01.png, <stem>_02.png, ...).")
@click.option(
    "--size", type=click.Choice(SIZES), default="1024", show_default=True, help="Output side in pixels."
)
@choice_option("--detector", choices=("hog", "cnn"), help=DETECTOR_HELP)
@workers_option(WORKERS_HELP)
@click.option("--recursive", "-r", is_flag=True, help="Descend into sub-folders.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print, per input, the faces written and what was skipped."
)
def align(
    inputs: tuple[Path, ...],
    out_dir: Path,
    size: str,
    detector: str,
    workers: int | None,
    recursive: bool,
    as_json: bool,
) -> None:
    """FFHQ-align every face in photo files and folders (no workspace needed).

    Every face of every input becomes <stem>_01.png, <stem>_02.png, ... in --out, left to right, exactly
    framed as the FFHQ data set. Unreadable files and photos without faces are reported and skipped.
    """
    from alignment.files import align_files, collect_inputs

    files = collect_inputs(list(inputs), recursive=recursive)
    # The quality score and flags are shown only in the --json report: not measured otherwise.
    reports = align_files(
        files,
        out_dir,
        size=int(size),
        detector=detector,
        workers=workers,
        progress=not as_json,
        measure=as_json,
    )
    if as_json:
        echo_json(reports)
    else:
        written = sum(len(r["faces"]) for r in reports)
        click.echo(f"{written} faces from {len(reports)} photos written to {out_dir}")
        for r in reports:
            for s in r["skipped"]:
                which = f" face {s['face']}" if s["face"] else ""
                click.echo(f"  skipped {r['input']}{which}: {s['reason']}")
    unreadable = [
        r
        for r in reports
        if not r["faces"]
        and any(s["face"] is None and s["reason"].startswith("cannot read") for s in r["skipped"])
    ]
    if len(unreadable) == len(reports):
        raise GhostsError("none of the inputs could be read as an image")
    # At exit, the interpreter's collections would walk every object of this process once more (about 30 ms
    # of one core, 1.5% of aligning 36 photos), only to free memory the process is about to hand back: every
    # face is written, closed and renamed by now, so they have nothing left to finalise. Frozen at exit, not
    # here: a caller that runs this command in its own long-lived process (a test, a script) keeps its
    # collector until then.
    _freeze_heap_at_exit()


@functools.cache
def _freeze_heap_at_exit() -> None:
    atexit.register(gc.freeze)


COMMANDS = [align, analyze]
