"""Morphs through a list of seeds: straight lines in W, great circles in Z.

W is where the generator's features are roughly linear, so a straight line there gives an even morph. Z is a
Gaussian whose samples sit near a sphere of radius sqrt(z_dim); a straight line would cut through the
low-density middle, so Z paths follow the sphere (spherical interpolation, Shoemake 1985).
"""

from __future__ import annotations

import numpy as np
import torch

from training.errors import TrainingError
from training.latent.generate import DRAWING, Drawing
from training.latent.seeds import class_label, device_of, z_from_seed

SPACES = ("w", "z")


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last axis: the angle moves linearly and the length is interpolated
    linearly too, so t=0 and t=1 return a and b (up to rounding) even when their lengths differ."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(eps), b / nb.clamp_min(eps)
    cos = (ua * ub).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    so = torch.sin(omega)
    # Nearly parallel vectors: the great circle degenerates, the straight line is the same path.
    safe = so.abs() > eps
    sa = torch.where(safe, torch.sin((1 - t) * omega) / torch.where(safe, so, 1), 1 - t)
    sb = torch.where(safe, torch.sin(t * omega) / torch.where(safe, so, 1), t)
    direction = sa * ua + sb * ub
    direction = direction / direction.norm(dim=-1, keepdim=True).clamp_min(eps)
    return direction * (na + (nb - na) * t)


def path_times(num_keys: int, frames: int, loop: bool) -> list[tuple[int, float]]:
    """(segment, t) per frame: `frames` per segment between consecutive keys. An open path ends exactly on the
    last key; a loop returns towards the first key and stops one frame short, so it repeats seamlessly."""
    if frames < 1:
        raise TrainingError(f"--frames must be at least 1, not {frames}")
    segments = num_keys if loop else num_keys - 1
    times = [(s, i / frames) for s in range(segments) for i in range(frames)]
    if not loop:
        times.append((segments - 1, 1.0))
    return times


@torch.no_grad()
def interpolate_ws(
    G,
    seeds: list[int],
    *,
    frames: int = 60,  # frames per transition between two seeds
    space: str = "w",
    loop: bool = False,
    drawing: Drawing = DRAWING,  # its truncation and class; the noise is the synthesis's
) -> torch.Tensor:
    """The W+ latents of every frame of the morph, [F, num_ws, w_dim]."""
    if space not in SPACES:
        raise TrainingError(f"interpolation space must be 'w' or 'z', not {space!r}")
    if len(seeds) < 2:
        raise TrainingError("a morph needs at least two seeds, e.g. --seeds 3,17,42")
    times = path_times(len(seeds), frames, loop)
    n = len(seeds)
    if space == "w":
        keys = drawing.ws(G, seeds)
        # Keys are returned untouched at t=0 (and t=1 at the end), so the first and last frames are the seeds'.
        return torch.stack(
            [
                keys[s] if t == 0 else keys[(s + 1) % n] if t == 1 else lerp(keys[s], keys[(s + 1) % n], t)
                for s, t in times
            ]
        )
    device = device_of(G)
    zs = torch.from_numpy(np.concatenate([z_from_seed(s, G.z_dim) for s in seeds])).to(device, torch.float64)
    c = class_label(G, drawing.class_idx)
    ws = []
    for s, t in times:
        z = zs[s] if t == 0 else zs[(s + 1) % n] if t == 1 else slerp(zs[s], zs[(s + 1) % n], t)
        ws.append(
            G.mapping(
                z.to(torch.float32).unsqueeze(0),
                c,
                truncation_psi=drawing.truncation_psi,
                truncation_cutoff=drawing.truncation_cutoff,
            )
        )
    return torch.cat(ws)


def interpolate(
    G,
    seeds: list[int],
    frames: int = 60,
    space: str = "w",
    loop: bool = False,
    *,
    drawing: Drawing = DRAWING,
) -> list:
    """The frames (HxWx3 uint8) of a morph through the seeds; see `path_times` for the frame count."""
    ws = interpolate_ws(G, seeds, frames=frames, space=space, loop=loop, drawing=drawing)
    return drawing.synthesize(G, ws, "morphing")
