"""Feature directions: a vector in W that changes one attribute (glasses, smile, age).

Fit from two sets of latents, people with and without the attribute: projected photos (`projected_w.npz`)
or generated seeds (text files listing seeds). Two methods:
- `mean` (default): the difference of the two means. With few examples it is the most stable estimate, and
  it is what a person would do by hand ("average smiling face minus average neutral face").
- `logistic`: the normal of an L2-regularised logistic-regression boundary between the sets (the linear
  classifier route of InterFaceGAN, Shen et al. 2020); it can ignore variation the two sets share, but
  needs more examples than dimensions to mean much.
Either way the vector is scaled so that strength 1 moves a latent by one standard deviation of the
network's own W distribution along it: strengths mean the same on every network (+-3 is a strong edit).
Saved as a float32 .npy of shape [num_ws, w_dim] (load with allow_pickle=False), with a .json beside it
saying how it was made.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch

from curation.catalog.store import atomic_write_bytes, atomic_write_text
from training.errors import TrainingError
from training.latent.generate import DRAWING, Drawing
from training.latent.picture import make_grid
from training.latent.seeds import read_seed_file, sample_ws, seed_ws

METHODS = ("mean", "logistic")
LATENT_SUFFIXES = (".npz", ".txt")


def _latents_from_npz(path: Path, G) -> torch.Tensor:
    try:
        with np.load(path, allow_pickle=False) as data:
            if "w" not in data.files:
                raise TrainingError(
                    f"{path} has no array named 'w' (expected a projected_w.npz from ghosts project)"
                )
            w = np.asarray(data["w"], dtype=np.float32)
    except (OSError, ValueError) as e:
        raise TrainingError(f"cannot read latents {path}: {e}") from e
    if w.ndim == 1:
        w = np.broadcast_to(w, (G.num_ws, w.shape[0]))
    if w.ndim == 2:
        w = w[None]
    if w.ndim != 3 or w.shape[1:] != (G.num_ws, G.w_dim):
        raise TrainingError(
            f"{path}: latents of shape {list(w.shape)} do not fit this network, which expects "
            f"[N, {G.num_ws}, {G.w_dim}] (projected with a different network?)"
        )
    if not np.isfinite(w).all():
        raise TrainingError(f"{path}: latents contain NaN or infinity")
    return torch.from_numpy(np.ascontiguousarray(w))


def latent_files(path: Path | str) -> list[Path]:
    """The latent files a --positive/--negative argument names: the file itself, or every .npz and .txt under
    the folder (sub-folders too, so a folder of `ghosts project` output folders works), sorted."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in LATENT_SUFFIXES:
            raise TrainingError(f"{path}: latents are .npz files (from ghosts project) or .txt seed lists")
        return [path]
    if not path.is_dir():
        raise TrainingError(f"latents not found: {path}")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LATENT_SUFFIXES)
    if not files:
        raise TrainingError(
            f"no latents in {path}: expected projected_w.npz files (from ghosts project) or .txt "
            "files listing seeds"
        )
    return files


def load_latents(path: Path | str, G, *, class_idx: int | None = None) -> torch.Tensor:
    """All latents named by `path` as [N, num_ws, w_dim] on the CPU (seeds mapped without truncation)."""
    parts = []
    for f in latent_files(path):
        if f.suffix.lower() == ".npz":
            parts.append(_latents_from_npz(f, G))
        else:
            parts.append(seed_ws(G, read_seed_file(f), class_idx=class_idx).cpu())
    return torch.cat(parts)


def _is_layer_constant(ws: torch.Tensor) -> bool:
    return bool((ws == ws[:, :1]).all())


def _logistic_normal(pos: torch.Tensor, neg: torch.Tensor, l2: float, steps: int) -> torch.Tensor:
    x = torch.cat([pos, neg]).double()
    y = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).double()
    # Centre so the bias starts near its answer; the normal is unchanged by the shift.
    x = x - x.mean(0)
    weight = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros([], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([weight, bias], lr=1, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = (
            torch.nn.functional.binary_cross_entropy_with_logits(x @ weight + bias, y)
            + l2 * weight.square().sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    return weight.detach().float()


def fit_direction(
    G,
    positive: torch.Tensor,
    negative: torch.Tensor,
    method: str = "mean",
    *,
    l2: float = 1e-2,  # logistic: L2 penalty on the normal (InterFaceGAN's SVM uses C=1, similar role)
    logistic_steps: int = 200,  # logistic: L-BFGS iterations
    scale_samples: int = 10_000,  # mapping samples for W's spread along the direction
    class_idx: int | None = None,
) -> np.ndarray:
    """A direction [num_ws, w_dim] float32 pointing from `negative` to `positive`, one W standard deviation long."""
    if method not in METHODS:
        raise TrainingError(f"direction method must be one of {', '.join(METHODS)}, not {method!r}")
    for name, ws in (("positive", positive), ("negative", negative)):
        if ws.ndim != 3 or ws.shape[1:] != (G.num_ws, G.w_dim):
            raise TrainingError(f"{name} latents must be [N, {G.num_ws}, {G.w_dim}], got {list(ws.shape)}")
        if len(ws) < 1 or (method == "logistic" and len(ws) < 2):
            raise TrainingError(f"too few {name} latents ({len(ws)}) for method {method!r}")
    positive, negative = positive.float().cpu(), negative.float().cpu()
    # Seeds and projections share one w across layers; fitting that w alone keeps the problem small.
    shared = _is_layer_constant(positive) and _is_layer_constant(negative)
    pos = positive[:, 0] if shared else positive.flatten(1)
    neg = negative[:, 0] if shared else negative.flatten(1)
    if method == "mean":
        d = pos.mean(0) - neg.mean(0)
    else:
        d = _logistic_normal(pos, neg, l2, logistic_steps)
        if (pos.mean(0) - neg.mean(0)) @ d < 0:  # point from negative to positive
            d = -d
    if not torch.isfinite(d).all() or float(d.norm()) < 1e-12:
        raise TrainingError(
            "the positive and negative latents are indistinguishable: no direction to fit "
            "(are both folders the same?)"
        )
    d = (d.expand(G.num_ws, -1) if shared else d.view(G.num_ws, G.w_dim)).contiguous()
    unit = d / d.norm()
    # A latent's coordinate along the unit direction is the sum over layers of <w, unit_l>.
    samples = sample_ws(G, scale_samples, seed=321, class_idx=class_idx).cpu()
    spread = float((samples @ unit.sum(0)).std())
    return (unit * spread).numpy().astype(np.float32)


def save_direction(direction: np.ndarray, path: Path | str, *, info: dict | None = None) -> Path:
    """Write the direction as .npy (atomically) and `info` as a .json beside it; returns the .npy path."""
    path = Path(path)
    if path.suffix.lower() != ".npy":
        raise TrainingError(f"directions are saved as .npy files, not {path.name}")
    buf = io.BytesIO()
    np.save(buf, np.asarray(direction, dtype=np.float32), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    atomic_write_text(
        path.with_suffix(".json"),
        json.dumps({"shape": list(direction.shape), **(info or {})}, indent=1) + "\n",
    )
    return path


def load_direction(path: Path | str, G) -> torch.Tensor:
    """A direction file as [num_ws, w_dim] float32 on G's device; a [w_dim] vector is used on every layer."""
    path = Path(path)
    try:
        d = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise TrainingError(f"direction not found: {path}") from None
    except (OSError, ValueError) as e:
        raise TrainingError(
            f"cannot read direction {path} (expected a .npy from ghosts direction fit): {e}"
        ) from e
    if not isinstance(d, np.ndarray) or d.dtype.kind != "f":
        raise TrainingError(f"{path} does not hold a float array")
    if d.ndim == 1 and d.shape[0] == G.w_dim:
        d = np.broadcast_to(d, (G.num_ws, G.w_dim))
    if d.shape != (G.num_ws, G.w_dim):
        raise TrainingError(
            f"{path}: a direction of shape {list(d.shape)} does not fit this network, which "
            f"needs [{G.num_ws}, {G.w_dim}] or [{G.w_dim}] (fitted on a different network?)"
        )
    if not np.isfinite(d).all():
        raise TrainingError(f"{path}: the direction contains NaN or infinity")
    return torch.from_numpy(np.array(d, dtype=np.float32)).to(next(G.parameters()).device)


def edit_ws(
    ws: torch.Tensor, direction: torch.Tensor, strength: float, layers: list[int] | None = None
) -> torch.Tensor:
    """ws + strength * direction, on the chosen layers only (all by default). Strength 0 returns ws as is."""
    if strength == 0:
        return ws.clone()
    d = direction
    if layers is not None:
        mask = torch.zeros(d.shape[0], 1, device=d.device)
        mask[layers] = 1
        d = d * mask
    return ws + strength * d.unsqueeze(0)


def apply_direction(
    G,
    seeds: list[int],
    direction: torch.Tensor,
    strengths: list[float],
    *,
    layers: list[int] | None = None,
    drawing: Drawing = DRAWING,
) -> list[list[np.ndarray]]:
    """Pictures of each seed (rows) edited at each strength (columns), HxWx3 uint8."""
    if layers is not None:
        bad = [i for i in layers if not 0 <= i < G.num_ws]
        if bad:
            raise TrainingError(f"layer {bad[0]} does not exist: this network has layers 0-{G.num_ws - 1}")
    ws = drawing.ws(G, seeds)
    edited = torch.stack(
        [edit_ws(ws, direction, s, layers) for s in strengths], dim=1
    )  # [seeds, strengths, ...]
    pics = drawing.synthesize(G, edited.flatten(0, 1), "editing")
    n = len(strengths)
    return [pics[i * n : (i + 1) * n] for i in range(len(seeds))]


def direction_grid(rows: list[list[np.ndarray]]) -> np.ndarray:
    """Seeds down, strengths across."""
    return make_grid([im for row in rows for im in row], cols=len(rows[0]))
