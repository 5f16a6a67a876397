"""Generator output -> 8-bit pictures: conversion, grids, atomic PNG writes."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from curation.catalog.store import atomic_write_bytes
from training.errors import TrainingError


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """NCHW floats in about [-1, 1] -> list of HxWx3 uint8 (grey networks are repeated to RGB)."""
    x = (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    return list(x.permute(0, 2, 3, 1).cpu().numpy())


def make_grid(
    images: list[np.ndarray],
    cols: int | None = None,
    *,
    pad: int = 0,  # pixels of background between cells
    background: int = 0,
) -> np.ndarray:
    """Tile same-sized HxWx3 pictures row by row; `None` entries leave a blank cell (the corner of a
    style-mixing grid). `cols` defaults to a near-square layout."""
    real = [im for im in images if im is not None]
    if not real:
        raise TrainingError("nothing to put in a grid")
    h, w = real[0].shape[:2]
    if any(im.shape[:2] != (h, w) for im in real):
        raise TrainingError("grid cells must all have the same size")
    n = len(images)
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, 3), background, dtype=np.uint8)
    for i, im in enumerate(images):
        if im is None:
            continue
        r, c = divmod(i, cols)
        grid[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = im
    return grid


def save_png(image: np.ndarray, path: Path | str) -> Path:
    """Write an HxWx3 uint8 picture as PNG, atomically."""
    path = Path(path)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_grid(images: list[np.ndarray], path: Path | str, cols: int | None = None, *, pad: int = 0) -> Path:
    """`make_grid` then `save_png`; returns the path."""
    return save_png(make_grid(images, cols, pad=pad), path)


def side_by_side(*images: np.ndarray) -> np.ndarray:
    """Pictures of the same height joined left to right (target | projection)."""
    return np.concatenate(images, axis=1)
