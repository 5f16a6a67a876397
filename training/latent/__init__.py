"""Latent-space tools for a trained generator: generate, interpolate, project, style-mix, feature directions.

One module per tool; everything a flow or a notebook needs is importable from here:

    from training.checkpoint import load_generator
    from training.latent import Drawing, generate_images, save_grid
    G = load_generator("runs/.../network-snapshot-005000")
    save_grid(generate_images(G, range(16), Drawing(truncation_psi=0.7)), "grid.png")
"""

from training.latent.animation import write_animation
from training.latent.direction import (
    apply_direction,
    direction_grid,
    edit_ws,
    fit_direction,
    load_direction,
    load_latents,
    save_direction,
)
from training.latent.distance import PixelStructuralDistance, VGGDistance, load_vgg
from training.latent.generate import Drawing, generate_images, synthesize, write_images
from training.latent.interpolate import interpolate, interpolate_ws, lerp, slerp
from training.latent.mix import style_mix
from training.latent.picture import make_grid, save_grid, save_png, to_uint8
from training.latent.project import ProjectionResult, project, save_projection
from training.latent.seeds import parse_floats, parse_seeds, seed_ws, z_from_seed
from training.latent.target import load_target

__all__ = [
    "Drawing",
    "PixelStructuralDistance",
    "ProjectionResult",
    "VGGDistance",
    "apply_direction",
    "direction_grid",
    "edit_ws",
    "fit_direction",
    "generate_images",
    "interpolate",
    "interpolate_ws",
    "lerp",
    "load_direction",
    "load_latents",
    "load_target",
    "load_vgg",
    "make_grid",
    "parse_floats",
    "parse_seeds",
    "project",
    "save_direction",
    "save_grid",
    "save_png",
    "save_projection",
    "seed_ws",
    "slerp",
    "style_mix",
    "synthesize",
    "to_uint8",
    "write_animation",
    "write_images",
    "z_from_seed",
]
