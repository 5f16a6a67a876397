"""Random pictures from a trained generator: seeds -> images, one PNG per seed and an optional grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.errors import TrainingError
from training.latent.picture import save_grid, save_png, to_uint8
from training.latent.seeds import seed_ws

NOISE_MODES = ("const", "random", "none")


def check_noise_mode(noise_mode: str) -> None:
    if noise_mode not in NOISE_MODES:
        raise TrainingError(f"noise mode must be one of {', '.join(NOISE_MODES)}, not {noise_mode!r}")


@torch.no_grad()
def synthesize(
    G,
    ws: torch.Tensor,
    *,
    noise_mode: str = "const",  # const: reproducible; random: fresh grain
    progress: bool = False,
    desc: str = "synthesising",
) -> list[np.ndarray]:
    """W+ latents [N, num_ws, w_dim] -> HxWx3 uint8 pictures. One latent at a time: the result of a latent
    then never depends on what else is in the batch, so equal latents give bit-equal pictures."""
    check_noise_mode(noise_mode)
    out = []
    for w in tqdm(ws, desc=desc, unit="img", disable=not progress, leave=False):
        out.extend(to_uint8(G.synthesis(w.unsqueeze(0), noise_mode=noise_mode)))
    return out


def generate_images(
    G,
    seeds: list[int],
    truncation_psi: float = 1.0,  # 0.5-0.7 trades variety for quality
    noise_mode: str = "const",
    *,
    truncation_cutoff: int | None = None,
    class_idx: int | None = None,
    progress: bool = False,
) -> list[np.ndarray]:
    """One HxWx3 uint8 picture per seed; the same seed always gives the same picture with noise 'const'."""
    check_noise_mode(noise_mode)
    ws = seed_ws(
        G, seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, class_idx=class_idx
    )
    return synthesize(G, ws, noise_mode=noise_mode, progress=progress, desc="generating")


def seed_filename(seed: int) -> str:
    return f"seed{seed:04d}.png"


def write_images(
    images: list[np.ndarray], seeds: list[int], outdir: Path | str, *, grid: bool = False
) -> list[Path]:
    """Write `seedNNNN.png` per seed (and `grid.png` when asked) into outdir; returns the paths written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = [save_png(im, outdir / seed_filename(s)) for im, s in zip(images, seeds)]
    if grid:
        paths.append(save_grid(images, outdir / "grid.png"))
    return paths
