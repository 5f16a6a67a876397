"""How far a generated picture is from the target, for the projector.

Two choices:
- `PixelStructuralDistance` (default, needs no weights file): a multi-scale mix of SSIM and L1, after Zhao et
  al. 2017 ("Loss Functions for Image Restoration with Neural Networks"), who found 0.84 * (1 - SSIM) +
  0.16 * L1 over several scales better matched to what people see than either term alone. SSIM (Wang et al.
  2004: Gaussian window sigma 1.5, C1 = 0.01^2, C2 = 0.03^2 on a [0, 1] range) compares local means,
  contrasts and correlations, so it rewards getting edges and texture in the right place; L1 keeps the
  colours honest, which SSIM alone ignores. The pyramid (2x average pooling, down to 8 px) makes coarse
  shape count as much as fine detail, so the optimisation is not trapped by a misplaced edge early on.
- `VGGDistance`: the LPIPS perceptual distance of a VGG16 TorchScript file the user provides (`--vgg PATH`;
  nothing is downloaded). The StyleGAN2 projector uses this; it tends to give sharper, more faithful faces.

Both take NCHW images in about [-1, 1]; `features(target)` is computed once, `distance(images, feats)` per step
and returns one value per image.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from training.errors import TrainingError


def _gaussian_window(size: int, sigma: float, channels: int, device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: int = 11,  # Wang et al. 2004
    sigma: float = 1.5,
    c1: float = 0.01**2,
    c2: float = 0.03**2,
) -> torch.Tensor:
    """Per-pixel SSIM of two NCHW images in [0, 1]; the window shrinks (odd, >= 3) to fit small images and
    edges are replicated so every pixel counts."""
    size = max(3, min(window, (min(x.shape[-2:]) // 2) * 2 - 1))
    k = _gaussian_window(size, sigma, x.shape[1], x.device)
    pad = size // 2

    def blur(t):
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="replicate"), k, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))


class PixelStructuralDistance:
    """alpha * (1 - mean SSIM) + (1 - alpha) * mean L1, each averaged over a 2x pyramid."""

    def __init__(
        self,
        *,
        alpha: float = 0.84,  # Zhao et al. 2017's SSIM : L1 mix
        num_scales: int = 4,  # pyramid levels (fewer when the image gets below min_size)
        min_size: int = 8,
    ):  # SSIM windows need a few pixels to mean anything
        if not 0 <= alpha <= 1:
            raise ValueError("alpha must be in [0, 1]")
        self.alpha, self.num_scales, self.min_size = alpha, num_scales, min_size

    def _pyramid(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.float() + 1) / 2  # [-1, 1] -> [0, 1], the range SSIM's constants assume
        levels = [x]
        while len(levels) < self.num_scales and min(levels[-1].shape[-2:]) // 2 >= self.min_size:
            levels.append(F.avg_pool2d(levels[-1], 2))
        return levels

    def features(self, target: torch.Tensor) -> list[torch.Tensor]:
        return [t.detach() for t in self._pyramid(target)]

    def distance(self, images: torch.Tensor, target_features: list[torch.Tensor]) -> torch.Tensor:
        levels = self._pyramid(images)
        ssim = torch.stack(
            [ssim_map(a, b).mean(dim=(1, 2, 3)) for a, b in zip(levels, target_features)]
        ).mean(0)
        l1 = torch.stack([(a - b).abs().mean(dim=(1, 2, 3)) for a, b in zip(levels, target_features)]).mean(0)
        return self.alpha * (1 - ssim) + (1 - self.alpha) * l1


class VGGDistance:
    """LPIPS through a user-supplied TorchScript VGG16.

    Contract: the module takes NCHW float images in [0, 255] and returns features whose squared Euclidean
    distance is the perceptual distance. A module whose forward has `resize_images` and `return_lpips`
    arguments (the layout of the `vgg16.pt` file published with StyleGAN2-ADA) is called with
    `resize_images=False, return_lpips=True`; any other is called with the images alone.
    """

    def __init__(
        self, module: torch.nn.Module, *, min_size: int = 64
    ):  # VGG16 pools 5 times; smaller pictures are upsampled to this first
        self.module, self.min_size = module, min_size
        try:
            names = {a.name for a in module.forward.schema.arguments}
        except AttributeError:  # a plain nn.Module (tests, or a scripted function): inspect is enough
            import inspect

            names = set(inspect.signature(module.forward).parameters)
        self.lpips_kwargs = (
            {"resize_images": False, "return_lpips": True}
            if {"resize_images", "return_lpips"} <= names
            else {}
        )

    def features(self, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._features(target)

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() + 1) * 127.5
        if min(x.shape[-2:]) < self.min_size:
            x = F.interpolate(x, size=(self.min_size, self.min_size), mode="bilinear", align_corners=False)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return self.module(x, **self.lpips_kwargs).flatten(1)

    def distance(self, images: torch.Tensor, target_features: torch.Tensor) -> torch.Tensor:
        return (self._features(images) - target_features).square().sum(dim=1)


def load_vgg(path: Path | str, device="cpu") -> VGGDistance:
    """The perceptual distance of a TorchScript VGG16 file (`--vgg PATH`); never downloads anything."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(
            f"VGG16 weights not found: {path} (give a TorchScript file with --vgg, or leave --vgg "
            "out to use the built-in pixel + structural loss)"
        )
    try:
        module = torch.jit.load(str(path), map_location=device)
    except Exception as e:
        raise TrainingError(
            f"{path} is not a TorchScript module that torch.jit.load can read: "
            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    for (
        p
    ) in module.parameters():  # ScriptModules have no requires_grad_(); the loss needs no weight gradients
        p.requires_grad_(False)
    dist = VGGDistance(module.eval())
    try:  # fail now, with a clear message, rather than at step 1 of a long projection
        with torch.no_grad():
            probe = dist._features(torch.zeros(1, 3, 64, 64, device=device))
    except Exception as e:
        raise TrainingError(
            f"{path} does not behave like a VGG16 feature extractor (images 0-255 in, "
            f"features out): {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    if not torch.is_tensor(probe) or not math.isfinite(float(probe.float().sum())):
        raise TrainingError(f"{path} returned no usable features for a test image")
    return dist
