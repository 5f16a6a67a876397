"""Random pictures from a trained generator: seeds -> images, one PNG per seed and an optional grid."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class Drawing:
    """How faces are drawn from seeds: the options generate_images, interpolate, style_mix and apply_direction
    share (the CLI's --trunc, --noise-mode and --class, and its progress bar)."""

    truncation_psi: float = 1.0  # 1 = no truncation; 0.5-0.7 trades variety for quality
    truncation_cutoff: int | None = None  # truncate only the first N layers; None = all
    noise_mode: str = "const"  # const: reproducible; random: fresh grain; none: no grain
    class_idx: int | None = None  # the class, for a conditional network
    progress: bool = False  # a progress bar while synthesising

    def __post_init__(self) -> None:
        check_noise_mode(self.noise_mode)

    def ws(self, G, seeds: list[int]) -> torch.Tensor:
        """The seeds' W+ latents [N, num_ws, w_dim], truncated as asked."""
        return seed_ws(
            G,
            seeds,
            truncation_psi=self.truncation_psi,
            truncation_cutoff=self.truncation_cutoff,
            class_idx=self.class_idx,
        )

    def synthesize(self, G, ws: torch.Tensor, desc: str) -> list[np.ndarray]:
        """`synthesize` with this noise mode and progress bar (`desc` names the bar)."""
        return synthesize(G, ws, noise_mode=self.noise_mode, progress=self.progress, desc=desc)


DRAWING = Drawing()  # the defaults: no truncation, constant noise, no class, no progress bar


def generate_images(G, seeds: list[int], drawing: Drawing = DRAWING) -> list[np.ndarray]:
    """One HxWx3 uint8 picture per seed; the same seed always gives the same picture with noise 'const'."""
    return drawing.synthesize(G, drawing.ws(G, seeds), "generating")


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
