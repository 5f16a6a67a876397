"""`ghosts people` and `ghosts memorization`: who is in the workspace, and whether a model copies them.

Thin wrappers: parse and check the options, call curation.analysis.identities or training.latent.memorization,
say what was found. docs/responsible-use.md says what the numbers mean and where they stop meaning it.
"""

# The commands import their rooms inside their bodies, for start-up cost: `ghosts --help` and every other
# command load torch, dlib or SQLAlchemy only when they need them.
from __future__ import annotations

from pathlib import Path

import click

from flows.cli_latent import CTX, _load, device_option, trunc_option
from flows.cli_options import (
    count_option,
    data_option,
    echo_json,
    file_option,
    json_option,
    network_option,
    open_ws,
    same_person_option,
    workers_option,
)


def _cap_option(name: str, who: str):
    return count_option(
        name,
        minimum=0,
        help=f"Accepted faces at most per {who}, a workspace setting the review counter warns above "
        "(0 clears it).",
    )


@click.command(context_settings=CTX)
@same_person_option("Descriptor distance below which new faces are linked to each other or to a person.")
@_cap_option("--max-per-person", "person")
@_cap_option("--max-per-owner", "account")
@workers_option("Worker processes for the descriptors (default: one per available core; 1: this process).")
@json_option()
@data_option
def people(
    threshold: float,
    max_per_person: int | None,
    max_per_owner: int | None,
    workers: int | None,
    as_json: bool,
    data: Path | None,
) -> None:
    """Describe the faces that have no descriptor yet and group the new ones into people (`ghosts analyze`
    does this at its end; run it on its own for a workspace analysed before, or after an interruption).
    With --max-per-person / --max-per-owner, also set the caps the review page counts accepted faces
    against."""
    from curation.analysis.identities import update_identities
    from curation.catalog.people import set_caps

    ws = open_ws(data)
    given = {"max_per_person": max_per_person, "max_per_owner": max_per_owner}
    with ws.session() as s:
        caps = set_caps(s, **{k: v or None for k, v in given.items() if v is not None})
    summary = update_identities(ws, threshold=threshold, progress=not as_json, workers=workers)
    if as_json:
        echo_json({**summary.as_dict(), "caps": caps})
        return
    click.echo(
        f"described {summary.described} faces, grouped {summary.clustered} ({summary.new_people} new people); "
        f"{summary.people} people, the largest holds {100 * summary.largest_share:.1f}% of the grouped faces"
        + (
            f"; {summary.undescribed} faces left without a descriptor (photo missing or unreadable)"
            if summary.undescribed
            else ""
        )
    )
    if any(v is not None for v in given.values()):
        click.echo("caps: " + ", ".join(f"{k.replace('_', ' ')} {v or 'none'}" for k, v in caps.items()))


@click.command(context_settings=CTX)
@network_option
@file_option("--archive", help="The dataset archive (zip) the network was trained on.")
@count_option("--samples", default=64, help="Faces to generate.")
@count_option("--first-seed", minimum=0, default=0, help="Seeds first-seed .. first-seed + samples - 1.")
@trunc_option
@same_person_option(
    "Same-person descriptor distance: generated faces closer than this to a training face count."
)
@file_option(
    "--out",
    "sheet",
    required=False,
    help="Write a PNG sheet of the closest pairs here (generated | nearest by descriptor | by pixels).",
)
@json_option("Print the whole report as JSON.")
@device_option
def memorization(
    network, archive, samples, first_seed, truncation_psi, threshold, sheet, as_json, device
) -> None:
    """Generate faces and find each one's nearest training faces by descriptor and by pixels: the fraction
    closer than the same-person threshold says how much the model copies its training people."""
    from training.latent.memorization import measure_memorization

    G = _load(network, device, truncation_psi)
    report = measure_memorization(
        G,
        archive,
        list(range(first_seed, first_seed + samples)),
        truncation_psi=truncation_psi,
        threshold=threshold,
        sheet=sheet,
        network_name=str(network),
        progress=not as_json,
    )
    if as_json:
        click.echo(report.to_json())
        return
    click.echo(report.summary())
    for p in report.pairs[:5]:
        if p.face_like:
            click.echo(
                f"  seed {p.seed}: descriptor {p.descriptor_distance:.3f} to {p.descriptor_member}, "
                f"pixels {p.pixel_distance:.3f} to {p.pixel_member}"
                + (" (mirrored)" if p.pixel_mirrored else "")
            )
    if report.sheet:
        click.echo(f"sheet -> {report.sheet}")


COMMANDS = [people, memorization]
