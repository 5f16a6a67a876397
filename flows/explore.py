"""`explore`: a first look at a trained generator: a grid of random faces and a looping morph through a few."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from curation.catalog.errors import GhostsError
from flows.artifacts import MAX_DATA_URI_BYTES, artifact_key, data_uri


def _generator(network: str, device: str | None):
    import torch

    from training.checkpoint import load_generator

    return load_generator(network, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))


@task(name="sample-grid", cache_policy=NO_CACHE)
def sample_grid(network: str, seeds: list[int], truncation_psi: float, out: str, device: str | None) -> str:
    from training.latent import generate_images, make_grid, save_png

    grid = make_grid(generate_images(_generator(network, device), seeds, truncation_psi))
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
    from training.latent import interpolate, write_animation

    path = write_animation(
        interpolate(
            _generator(network, device), seeds, frames=frames, loop=True, truncation_psi=truncation_psi
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


@flow(name="explore", log_prints=True)
def explore(
    network: str,  # a snapshot: network-snapshot-NNNNNN (.json, .safetensors or the stem)
    grid_seeds: int = 16,  # faces on the grid (seeds 0..N-1)
    truncation_psi: float = 0.7,  # 0.5-0.7 trades variety for cleaner faces; 1 = none
    morph_seeds: list[int] | None = None,  # seeds the morph passes through; default 0-3
    frames: int = 30,  # frames per transition between two seeds
    outdir: str | None = None,  # default: explore/ beside the snapshot
    device: str | None = None,  # cpu or cuda; default cuda when present
) -> dict[str, Any]:
    """Write grid.png and morph.gif, and show both as artifacts."""
    if grid_seeds < 1 or frames < 1:
        raise GhostsError("explore: grid_seeds and frames must be at least 1")
    seeds = list(morph_seeds) if morph_seeds else [0, 1, 2, 3]
    if len(seeds) < 2:
        raise GhostsError("explore: a morph needs at least two seeds")
    out = Path(outdir) if outdir else Path(network).expanduser().resolve().parent / "explore"
    grid = sample_grid(network, list(range(grid_seeds)), truncation_psi, str(out / "grid.png"), device)
    gif = morph(network, seeds, frames, truncation_psi, str(out / "morph.gif"), device)
    return {"grid": grid, "morph": gif}
