"""`explore`: a first look at a trained generator: a grid of random faces, a looping morph through a few, and
the memorisation report (training.latent.memorization: does the model copy its training faces?) with its
sheet of closest pairs as an image artifact and its numbers as a table artifact."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from curation.catalog.errors import GhostsError
from curation.catalog.store import atomic_write_text
from flows.artifacts import MAX_DATA_URI_BYTES, artifact_key, data_uri


def _generator(network: str, device: str | None):
    import torch  # imported here for start-up cost: torch loads only when a step generates faces

    from training.checkpoint import load_generator  # imported here for start-up cost (torch)

    return load_generator(network, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))


@task(name="sample-grid", cache_policy=NO_CACHE)
def sample_grid(network: str, seeds: list[int], truncation_psi: float, out: str, device: str | None) -> str:
    from training.latent import (
        Drawing,
        generate_images,
        make_grid,
        save_png,
    )  # imported here for start-up cost (torch)

    grid = make_grid(generate_images(_generator(network, device), seeds, Drawing(truncation_psi)))
    path = save_png(grid, out)
    create_image_artifact(
        image_url=data_uri(grid),
        key=artifact_key("explore-grid"),
        description=f"Seeds {seeds[0]}-{seeds[-1]}, truncation psi {truncation_psi:g} ({path})",
    )
    return str(path)


@task(name="morph", cache_policy=NO_CACHE)
def morph(
    network: str, seeds: list[int], frames: int, truncation_psi: float, out: str, device: str | None
) -> str:
    from training.latent import (
        Drawing,
        interpolate,
        write_animation,
    )  # imported here for start-up cost (torch)

    path = write_animation(
        interpolate(
            _generator(network, device), seeds, frames=frames, loop=True, drawing=Drawing(truncation_psi)
        ),
        out,
        fps=min(30.0, frames / 2),
    )
    size = path.stat().st_size
    # Small GIFs play inside the Prefect UI; big ones are named by path.
    shown = (
        f"![morph](data:image/gif;base64,{base64.b64encode(path.read_bytes()).decode('ascii')})\n\n"
        if path.suffix == ".gif" and size <= MAX_DATA_URI_BYTES * 3 // 4
        else ""
    )
    create_markdown_artifact(
        f"## Morph through seeds {', '.join(map(str, seeds))}\n\n{shown}`{path}`",
        key=artifact_key("explore-morph"),
        description="A looping walk through latent space",
    )
    return str(path)


def training_archive(network: str) -> Path | None:
    """The archive a snapshot was trained on, as its JSON records it (training options `data`); None when
    the snapshot names none or the file is no longer there."""
    stem = Path(network).expanduser()
    meta = stem if stem.suffix == ".json" else stem.with_suffix(".json")
    try:
        data = (json.loads(meta.read_text()).get("options") or {}).get("data")
    except (OSError, ValueError, AttributeError):
        return None
    path = Path(data) if isinstance(data, str) and data else None
    return path if path is not None and path.is_file() else None


def memorization_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's numbers as table rows (measure, value), in the order docs/responsible-use.md reads them."""

    def q(d: dict, k: str) -> Any:
        return None if d.get(k) is None else round(d[k], 4)

    desc, pix, base = (
        report["descriptor_quantiles"],
        report["pixel_quantiles"],
        report["training_descriptor_quantiles"],
    )
    return [
        {"measure": "generated faces", "value": report["samples"]},
        {"measure": "training faces", "value": report["training_images"]},
        {"measure": "truncation psi", "value": report["truncation_psi"]},
        {"measure": "look like a face", "value": f"{report['fraction_face_like']:.1%}"},
        {
            "measure": f"closer than {report['threshold']:g} to a training face (same person)",
            "value": f"{report['fraction_same_person']:.1%}",
        },
        {"measure": "descriptor distance to the nearest training face: min", "value": q(desc, "p0")},
        {"measure": "descriptor distance to the nearest training face: median", "value": q(desc, "p50")},
        {"measure": "training faces to their nearest other: median (yardstick)", "value": q(base, "p50")},
        {"measure": "pixel RMS to the nearest training image: min", "value": q(pix, "p0")},
        {"measure": "pixel RMS to the nearest training image: median", "value": q(pix, "p50")},
    ]


@task(name="memorization", cache_policy=NO_CACHE)
def memorization_report(
    network: str, archive: str, samples: int, truncation_psi: float, out: str, device: str | None
) -> dict[str, Any]:
    """Generate `samples` faces, find each one's nearest training faces, write memorization.json and the
    sheet, and show the sheet and the numbers as artifacts."""
    # imported here for start-up cost: torch, dlib and OpenCV load only when the report runs
    from training.latent.memorization import measure_memorization

    outdir = Path(out)
    report = measure_memorization(
        _generator(network, device),
        archive,
        list(range(samples)),
        truncation_psi=truncation_psi,
        sheet=outdir / "memorization.png",
        network_name=str(network),
    )
    result = report.to_dict()
    atomic_write_text(outdir / "memorization.json", json.dumps(result, indent=2) + "\n")
    create_table_artifact(
        table=memorization_rows(result),
        key=artifact_key("explore-memorization"),
        description=f"Is the model copying its training faces? {report.summary()}",
    )
    if report.sheet:
        create_image_artifact(
            image_url=data_uri(Path(report.sheet)),
            key=artifact_key("explore-memorization-sheet"),
            description="Closest pairs, closest first: generated | nearest training face by descriptor | "
            f"nearest by pixels ({report.sheet})",
        )
    return {"json": str(outdir / "memorization.json"), "sheet": report.sheet, "summary": report.summary()}


@flow(name="explore", log_prints=True)
def explore(
    network: str,  # a snapshot: network-snapshot-NNNNNN (.json, .safetensors or the stem)
    grid_seeds: int = 16,  # faces on the grid (seeds 0..N-1)
    truncation_psi: float = 0.7,  # 0.5-0.7 trades variety for cleaner faces; 1 = none
    morph_seeds: list[int] | None = None,  # seeds the morph passes through; default 0-3
    frames: int = 30,  # frames per transition between two seeds
    outdir: str | None = None,  # default: explore/ beside the snapshot
    device: str | None = None,  # cpu or cuda; default cuda when present
    archive: str | None = None,  # the training archive; default: the one the snapshot records
    memorization_samples: int = 64,  # faces generated for the memorisation report; 0 leaves it out
) -> dict[str, Any]:
    """Write grid.png and morph.gif, and show both as artifacts; then the memorisation report against the
    training archive (memorization.json, memorization.png, a table and an image artifact)."""
    if grid_seeds < 1 or frames < 1:
        raise GhostsError("explore: grid_seeds and frames must be at least 1")
    if memorization_samples < 0:
        raise GhostsError("explore: memorization_samples must be 0 (no report) or more")
    if archive is not None and not Path(archive).expanduser().is_file():
        raise GhostsError(f"explore: no training archive at {archive}")
    seeds = list(morph_seeds) if morph_seeds else [0, 1, 2, 3]
    if len(seeds) < 2:
        raise GhostsError("explore: a morph needs at least two seeds")
    out = Path(outdir) if outdir else Path(network).expanduser().resolve().parent / "explore"
    grid = sample_grid(network, list(range(grid_seeds)), truncation_psi, str(out / "grid.png"), device)
    gif = morph(network, seeds, frames, truncation_psi, str(out / "morph.gif"), device)
    done: dict[str, Any] = {"grid": grid, "morph": gif, "memorization": None}
    if memorization_samples:
        found = Path(archive).expanduser() if archive else training_archive(network)
        if found is None:
            print("memorisation report left out: the snapshot names no training archive that is still there")
        else:
            done["memorization"] = memorization_report(
                network, str(found), memorization_samples, truncation_psi, str(out), device
            )
    return done
