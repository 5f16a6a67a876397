"""Seeds and latents: "0-31,40" -> seeds, seed -> z, class index -> label.

A seed means the same thing here as in the wider StyleGAN tool family: z is
`np.random.RandomState(seed).randn(1, z_dim)`, so seed 42 of a network is the same face in every tool.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from training.errors import TrainingError

MAX_SEED = 2**32 - 1  # RandomState accepts 32-bit seeds only
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def parse_ints(text: str, what: str = "seed", example: str = "0-31 or 3,17,42") -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]; order kept, ranges inclusive, repeats allowed (a morph may revisit a face)."""
    values: list[int] = []
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        m = _RANGE.match(part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise TrainingError(f"{what} range {part!r} runs backwards; write {hi}-{lo}")
            values.extend(range(lo, hi + 1))
        elif part.isdigit():
            values.append(int(part))
        else:
            raise TrainingError(f"cannot read {what} {part!r}: use numbers and ranges, e.g. {example}")
    if not values:
        raise TrainingError(f"no {what}s in {text!r}: use numbers and ranges, e.g. {example}")
    return values


def parse_seeds(text: str) -> list[int]:
    """Seeds as numbers and inclusive ranges: '0-31', '3,17,42'."""
    seeds = parse_ints(text, "seed")
    too_big = [s for s in seeds if s > MAX_SEED]
    if too_big:
        raise TrainingError(f"seed {too_big[0]} is too large (seeds go up to {MAX_SEED})")
    return seeds


def parse_floats(text: str, what: str = "value") -> list[float]:
    """'-3,0,3' -> [-3.0, 0.0, 3.0]."""
    try:
        values = [float(p) for p in re.split(r"[,\s]+", text.strip()) if p]
    except ValueError:
        raise TrainingError(
            f"cannot read {what}s {text!r}: give numbers separated by commas, e.g. -3,0,3"
        ) from None
    if not values or not all(np.isfinite(values)):
        raise TrainingError(
            f"cannot read {what}s {text!r}: give finite numbers separated by commas, e.g. -3,0,3"
        )
    return values


def read_seed_file(path: Path) -> list[int]:
    """Seeds listed in a text file: numbers and ranges separated by commas, spaces or lines; '#' starts a comment."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TrainingError(f"cannot read seed list {path}: {e}") from e
    body = " ".join(line.split("#", 1)[0] for line in text.splitlines())
    if not body.strip():
        raise TrainingError(f"seed list {path} lists no seeds")
    try:
        return parse_seeds(body)
    except TrainingError as e:
        raise TrainingError(f"{path}: {e}") from None


def z_from_seed(seed: int, z_dim: int) -> np.ndarray:
    """The z of a seed, [1, z_dim] float64, exactly as the reference tools draw it."""
    return np.random.RandomState(seed).randn(1, z_dim)


def device_of(G: torch.nn.Module) -> torch.device:
    return next(G.parameters()).device


def class_label(G, class_idx: int | None) -> torch.Tensor | None:
    """The one-hot label a conditional network needs ([1, c_dim]), or None for an unconditional one."""
    if G.c_dim == 0:
        if class_idx is not None:
            raise TrainingError("this network is unconditional: leave out --class")
        return None
    if class_idx is None:
        raise TrainingError(
            f"this network is conditional ({G.c_dim} classes): choose one with --class 0..{G.c_dim - 1}"
        )
    if not 0 <= class_idx < G.c_dim:
        raise TrainingError(f"--class {class_idx} is out of range: this network has classes 0..{G.c_dim - 1}")
    c = torch.zeros(1, G.c_dim, device=device_of(G))
    c[0, class_idx] = 1
    return c


@torch.no_grad()
def seed_ws(
    G,
    seeds: list[int],
    *,
    truncation_psi: float = 1.0,  # 1 = no truncation; 0.5-0.7 trades variety for quality
    truncation_cutoff: int | None = None,  # truncate only the first N layers; None = all
    class_idx: int | None = None,
) -> torch.Tensor:
    """W+ latents of seeds, [N, num_ws, w_dim], one mapping call per seed so each result is independent
    of which other seeds were asked for."""
    c = class_label(G, class_idx)
    device = device_of(G)
    ws = [
        G.mapping(
            torch.from_numpy(z_from_seed(s, G.z_dim)).to(device, torch.float32),
            c,
            truncation_psi=truncation_psi,
            truncation_cutoff=truncation_cutoff,
        )
        for s in seeds
    ]
    return torch.cat(ws)


@torch.no_grad()
def sample_ws(
    G, num: int, *, seed: int = 123, class_idx: int | None = None, batch: int = 2000
) -> torch.Tensor:
    """`num` w vectors of the mapping's own distribution, [num, w_dim], untruncated (every layer's w is the
    same before truncation, so one per sample is enough)."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(num, G.z_dim)).to(device_of(G), torch.float32)
    c = class_label(G, class_idx)
    return torch.cat(
        [G.mapping(zb, None if c is None else c.expand(len(zb), -1))[:, 0] for zb in z.split(batch)]
    )
