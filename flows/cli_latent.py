"""`ghosts generate | interpolate | project | style-mix | direction fit/apply`: playing with a trained model.

Thin wrappers: parse and check the options, load the generator, call training.latent, say what was written.
"""

# The commands import their rooms inside their bodies, for start-up cost: `ghosts --help` and every other
# command load torch, dlib, FastAPI or SQLAlchemy only when they need them.
from __future__ import annotations

from pathlib import Path

import click

from flows.cli_options import choice_option, file_option, folder_option, network_option, path_option
from training.errors import TrainingError

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

device_option = click.option(
    "--device", default=None, help="cpu, cuda, cuda:1 ... [cuda when present, else cpu]."
)
trunc_option = click.option(
    "--trunc",
    "truncation_psi",
    type=float,
    default=1.0,
    show_default=True,
    help="Truncation psi: 1 = none; 0.5-0.7 trades variety for cleaner faces.",
)
noise_option = choice_option(
    "--noise-mode",
    choices=("const", "random", "none"),
    help="const: reproducible; random: fresh fine detail each time.",
)
outdir_option = folder_option("--outdir", help="Output folder.")
class_option = click.option(
    "--class", "class_idx", type=int, default=None, help="Class index, for a conditional network."
)


def _check_out(out: Path, suffixes, why: str) -> None:
    """--out must end in one of `suffixes` (any case), before anything slow starts; else `why` says so."""
    if out.suffix.lower() not in suffixes:
        raise TrainingError(f"--out {out.name}: {why}")


def _drawing(truncation_psi: float, noise_mode: str, class_idx: int | None):
    """How the commands that draw faces draw them (--trunc, --noise-mode, --class), with a progress bar: the
    training.latent.Drawing that generate_images, interpolate, style_mix and apply_direction take."""
    from training.latent import Drawing  # imported here for start-up cost (torch)

    return Drawing(truncation_psi, noise_mode=noise_mode, class_idx=class_idx, progress=True)


def _load(network: Path, device: str | None, truncation_psi: float | None = None):
    """The snapshot's generator on `device` (cuda when present, else cpu), once --trunc (when the command
    has it) is known to be in range: a bad option fails before the slow load."""
    if truncation_psi is not None and not 0 <= truncation_psi <= 2:
        raise TrainingError(
            f"--trunc {truncation_psi} is out of range: use 0 (the average face) to 1 (no "
            "truncation); values up to 2 exaggerate"
        )
    import torch

    from training.checkpoint import load_generator

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError as e:
        raise TrainingError(f"unknown device {device!r}: {e}") from None
    if torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return load_generator(network, device=device)


@click.command(context_settings=CTX)
@network_option
@click.option("--seeds", required=True, help="Seeds: numbers and ranges, e.g. 0-31 or 3,17,42.")
@trunc_option
@noise_option
@click.option("--grid", is_flag=True, help="Also write grid.png of all the pictures.")
@outdir_option
@class_option
@device_option
def generate(network, seeds, truncation_psi, noise_mode, grid, outdir, class_idx, device) -> None:
    """Random faces: one PNG per seed (seedNNNN.png), the same picture for the same seed every time."""
    from training.latent import generate_images, parse_seeds, write_images

    seed_list = parse_seeds(seeds)
    G = _load(network, device, truncation_psi)
    images = generate_images(G, seed_list, _drawing(truncation_psi, noise_mode, class_idx))
    paths = write_images(images, seed_list, outdir, grid=grid)
    click.echo(f"wrote {len(seed_list)} pictures to {outdir}" + (f" and {paths[-1].name}" if grid else ""))


@click.command(context_settings=CTX)
@network_option
@click.option("--seeds", required=True, help="Seeds to morph through, in order, e.g. 3,17,42.")
@click.option(
    "--frames", type=int, default=60, show_default=True, help="Frames per transition between two seeds."
)
@choice_option(
    "--space", choices=("w", "z"), help="w: straight lines in W (even morphs); z: great circles in Z."
)
@click.option("--loop", is_flag=True, help="Return to the first seed, for a seamless loop.")
@click.option("--fps", type=float, default=30, show_default=True, help="Frames per second.")
@trunc_option
@noise_option
@file_option("--out", help="morph.gif (Pillow) or morph.mp4 (H.264, via imageio-ffmpeg).")
@class_option
@device_option
def interpolate(
    network, seeds, frames, space, loop, fps, truncation_psi, noise_mode, out, class_idx, device
) -> None:
    """A morph through the seeds' faces, as an animated GIF or an MP4."""
    from training.latent import interpolate as run_interpolation
    from training.latent import parse_seeds, write_animation
    from training.latent.animation import FORMATS

    seed_list = parse_seeds(seeds)
    _check_out(out, FORMATS, "write a .gif or an .mp4")
    G = _load(network, device, truncation_psi)
    pics = run_interpolation(
        G,
        seed_list,
        frames,
        space,
        loop,
        drawing=_drawing(truncation_psi, noise_mode, class_idx),
    )
    write_animation(pics, out, fps=fps)
    click.echo(f"wrote {out} ({len(pics)} frames, {len(pics) / fps:.1f} s)")


@click.command(context_settings=CTX)
@network_option
@file_option("--target", "target", help="The photo to find in the model.")
@click.option("--steps", type=int, default=1000, show_default=True, help="Optimisation steps.")
@click.option(
    "--align/--no-align",
    default=True,
    show_default=True,
    help="Find and FFHQ-align the largest face first; --no-align for an already aligned picture.",
)
@file_option(
    "--vgg",
    required=False,
    help="VGG16 TorchScript file for the LPIPS loss; without it a pixel + structural loss is used.",
)
@click.option(
    "--noise/--no-noise",
    "optimize_noise",
    default=True,
    show_default=True,
    help="Optimise the noise images too (--no-noise keeps the network's constant noise).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the optimisation.")
@choice_option("--video", choices=("mp4", "gif"), help="Format of the optimisation video.")
@outdir_option
@class_option
@device_option
def project(
    network, target, steps, align, vgg, optimize_noise, seed, video, outdir, class_idx, device
) -> None:
    """Find the face in the model closest to a photo.

    Writes target.png, proj.png, projected_w.npz (key w), proj.mp4/.gif of the optimisation, loss.png and
    projection.json into OUTDIR.
    """
    from training.latent import load_target, load_vgg, save_projection
    from training.latent import project as run_projection

    if steps < 1:
        raise TrainingError(f"--steps must be at least 1, not {steps}")
    G = _load(network, device)
    picture = load_target(target, G.img_resolution, align=align)
    distance = load_vgg(vgg, device=next(G.parameters()).device) if vgg else None
    result = run_projection(
        G,
        picture,
        steps=steps,
        distance=distance,
        optimize_noise=optimize_noise,
        seed=seed,
        class_idx=class_idx,
        progress=True,
    )
    options = {
        "network": str(network),
        "target": str(target),
        "steps": steps,
        "align": align,
        "loss": "lpips" if vgg else "pixel+ssim",
        "optimize_noise": optimize_noise,
        "seed": seed,
    }
    paths = save_projection(result, picture, outdir, video=video, options=options)
    click.echo(
        f"distance {result.distances[0]:.4f} -> {result.distances[-1]:.4f}; wrote "
        + ", ".join(p.name for p in paths.values())
        + f" to {outdir}"
    )


@click.command(name="style-mix", context_settings=CTX)
@network_option
@click.option("--rows", required=True, help="Row seeds (they give the layers not in --styles).")
@click.option("--cols", required=True, help="Column seeds (they give the --styles layers).")
@click.option(
    "--styles",
    default=None,
    help="Layers taken from the column seeds, e.g. 0-6 [the coarse 4-32 px layers: pose, face shape].",
)
@trunc_option
@noise_option
@file_option("--out", help="The grid, a .png.")
@class_option
@device_option
def style_mix(network, rows, cols, styles, truncation_psi, noise_mode, out, class_idx, device) -> None:
    """A style-mixing grid: column seeds along the top, row seeds down the left, mixes inside."""
    from training.latent import parse_seeds, save_png
    from training.latent import style_mix as run_mix
    from training.latent.seeds import parse_ints

    row_seeds, col_seeds = parse_seeds(rows), parse_seeds(cols)
    style_list = parse_ints(styles, "style layer", "0-6") if styles else None
    _check_out(out, (".png",), "the grid is written as a .png")
    G = _load(network, device, truncation_psi)
    grid = run_mix(
        G,
        row_seeds,
        col_seeds,
        style_list,
        drawing=_drawing(truncation_psi, noise_mode, class_idx),
    )
    save_png(grid, out)
    click.echo(f"wrote {out} ({len(row_seeds) + 1} x {len(col_seeds) + 1} cells)")


@click.group(context_settings=CTX)
def direction() -> None:
    """Feature directions: fit one from examples, apply it to faces."""


@direction.command(name="fit", context_settings=CTX)
@network_option
@path_option(
    "--positive",
    help="Latents with the attribute: a folder of projected_w.npz files and/or .txt seed lists, or one file.",
)
@path_option("--negative", help="Latents without it (same forms).")
@choice_option(
    "--method",
    choices=("mean", "logistic"),
    help="mean: difference of the means; logistic: normal of a logistic-regression boundary.",
)
@file_option("--out", help="The direction, a .npy.")
@class_option
@device_option
def direction_fit(network, positive, negative, method, out, class_idx, device) -> None:
    """Fit a direction from latents with (--positive) and without (--negative) an attribute."""
    from training.latent import fit_direction, load_latents, save_direction

    _check_out(out, (".npy",), "directions are saved as .npy files")
    G = _load(network, device)
    pos = load_latents(positive, G, class_idx=class_idx)
    neg = load_latents(negative, G, class_idx=class_idx)
    vec = fit_direction(G, pos, neg, method, class_idx=class_idx)
    save_direction(
        vec,
        out,
        info={
            "method": method,
            "network": str(network),
            "positive": str(positive),
            "negative": str(negative),
            "num_positive": len(pos),
            "num_negative": len(neg),
            "units": "strength 1 = one standard deviation of W along the direction",
        },
    )
    click.echo(f"wrote {out} from {len(pos)} positive and {len(neg)} negative latents ({method})")


@direction.command(name="apply", context_settings=CTX)
@network_option
@click.option("--seeds", required=True, help="Seeds to edit, e.g. 0-7.")
@file_option("--direction", "direction_path", help="A .npy from `ghosts direction fit`.")
@click.option(
    "--strengths",
    default="-3,0,3",
    show_default=True,
    help="Strengths in standard deviations of W; 0 is the unedited face.",
)
@click.option("--layers", default=None, help="Edit only these layers, e.g. 0-6 [all].")
@trunc_option
@noise_option
@file_option("--out", help="The grid (.png): seeds down, strengths across.")
@class_option
@device_option
def direction_apply(
    network, seeds, direction_path, strengths, layers, truncation_psi, noise_mode, out, class_idx, device
) -> None:
    """Move seeds' faces along a direction at several strengths."""
    from training.latent import (
        apply_direction,
        direction_grid,
        load_direction,
        parse_floats,
        parse_seeds,
        save_png,
    )
    from training.latent.seeds import parse_ints

    seed_list, strength_list = parse_seeds(seeds), parse_floats(strengths, "strength")
    layer_list = parse_ints(layers, "layer", "0-6") if layers else None
    _check_out(out, (".png",), "the grid is written as a .png")
    G = _load(network, device, truncation_psi)
    vec = load_direction(direction_path, G)
    rows = apply_direction(
        G,
        seed_list,
        vec,
        strength_list,
        layers=layer_list,
        drawing=_drawing(truncation_psi, noise_mode, class_idx),
    )
    save_png(direction_grid(rows), out)
    click.echo(f"wrote {out} ({len(seed_list)} seeds x {len(strength_list)} strengths)")


COMMANDS = [generate, interpolate, project, style_mix, direction]
