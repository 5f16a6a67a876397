"""Low-level ops in plain PyTorch: FIR filtering with up/down sampling, and a twice-differentiable
bilinear grid sampler.

Everything here is built from `conv2d`, `pad`, reshapes and gathers so that it runs on any device with no
custom CUDA build, and so that autograd can differentiate it twice (R1 through the augmentation needs
d/dx of D(augment(x)) and then the gradient of that with respect to D's weights).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def setup_filter(taps, *, normalize: bool = True, device=None) -> torch.Tensor:
    """A separable 1-D FIR filter as a float32 tensor, normalised to unit sum (DC gain 1)."""
    f = torch.as_tensor(np.asarray(taps, dtype=np.float32), device=device)
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError("FIR filter taps must be a non-empty 1-D sequence")
    if normalize:
        f = f / f.sum()
    return f


def _parse_padding(padding) -> tuple[int, int, int, int]:
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    px0, px1, py0, py1 = padding
    return px0, px1, py0, py1


def _padding_around_filter(padding, before: int, after: int) -> tuple[int, int, int, int]:
    """`padding` (as `_parse_padding` reads it) plus the filter's own `before` and `after` pixels on each axis."""
    px0, px1, py0, py1 = _parse_padding(padding)
    return px0 + before, px1 + after, py0 + before, py1 + after


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    *,
    up: int = 1,
    down: int = 1,
    padding=0,
    flip_filter: bool = False,
    gain: float = 1.0,
    separable: bool | None = None,
    centered: bool = False,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with a separable FIR filter, then keep every `down`-th pixel.

    `padding` is (x0, x1, y0, y1) in the upsampled space; negative values crop. `separable`: None filters
    short filters (under 8 taps) in one 2-D pass, longer ones in two 1-D passes; True is format version 1's
    arithmetic (two 1-D passes, the gain spread over them, decimation after), kept bit for bit so its
    snapshots render exactly as they did. `centered`: up- or down-sampling (not both) as an image op: the
    filter centred in padding of its own, so that the output is H*up/down x W*up/down plus `padding`, and
    the gain times up*up, so that the mean brightness is kept.
    """
    n, c, h, w = x.shape
    k = f.numel()
    if centered:
        if up > 1 and down > 1:
            raise ValueError("a centred resampling goes one way: up or down, not both")
        padding = _padding_around_filter(padding, (k + up - down) // 2, (k - up - down + 1) // 2)
        gain = gain * up * up
    px0, px1, py0, py1 = _parse_padding(padding)
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    if not flip_filter:  # conv2d correlates; flipping makes it a true convolution
        f = f.flip(0)
    if separable:
        f = f.to(x.dtype) * (gain**0.5)
        x = F.conv2d(x, f.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
        x = F.conv2d(x, f.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
        return x[:, :, ::down, ::down] if down > 1 else x
    # A stride-`down` convolution computes exactly the pixels that decimation keeps, and nothing else.
    if k < 8:
        # Short filters (the [1,3,3,1] of the networks) as one 2-D depthwise pass: on CPU faster than two
        # 1-D passes (measured, benchmarks/train_bench.py --vs-reference), as the reference filters them.
        f2 = f.to(x.dtype)[:, None] * f.to(x.dtype)[None, :] * gain
        return F.conv2d(x, f2.expand(c, 1, k, k), stride=down, groups=c)
    f = f.to(x.dtype) * (gain**0.5)  # half of the gain per 1-D pass
    x = F.conv2d(x, f.view(1, 1, 1, k).expand(c, 1, 1, k), stride=(1, down), groups=c)
    return F.conv2d(x, f.view(1, 1, k, 1).expand(c, 1, k, 1), stride=(down, 1), groups=c)


def grid_sample_bilinear(x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling with zero padding and align_corners=False, like `F.grid_sample`, but written with
    gathers and arithmetic so autograd can take a second derivative with respect to the image.

    x: [N, C, H, W]; grid: [N, Ho, Wo, 2] in normalised coordinates (-1..1, x then y).
    """
    n, c, h, w = x.shape
    _, ho, wo, _ = grid.shape
    gx = ((grid[..., 0] + 1) * w - 1) / 2  # pixel coordinates, align_corners=False convention
    gy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = gx.floor(), gy.floor()
    fx, fy = (gx - x0).to(x.dtype), (gy - y0).to(x.dtype)
    x0, y0 = x0.long(), y0.long()
    flat = x.reshape(n, c, h * w)
    out = x.new_zeros(n, c, ho * wo)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).reshape(n, 1, ho * wo).expand(n, c, ho * wo)
            weight = (wx * wy * inside.to(x.dtype)).reshape(n, 1, ho * wo)
            out = out + flat.gather(2, idx) * weight
    return out.reshape(n, c, ho, wo)


def affine_grid(theta: torch.Tensor, size: tuple[int, int, int, int]) -> torch.Tensor:
    """Sampling grid for a batch of 2x3 affine matrices (align_corners=False), from plain arithmetic."""
    n, _, h, w = size
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([xx, yy, torch.ones_like(xx)], dim=-1).reshape(1, h * w, 3)
    return (base @ theta.transpose(1, 2)).reshape(n, h, w, 2)
