"""Style mixing: copy some layers' styles from one face onto another.

Each synthesis layer reads its own w, so a picture can take its coarse layers (pose, face shape) from one
seed and the rest (colour, texture) from another. The grid has the column seeds along the top, the row seeds
down the left, and at (row, col) the row seed with the chosen layers taken from the column seed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from training.errors import TrainingError
from training.latent.generate import DRAWING, Drawing
from training.latent.picture import make_grid

COARSE_MAX_RES = 32  # the reference examples copy the 4-32 px layers (0-6 on a large network): pose and shape


def coarse_styles(G) -> list[int]:
    """W indices of the layers up to 32 px: layer 0 is the 4x4 conv, then two per resolution."""
    top = min(G.img_resolution, COARSE_MAX_RES)
    return list(range(min(1 + 2 * (int(math.log2(top)) - 2), G.num_ws)))


def check_styles(G, styles: list[int]) -> list[int]:
    bad = [s for s in styles if not 0 <= s < G.num_ws]
    if bad:
        raise TrainingError(f"style layer {bad[0]} does not exist: this network has layers 0-{G.num_ws - 1}")
    return sorted(set(styles))


@torch.no_grad()
def mix_ws(row_ws: torch.Tensor, col_ws: torch.Tensor, styles: list[int]) -> torch.Tensor:
    """[R, C, num_ws, w_dim]: each row latent with the `styles` layers replaced by each column latent's."""
    mixed = row_ws.unsqueeze(1).repeat(1, col_ws.shape[0], 1, 1)
    mixed[:, :, styles] = col_ws.unsqueeze(0)[:, :, styles]
    return mixed


def style_mix(
    G,
    row_seeds: list[int],
    col_seeds: list[int],
    styles: list[int] | None = None,
    drawing: Drawing = DRAWING,
) -> np.ndarray:
    """The style-mixing grid as one HxWx3 uint8 picture ((R+1) x (C+1) cells, blank top-left corner)."""
    styles = coarse_styles(G) if styles is None else check_styles(G, styles)
    row_ws, col_ws = drawing.ws(G, row_seeds), drawing.ws(G, col_seeds)
    mixed = mix_ws(row_ws, col_ws, styles).flatten(0, 1)
    pics = drawing.synthesize(G, torch.cat([row_ws, col_ws, mixed]), "mixing")
    rows, cols = pics[: len(row_seeds)], pics[len(row_seeds) : len(row_seeds) + len(col_seeds)]
    cells = pics[len(row_seeds) + len(col_seeds) :]
    grid: list = [None, *cols]
    for r, row_pic in enumerate(rows):
        grid += [row_pic, *cells[r * len(col_seeds) : (r + 1) * len(col_seeds)]]
    return make_grid(grid, cols=len(col_seeds) + 1)
