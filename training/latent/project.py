"""Projection: find the W latent (and noise images) whose picture is closest to a photo.

The recipe of the StyleGAN2 projector (Karras et al. 2020, appendix D): start from the mean w of 10,000
mapped samples; optimise one w, shared by every layer, and the per-layer noise images with Adam; ramp the
learning rate up over the first 5% of steps and down along a cosine over the last 25%; add Gaussian noise to
w, scaled by the spread of W and ramped down to zero over the first 75%, so early steps explore instead of
committing to the nearest local fit; keep the noise images from soaking up the picture by penalising their
autocorrelation at every scale and renormalising them to zero mean, unit variance after each step.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from curation.catalog.store import atomic_write_bytes, atomic_write_text
from training.errors import TrainingError
from training.latent.animation import write_animation
from training.latent.distance import PixelStructuralDistance
from training.latent.picture import save_png, side_by_side, to_uint8
from training.latent.seeds import device_of, sample_ws


@dataclass
class ProjectionResult:
    w: torch.Tensor  # [1, num_ws, w_dim], on the CPU
    noise: list[torch.Tensor]  # the noise image of each noise layer, in synthesis order ([] when left fixed)
    image: np.ndarray  # the final projection, HxWx3 uint8
    losses: list[float] = field(default_factory=list)  # total loss per step
    distances: list[float] = field(
        default_factory=list
    )  # image distance per step (without the noise penalty)
    frames: list[np.ndarray] = field(default_factory=list)  # target | projection, every few steps


def target_tensor(G, target: np.ndarray) -> torch.Tensor:
    """An HxWx3 uint8 picture at the generator's resolution -> [1, C, H, W] in [-1, 1] on G's device."""
    res = G.img_resolution
    if target.ndim != 3 or target.shape != (res, res, 3) or target.dtype != np.uint8:
        raise TrainingError(
            f"the target must be a {res}x{res} RGB picture (uint8), got {target.shape} "
            f"{target.dtype}; load it with load_target()"
        )
    x = torch.from_numpy(np.ascontiguousarray(target)).to(device_of(G)).permute(2, 0, 1).unsqueeze(0).float()
    if G.img_channels == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    return x / 127.5 - 1


def w_stats(G, num_samples: int = 10_000, *, class_idx: int | None = None) -> tuple[torch.Tensor, float]:
    """Mean w ([1, 1, w_dim]) and spread (root mean squared distance to the mean) of the mapping's output."""
    ws = sample_ws(G, num_samples, class_idx=class_idx)
    w_avg = ws.mean(0, keepdim=True)
    w_std = float(((ws - w_avg).square().sum() / num_samples).sqrt())
    return w_avg.unsqueeze(1), w_std


def noise_penalty(noise: list[torch.Tensor], min_size: int = 8) -> torch.Tensor:
    """Sum over noise images and scales of the squared autocorrelation at a one-pixel shift, x and y. Zero
    for ideal white noise; grows when the optimiser hides picture structure in the noise."""
    total = torch.zeros([], device=noise[0].device) if noise else torch.zeros([])
    for n in noise:
        x = n
        while True:
            total = total + (x * torch.roll(x, 1, dims=3)).mean().square()
            total = total + (x * torch.roll(x, 1, dims=2)).mean().square()
            if x.shape[-1] <= min_size:
                break
            x = F.avg_pool2d(x, 2)
    return total


def learning_rate(t: float, initial: float, rampup: float, rampdown: float) -> float:
    """Linear ramp up over the first `rampup` of the run, cosine ramp down over the last `rampdown`."""
    down = min(1.0, (1.0 - t) / rampdown)
    down = 0.5 - 0.5 * math.cos(down * math.pi)
    return initial * down * min(1.0, t / rampup)


def _downsample(images: torch.Tensor, size: int) -> torch.Tensor:
    return images if images.shape[-1] <= size else F.adaptive_avg_pool2d(images, size)


def project(
    G,
    target: np.ndarray,
    *,
    steps: int = 1000,
    w_avg_samples: int = 10_000,  # mapping samples for the starting w and W's spread
    initial_learning_rate: float = 0.1,
    initial_noise_factor: float = 0.05,  # w noise at step 0, as a fraction of W's spread
    lr_rampdown_length: float = 0.25,  # fraction of the run for the cosine ramp down
    lr_rampup_length: float = 0.05,  # fraction of the run for the linear ramp up
    noise_ramp_length: float = 0.75,  # fraction of the run over which w noise falls to zero
    regularize_noise_weight: float = 1e5,  # weight of the noise autocorrelation penalty
    optimize_noise: bool = True,  # False keeps the network's constant noise (only w moves)
    distance=None,  # a distance object (see distance.py); None = PixelStructuralDistance()
    loss_resolution: int = 256,  # pictures larger than this are area-downsampled before the loss
    video_frames: int = 120,  # at most this many frames of the optimisation are kept
    video_size: int = 512,  # frames are downsampled to at most this many pixels a side
    class_idx: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> ProjectionResult:
    """Optimise a W latent (and the noise images) so G's picture matches `target` (HxWx3 uint8 at G's
    resolution, e.g. from load_target). Deterministic for a given seed and device."""
    if steps < 1:
        raise TrainingError(f"--steps must be at least 1, not {steps}")
    device = device_of(G)
    target_img = target_tensor(G, target)
    distance = distance or PixelStructuralDistance()
    target_feats = distance.features(_downsample(target_img, loss_resolution))
    rng = torch.Generator().manual_seed(seed)

    w_avg, w_std = w_stats(G, w_avg_samples, class_idx=class_idx)
    w_opt = w_avg.clone().requires_grad_(True)
    noise: list[torch.Tensor] = []
    noise_inputs = None
    if optimize_noise:
        layers = G.synthesis.noise_layers()
        noise_inputs = [
            torch.randn(1, 1, lay.resolution, lay.resolution, generator=rng)
            .to(device)
            .requires_grad_(lay.use_noise)
            for lay in layers
        ]
        noise = [n for n, lay in zip(noise_inputs, layers) if lay.use_noise]
    opt = torch.optim.Adam([w_opt, *noise], lr=initial_learning_rate, betas=(0.9, 0.999))

    video_every = max(1, math.ceil(steps / max(1, video_frames)))
    target_frame = to_uint8(_downsample(target_img, video_size))[0]
    losses, distances, frames = [], [], []
    bar = tqdm(range(steps), desc="projecting", unit="step", disable=not progress)
    for step in bar:
        t = step / steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        for group in opt.param_groups:
            group["lr"] = learning_rate(t, initial_learning_rate, lr_rampup_length, lr_rampdown_length)
        w_noise = torch.randn(w_opt.shape, generator=rng).to(device) * w_noise_scale
        ws = (w_opt + w_noise).repeat(1, G.num_ws, 1)
        synth = G.synthesis(ws, noise_mode="const", noise_inputs=noise_inputs)
        dist = distance.distance(_downsample(synth, loss_resolution), target_feats).sum()
        loss = dist + regularize_noise_weight * noise_penalty(noise) if noise else dist
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():  # keep the noise images white: zero mean, unit variance
            for n in noise:
                n -= n.mean()
                n *= n.square().mean().rsqrt()
        losses.append(float(loss.detach()))
        distances.append(float(dist.detach()))
        if step % video_every == 0:
            frames.append(side_by_side(target_frame, to_uint8(_downsample(synth.detach(), video_size))[0]))
        bar.set_postfix(dist=f"{distances[-1]:.4f}", refresh=False)

    with torch.no_grad():
        final = G.synthesis(
            w_opt.detach().repeat(1, G.num_ws, 1), noise_mode="const", noise_inputs=noise_inputs
        )
    image = to_uint8(final)[0]
    frames.append(side_by_side(target_frame, to_uint8(_downsample(final, video_size))[0]))
    return ProjectionResult(
        w=w_opt.detach().repeat(1, G.num_ws, 1).cpu(),
        noise=[n.detach().cpu() for n in noise_inputs or []],
        image=image,
        losses=losses,
        distances=distances,
        frames=frames,
    )


def _loss_curve_png(result: ProjectionResult) -> bytes:
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    steps = np.arange(1, len(result.losses) + 1)
    ax.plot(steps, result.distances, label="image distance")
    if result.noise:
        ax.plot(steps, result.losses, label="total (with noise penalty)", alpha=0.6)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title("projection")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_projection(
    result: ProjectionResult,
    target: np.ndarray,
    outdir,
    *,
    video: str = "mp4",  # or "gif"
    fps: float = 30.0,
    options: dict | None = None,
) -> dict[str, Path]:
    """Write target.png, proj.png, projected_w.npz (key `w`, [1, num_ws, w_dim] float32; the noise images as
    `noise_00`, ... so proj.png can be redrawn exactly), proj.mp4 or proj.gif, loss.png and projection.json."""
    if video not in ("mp4", "gif"):
        raise TrainingError(f"the projection video is mp4 or gif, not {video!r}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = {
        "target": save_png(target, outdir / "target.png"),
        "proj": save_png(result.image, outdir / "proj.png"),
    }
    arrays = {"w": result.w.numpy().astype(np.float32)}
    arrays.update({f"noise_{i:02d}": n.numpy().astype(np.float32) for i, n in enumerate(result.noise)})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(outdir / "projected_w.npz", buf.getvalue())
    paths["w"] = outdir / "projected_w.npz"
    paths["video"] = write_animation(result.frames, outdir / f"proj.{video}", fps=fps)
    atomic_write_bytes(outdir / "loss.png", _loss_curve_png(result))
    paths["loss"] = outdir / "loss.png"
    summary = {
        "steps": len(result.losses),
        "final_distance": result.distances[-1] if result.distances else None,
        "first_distance": result.distances[0] if result.distances else None,
        "optimized_noise": bool(result.noise),
        "options": options or {},
        "distances": [round(d, 6) for d in result.distances],
    }
    atomic_write_text(outdir / "projection.json", json.dumps(summary, indent=1) + "\n")
    paths["summary"] = outdir / "projection.json"
    return paths
