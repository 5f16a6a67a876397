"""Quality metrics for snapshots.

- SWD (Karras et al. 2018): sliced Wasserstein distance between the distributions of 7x7 neighbourhoods of
  each Laplacian-pyramid level of real and generated images. Needs nothing downloaded; always available.
- FID / KID (Heusel et al. 2017; Binkowski et al. 2018) on 2048-d Inception-v3 pool features, computed only
  when the user supplies the standard Inception TorchScript file (`--inception` or GHOSTS_INCEPTION).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.errors import TrainingError

INCEPTION_MISSING = (
    "FID/KID skipped: no Inception network (pass --inception PATH to the standard "
    "inception-2015-12-05 TorchScript file, or set GHOSTS_INCEPTION)"
)


# ---------------------------------------------------------------------------------------------- images


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    """Generator output (about [-1, 1]) -> uint8 NCHW."""
    return (img * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def iterate_reals(dataset, num: int, batch: int):
    """uint8 NCHW tensors of the first `num` dataset items (in order, so results are repeatable)."""
    for start in range(0, num, batch):
        items = [dataset[i] for i in range(start, min(start + batch, num))]
        yield torch.from_numpy(np.stack([im for im, _ in items]))


def iterate_fakes(G, dataset, num: int, batch: int, device, seed: int = 123):
    gen = torch.Generator().manual_seed(seed)
    labels = None
    if G.c_dim > 0:
        labels = torch.from_numpy(np.stack([dataset.label(i % len(dataset.members)) for i in range(num)]))
    for start in range(0, num, batch):
        n = min(batch, num - start)
        z = torch.randn(n, G.z_dim, generator=gen).to(device)
        c = None if labels is None else labels[start : start + n].to(device)
        # Random per-pixel noise, as the reference's metrics, drawn from this generator (not the global RNG).
        noise = [
            torch.randn(n, 1, layer.resolution, layer.resolution, generator=gen).to(device)
            for layer in G.synthesis.noise_layers()
        ]
        with torch.no_grad():
            yield to_uint8(G.synthesis(G.mapping(z, c), noise_inputs=noise)).cpu()


# ------------------------------------------------------------------------------------------------- SWD

_GAUSS = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16


def _blur(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    k = _GAUSS.to(x)
    x = F.pad(x, [2, 2, 2, 2], mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, 5).expand(c, 1, 1, 5), groups=c)
    return F.conv2d(x, k.view(1, 1, 5, 1).expand(c, 1, 5, 1), groups=c)


def laplacian_pyramid(img: torch.Tensor, min_res: int = 16) -> list[torch.Tensor]:
    """Band-pass levels from full resolution down to `min_res`, the last one the low-pass residual."""
    levels = []
    cur = img
    while cur.shape[-1] > min_res:
        down = _blur(cur)[:, :, ::2, ::2]
        up = torch.zeros_like(cur)
        up[:, :, ::2, ::2] = down
        levels.append(cur - _blur(up) * 4)
        cur = down
    levels.append(cur)
    return levels


def _patches(level: torch.Tensor, per_image: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """`per_image` random size x size neighbourhoods per image, flattened: [N * per_image, C*size*size]."""
    n, c, h, w = level.shape
    ys = torch.randint(0, h - size + 1, (n, per_image), generator=gen)
    xs = torch.randint(0, w - size + 1, (n, per_image), generator=gen)
    off = torch.arange(size)
    rows = (ys[..., None] + off).reshape(n, per_image, size, 1).expand(n, per_image, size, size)
    cols = (xs[..., None] + off).reshape(n, per_image, 1, size).expand(n, per_image, size, size)
    flat_idx = (rows * w + cols).reshape(n, 1, per_image * size * size).expand(n, c, -1)
    out = level.reshape(n, c, h * w).gather(2, flat_idx).reshape(n, c, per_image, size, size)
    return out.permute(0, 2, 1, 3, 4).reshape(n * per_image, c * size * size)


def _normalise(desc: torch.Tensor, channels: int) -> torch.Tensor:
    d = desc.reshape(desc.shape[0], channels, -1)
    d = (d - d.mean(dim=(0, 2), keepdim=True)) / d.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return d.reshape(desc.shape[0], -1)


def sliced_wasserstein(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    dir_repeats: int = 4,
    dirs_per_repeat: int = 128,
    gen: torch.Generator | None = None,
) -> float:
    """Mean over random unit directions of the 1-D Wasserstein distance between the projected sets."""
    n = min(len(a), len(b))
    a, b = a[:n], b[:n]
    total = 0.0
    for _ in range(dir_repeats):
        dirs = torch.randn(a.shape[1], dirs_per_repeat, generator=gen)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        pa, _ = (a @ dirs).sort(dim=0)
        pb, _ = (b @ dirs).sort(dim=0)
        total += (pa - pb).abs().mean().item()
    return total / dir_repeats


def swd_from_batches(
    real_batches,
    fake_batches,
    *,
    patch: int = 7,
    patches_per_image: int = 64,
    min_res: int = 16,
    seed: int = 0,
) -> dict[str, float]:
    """SWD x 1e3 per pyramid level (keyed by level resolution) and their average."""
    gen = torch.Generator().manual_seed(seed)

    def descriptors(batches):
        per_level: list[list[torch.Tensor]] = []
        sizes: list[int] = []
        for imgs in batches:
            x = imgs.float() / 127.5 - 1
            for i, lvl in enumerate(laplacian_pyramid(x, min_res=min(min_res, x.shape[-1]))):
                if len(per_level) <= i:
                    per_level.append([])
                    sizes.append(lvl.shape[-1])
                per_level[i].append(_patches(lvl, patches_per_image, min(patch, lvl.shape[-1]), gen))
        return [torch.cat(p) for p in per_level], sizes, x.shape[1]

    real, sizes, channels = descriptors(real_batches)
    fake, _, _ = descriptors(fake_batches)
    out = {}
    for size, lr, lf in zip(sizes, real, fake):
        out[f"swd_{size}"] = (
            sliced_wasserstein(_normalise(lr, channels), _normalise(lf, channels), gen=gen) * 1e3
        )
    out["swd_avg"] = float(np.mean(list(out.values())))
    return out


# ------------------------------------------------------------------------------------------- FID / KID


def load_inception(path: Path, device) -> torch.jit.ScriptModule:
    path = Path(path)
    if not path.exists():
        raise TrainingError(f"Inception file not found: {path}")
    try:
        return torch.jit.load(str(path), map_location=device).eval()
    except Exception as e:
        raise TrainingError(f"{path} is not a TorchScript Inception network ({e})") from e


def inception_features(detector, batches, device) -> np.ndarray:
    feats = []
    for imgs in batches:
        if imgs.shape[1] == 1:
            imgs = imgs.repeat(1, 3, 1, 1)
        with torch.no_grad():
            f = detector(imgs.to(device), return_features=True)
        feats.append(f.float().cpu().numpy().astype(np.float64))
    return np.concatenate(feats)


def frechet_distance(real: np.ndarray, fake: np.ndarray) -> float:
    mu_r, mu_f = real.mean(axis=0), fake.mean(axis=0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    covmean, _ = scipy.linalg.sqrtm(cov_r @ cov_f, disp=False)
    return float(np.square(mu_r - mu_f).sum() + np.trace(cov_r + cov_f - 2 * np.real(covmean)))


def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, *, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0
) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel, averaged over random subsets."""
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    m = min(len(real), len(fake), max_subset_size)
    if m < 2:
        raise TrainingError("KID needs at least 2 real and 2 generated images")
    t = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


# ---------------------------------------------------------------------------------------------- driver


@dataclass
class MetricResult:
    name: str
    results: dict
    seconds: float
    num_reals: int
    num_fakes: int


def compute_metrics(
    names: list[str],
    G,
    dataset,
    *,
    device,
    inception: Path | None = None,
    num_images: int | None = None,
    batch: int = 32,
    log=print,
    progress: bool = True,
) -> list[MetricResult]:
    """Evaluate the named metrics on `G` (the EMA generator) against `dataset`. FID/KID are skipped with one
    line when no Inception file is configured."""
    out: list[MetricResult] = []
    n_data = len(dataset)
    wanted = [n for n in names if n in ("fid", "kid")]
    if wanted and inception is None:
        log(INCEPTION_MISSING)
        names = [n for n in names if n not in ("fid", "kid")]
    if "swd" in names:
        t0 = time.time()
        n = min(n_data, num_images or 8192)
        reals = iterate_reals(dataset, n, batch)
        fakes = iterate_fakes(G, dataset, n, batch, device)
        if progress:
            fakes = tqdm(fakes, total=-(-n // batch), desc="metric swd", leave=False)
        out.append(MetricResult("swd", swd_from_batches(reals, fakes), time.time() - t0, n, n))
    feature_metrics = [n for n in names if n in ("fid", "kid")]
    if feature_metrics:
        t0 = time.time()
        detector = load_inception(inception, device)
        n_fake = num_images or 50000  # the "50k_full" protocol: 50k fakes against every real
        real_f = inception_features(detector, iterate_reals(dataset, n_data, batch), device)
        fakes = iterate_fakes(G, dataset, n_fake, batch, device)
        if progress:
            fakes = tqdm(fakes, total=-(-n_fake // batch), desc="metric fid/kid", leave=False)
        fake_f = inception_features(detector, fakes, device)
        secs = time.time() - t0
        if "fid" in feature_metrics:
            out.append(MetricResult("fid", {"fid": frechet_distance(real_f, fake_f)}, secs, n_data, n_fake))
        if "kid" in feature_metrics:
            out.append(
                MetricResult("kid", {"kid": kernel_inception_distance(real_f, fake_f)}, secs, n_data, n_fake)
            )
    return out


def append_metric(run_dir: Path, result: MetricResult, *, snapshot: str, kimg: float) -> None:
    """One JSON line per evaluation in metric-<name>.jsonl (append-only; a torn last line is harmless)."""
    line = {
        "metric": result.name,
        "results": result.results,
        "snapshot": snapshot,
        "kimg": kimg,
        "total_time": result.seconds,
        "num_reals": result.num_reals,
        "num_fakes": result.num_fakes,
        "timestamp": time.time(),
    }
    with open(Path(run_dir) / f"metric-{result.name}.jsonl", "a") as f:
        f.write(json.dumps(line) + "\n")
