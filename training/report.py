"""What a run leaves for people to read: per-tick statistics (stats.jsonl), log.txt, image grids and the
curves.png plot of losses, augmentation strength and metrics over training time."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.distributed as dist

from curation.catalog.store import atomic_write_bytes


class TickStats:
    """Running sums of per-sample statistics over one tick; reduced over ranks when the tick ends."""

    def __init__(self, device):
        self.device = device
        self.names: list[str] = []
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for name, v in values.items():
            v = v.detach().float().flatten()
            acc = torch.stack([torch.tensor(float(v.numel()), device=v.device), v.sum(), v.square().sum()])
            if name not in self.sums:
                self.names.append(name)
                self.sums[name] = torch.zeros(3, device=self.device)
            self.sums[name] += acc.to(self.device)

    def reduce(self, world_size: int, names: list[str] | None = None) -> dict[str, dict[str, float]]:
        """{name: {num, mean, std}} over all ranks, then reset. Every rank must call this with the same
        `names` (the loop passes a fixed list), so the all-reduce lines up."""
        names = list(names if names is not None else self.names)
        if not names:
            return {}
        packed = torch.stack([self.sums.get(n, torch.zeros(3, device=self.device)) for n in names])
        if world_size > 1:
            dist.all_reduce(packed)
        out = {}
        for name, (num, s, sq) in zip(names, packed.tolist()):
            if num > 0:
                mean = s / num
                out[name] = {
                    "num": num,
                    "mean": mean,
                    "std": float(np.sqrt(max(sq / num - mean * mean, 0.0))),
                }
        self.names, self.sums = [], {}
        return out


def stat_line(stats: dict[str, dict[str, float]]) -> str:
    return json.dumps({**stats, "timestamp": time.time()})


def append_line(path: Path, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
        f.flush()


def read_stats(path: Path) -> list[dict]:
    """stats.jsonl lines; a torn last line (crash while appending) is skipped."""
    rows = []
    if not Path(path).exists():
        return rows
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


# ------------------------------------------------------------------------------------------------ images


def image_grid(images: np.ndarray, cols: int) -> np.ndarray:
    """[N, C, H, W] uint8 -> one [rows*H, cols*W, C] picture (blank cells at the end are black)."""
    n, c, h, w = images.shape
    rows = -(-n // cols)
    grid = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    for i in range(n):
        r, col = divmod(i, cols)
        grid[r * h : (r + 1) * h, col * w : (col + 1) * w] = images[i].transpose(1, 2, 0)
    return grid


def save_image_grid(images: np.ndarray | torch.Tensor, path: Path, cols: int) -> Path:
    """Save uint8 NCHW (or float about [-1, 1]) images as one PNG, atomically."""
    if torch.is_tensor(images):
        if images.dtype != torch.uint8:
            images = (images.float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
        images = images.cpu().numpy()
    grid = image_grid(images, cols)
    pil = PIL.Image.fromarray(grid[:, :, 0] if grid.shape[2] == 1 else grid)
    import io

    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def grid_shape(resolution: int, num_available: int) -> tuple[int, int]:
    """About a 1080p screen's worth of images, between 4x4 and 32x32, no more than the data can fill."""
    cols = int(np.clip(1920 // resolution, 4, 32))
    rows = int(np.clip(1080 // resolution, 4, 32))
    rows = max(1, min(rows, -(-num_available // cols)))
    return cols, rows


# ------------------------------------------------------------------------------------------------ curves

CURVES = [
    ("Losses", ["Loss/G/loss", "Loss/D/loss"]),
    ("Regularisers", ["Loss/r1_penalty", "Loss/pl_penalty"]),
    ("Augmentation p and r_t", ["Progress/augment", "Loss/signs/real"]),
    ("D scores", ["Loss/scores/real", "Loss/scores/fake"]),
]


def plot_curves(run_dir: Path) -> Path | None:
    """curves.png: losses, p and r_t, D scores and every metric, against kimg."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_stats(run_dir / "stats.jsonl")
    if not rows:
        return None
    kimg = [r.get("Progress/kimg", {}).get("mean", np.nan) for r in rows]
    metric_files = sorted(run_dir.glob("metric-*.jsonl"))
    panels = len(CURVES) + (1 if metric_files else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    for ax, (title, names) in zip(axes[0], CURVES):
        for name in names:
            ys = [r.get(name, {}).get("mean", np.nan) for r in rows]
            if not np.all(np.isnan(ys)):
                ax.plot(kimg, ys, marker=".", label=name.split("/", 1)[1])
        if title.startswith("Augmentation"):
            ax.axhline(0.6, color="grey", lw=0.8, ls="--")
        ax.set_title(title)
        ax.set_xlabel("kimg")
        ax.legend(fontsize=7)
    if metric_files:
        ax = axes[0][-1]
        for mf in metric_files:
            for key in _metric_keys(mf):
                xs, ys = zip(*[(r["kimg"], r["results"][key]) for r in read_stats(mf) if key in r["results"]])
                ax.plot(xs, ys, marker="o", label=key)
        ax.set_title("Metrics")
        ax.set_xlabel("kimg")
        ax.legend(fontsize=7)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    out = run_dir / "curves.png"
    atomic_write_bytes(out, buf.getvalue())
    return out


def _metric_keys(path: Path) -> list[str]:
    rows = read_stats(path)
    if not rows:
        return []
    keys = list(rows[-1]["results"])
    # For SWD the average is the headline; the per-level values would crowd the plot.
    return ["swd_avg"] if "swd_avg" in keys else keys
