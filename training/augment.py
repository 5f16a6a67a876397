"""Adaptive discriminator augmentation (Karras et al. 2020, "Training GANs with Limited Data").

Every image D sees (real or fake) goes through the same random pipeline. Each transform is applied to each
image independently with probability p times its multiplier, so that at p < ~0.8 the augmentations do not
"leak" into the generator. Geometric transforms are composed into one inverse matrix and executed once on a
reflect-padded, 2x upsampled (sym6 wavelet low-pass) image, then filtered back down; colour transforms are
composed into one 4x4 matrix. `update_p` is the feedback controller that keeps r_t = E[sign(D(real))] at
the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from training.errors import TrainingError
from training.ops import affine_grid, grid_sample_bilinear, setup_filter, upfirdn2d

# Daubechies' symlet-6 low-pass decomposition filter: an orthogonal wavelet, so its 2x upsample followed by
# the matching 2x downsample is the identity and the resampling adds no blur of its own.
SYM6 = [
    0.015404109327027373,
    0.0034907120842174702,
    -0.11799011114819057,
    -0.048311742585633,
    0.4910559419267466,
    0.787641141030194,
    0.3379294217276218,
    -0.07263752278646252,
    -0.021060292512300564,
    0.04472490177066578,
    0.0017677118642428036,
    -0.007800708325034148,
]


@dataclass(frozen=True)
class AugmentSpec:
    """Probability multipliers of each transform (0 disables it)."""

    xflip: float = 0
    rotate90: float = 0
    xint: float = 0
    scale: float = 0
    rotate: float = 0
    aniso: float = 0
    xfrac: float = 0
    brightness: float = 0
    contrast: float = 0
    lumaflip: float = 0
    hue: float = 0
    saturation: float = 0


_BLIT = {"xflip": 1, "rotate90": 1, "xint": 1}
_GEOM = {"scale": 1, "rotate": 1, "aniso": 1, "xfrac": 1}
_COLOR = {"brightness": 1, "contrast": 1, "lumaflip": 1, "hue": 1, "saturation": 1}
AUGPIPES = {
    "blit": AugmentSpec(**_BLIT),
    "geom": AugmentSpec(**_GEOM),
    "color": AugmentSpec(**_COLOR),
    "bg": AugmentSpec(**_BLIT, **_GEOM),
    "bgc": AugmentSpec(**_BLIT, **_GEOM, **_COLOR),
}


# Homogeneous-coordinate matrices for a batch, each built from per-image tensors.
def _matrix(rows, like: torch.Tensor) -> torch.Tensor:
    n = like.shape[0]
    cols = [
        torch.as_tensor(v, dtype=torch.float32, device=like.device).expand(n)
        if not torch.is_tensor(v) or v.ndim == 0
        else v.float()
        for row in rows
        for v in row
    ]
    return torch.stack(cols, dim=1).reshape(n, len(rows), len(rows[0]))


def translate2d(tx, ty, like):
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], like)


def scale2d(sx, sy, like):
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], like)


def rotate2d(theta, like):
    return _matrix(
        [[torch.cos(theta), -torch.sin(theta), 0], [torch.sin(theta), torch.cos(theta), 0], [0, 0, 1]], like
    )


def translate3d(tx, ty, tz, like):
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], like)


def scale3d(sx, sy, sz, like):
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], like)


def rotate3d(axis: torch.Tensor, theta: torch.Tensor, like):
    """Rotation by theta about a unit axis (Rodrigues), as a 4x4 matrix."""
    vx, vy, vz = axis[0], axis[1], axis[2]
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix(
        [
            [vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
            [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
            [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
            [0, 0, 0, 1],
        ],
        like,
    )


class AugmentPipe(nn.Module):
    """The ADA pipeline; `p` is a buffer so it is saved with the checkpoint and broadcast in DDP."""

    def __init__(
        self,
        spec: AugmentSpec = AUGPIPES["bgc"],
        *,
        xint_max: float = 0.125,  # integer translation range, fraction of image size
        scale_std: float = 0.2,  # log2 std of isotropic scaling
        rotate_max: float = 1.0,  # arbitrary rotation range, fraction of pi
        aniso_std: float = 0.2,  # log2 std of anisotropic scaling
        xfrac_std: float = 0.125,  # std of fractional translation, fraction of image size
        brightness_std: float = 0.2,  # std of additive brightness
        contrast_std: float = 0.5,  # log2 std of contrast scaling
        hue_max: float = 1.0,  # hue rotation range, fraction of pi
        saturation_std: float = 1.0,
    ):  # log2 std of saturation scaling
        super().__init__()
        self.spec = spec
        self.xint_max, self.scale_std, self.rotate_max = xint_max, scale_std, rotate_max
        self.aniso_std, self.xfrac_std = aniso_std, xfrac_std
        self.brightness_std, self.contrast_std = brightness_std, contrast_std
        self.hue_max, self.saturation_std = hue_max, saturation_std
        self.register_buffer("p", torch.zeros([]))
        self.register_buffer("filter_geom", setup_filter(SYM6), persistent=False)

    @classmethod
    def from_name(cls, name: str) -> AugmentPipe:
        if name not in AUGPIPES:
            raise TrainingError(f"unknown --augpipe {name!r}; choose one of {', '.join(AUGPIPES)}")
        return cls(AUGPIPES[name])

    # ---------------------------------------------------------------- helpers drawing per-image decisions
    def _mask(self, n: int, multiplier: float, device, prob: torch.Tensor | None = None) -> torch.Tensor:
        prob = self.p * multiplier if prob is None else prob
        return torch.rand(n, device=device) < prob

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4:
            raise ValueError("images must be [N, C, H, W]")
        if float(self.p) <= 0:
            return images  # p = 0 is exactly the identity
        g_inv = self.geometric_matrix(images)
        if g_inv is not None:
            images = self.apply_geometric(images, g_inv)
        c = self.color_matrix(images)
        if c is not None:
            images = self.apply_color(images, c)
        return images

    # ------------------------------------------------------------------------------------- geometry
    def geometric_matrix(self, images: torch.Tensor) -> torch.Tensor | None:
        """The inverse of the composed geometric transform (output pixel -> input pixel), or None when
        no geometric transform is enabled. Coordinates are in pixels, origin at the image centre."""
        s, dev = self.spec, images.device
        n, _, h, w = images.shape
        g = torch.eye(3, device=dev).expand(n, 3, 3)
        used = False
        if s.xflip > 0:
            i = torch.floor(torch.rand(n, device=dev) * 2) * self._mask(n, s.xflip, dev)
            g, used = g @ scale2d(1 - 2 * i, torch.ones(n, device=dev), images), True
        if s.rotate90 > 0:
            i = torch.floor(torch.rand(n, device=dev) * 4) * self._mask(n, s.rotate90, dev)
            g, used = g @ rotate2d(-math.pi / 2 * i, images), True
        if s.xint > 0:
            t = (torch.rand(n, 2, device=dev) * 2 - 1) * self.xint_max * self._mask(n, s.xint, dev)[:, None]
            g, used = g @ translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h), images), True
        if s.scale > 0:
            f = torch.exp2(torch.randn(n, device=dev) * self.scale_std)
            f = torch.where(self._mask(n, s.scale, dev), f, torch.ones_like(f))
            g, used = g @ scale2d(1 / f, 1 / f, images), True
        # Rotation is applied before and after the anisotropic scaling, each with a probability such that
        # at least one of the two happens with probability p * rotate.
        p_rot = 1 - torch.sqrt((1 - self.p * s.rotate).clamp(0, 1))
        if s.rotate > 0:
            theta = (torch.rand(n, device=dev) * 2 - 1) * math.pi * self.rotate_max
            theta = theta * self._mask(n, 0, dev, prob=p_rot)
            g, used = g @ rotate2d(-theta, images), True
        if s.aniso > 0:
            f = torch.exp2(torch.randn(n, device=dev) * self.aniso_std)
            f = torch.where(self._mask(n, s.aniso, dev), f, torch.ones_like(f))
            g, used = g @ scale2d(1 / f, f, images), True
        if s.rotate > 0:
            theta = (torch.rand(n, device=dev) * 2 - 1) * math.pi * self.rotate_max
            theta = theta * self._mask(n, 0, dev, prob=p_rot)
            g, used = g @ rotate2d(-theta, images), True
        if s.xfrac > 0:
            t = torch.randn(n, 2, device=dev) * self.xfrac_std * self._mask(n, s.xfrac, dev)[:, None]
            g, used = g @ translate2d(-t[:, 0] * w, -t[:, 1] * h, images), True
        return g if used else None

    def apply_geometric(self, images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Resample `images` through the inverse matrix `g_inv` (centre-origin pixel coordinates)."""
        n, ch, h, w = images.shape
        dev = images.device
        f = self.filter_geom.to(dev)
        pad_f = f.numel() // 4  # filter support, in input pixels, on each side after 2x upsampling
        cx, cy = (w - 1) / 2, (h - 1) / 2
        # Reflect-pad just enough that every output pixel (plus the filter support) samples real content.
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], device=dev)
        src = g_inv @ corners.t()  # [N, 3, 4]
        margin = src[:, :2, :].permute(1, 0, 2).flatten(1)  # [2, N*4]
        margin = torch.cat([-margin, margin]).max(dim=1).values  # [4]: -x, -y, +x, +y extents
        margin = margin + torch.tensor([pad_f * 2 - cx, pad_f * 2 - cy] * 2, device=dev)
        margin = margin.clamp(min=0).minimum(
            torch.tensor([w - 1, h - 1] * 2, device=dev, dtype=torch.float32)
        )
        mx0, my0, mx1, my1 = (int(v) for v in margin.ceil().tolist())
        images = torch.nn.functional.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        g_inv = translate2d((mx0 - mx1) / 2, (my0 - my1) / 2, images) @ g_inv

        # Work at 2x resolution: the sym6 upsampling is (nearly) band-limited, so bilinear sampling of it
        # approximates ideal interpolation well.
        images = upfirdn2d(images, f, up=2, centered=True)
        g_inv = scale2d(2.0, 2.0, images) @ g_inv @ scale2d(0.5, 0.5, images)
        g_inv = translate2d(-0.5, -0.5, images) @ g_inv @ translate2d(0.5, 0.5, images)

        out_h, out_w = (h + pad_f * 2) * 2, (w + pad_f * 2) * 2
        # Pixel coordinates -> the normalised [-1, 1] coordinates used by the sampling grid.
        g_inv = (
            scale2d(2 / images.shape[3], 2 / images.shape[2], images)
            @ g_inv
            @ scale2d(out_w / 2, out_h / 2, images)
        )
        grid = affine_grid(g_inv[:, :2, :].to(images.dtype), (n, ch, out_h, out_w))
        images = grid_sample_bilinear(images, grid)
        return upfirdn2d(images, f, down=2, padding=-pad_f * 2, flip_filter=True, centered=True)

    # --------------------------------------------------------------------------------------- colour
    def color_matrix(self, images: torch.Tensor) -> torch.Tensor | None:
        s, dev = self.spec, images.device
        n = images.shape[0]
        c = torch.eye(4, device=dev).expand(n, 4, 4)
        used = False
        luma = torch.tensor([1, 1, 1, 0], dtype=torch.float32, device=dev) / math.sqrt(3)
        ll = torch.outer(luma, luma)
        if s.brightness > 0:
            b = torch.randn(n, device=dev) * self.brightness_std * self._mask(n, s.brightness, dev)
            c, used = translate3d(b, b, b, images) @ c, True
        if s.contrast > 0:
            f = torch.exp2(torch.randn(n, device=dev) * self.contrast_std)
            f = torch.where(self._mask(n, s.contrast, dev), f, torch.ones_like(f))
            c, used = scale3d(f, f, f, images) @ c, True
        if s.lumaflip > 0:  # reflect colours through the grey axis
            i = torch.floor(torch.rand(n, device=dev) * 2) * self._mask(n, s.lumaflip, dev)
            c, used = (torch.eye(4, device=dev) - 2 * ll * i.reshape(n, 1, 1)) @ c, True
        if s.hue > 0:  # rotate colours about the grey axis
            theta = (torch.rand(n, device=dev) * 2 - 1) * math.pi * self.hue_max
            theta = theta * self._mask(n, s.hue, dev)
            c, used = rotate3d(luma, theta, images) @ c, True
        if s.saturation > 0:  # scale the distance from the grey axis
            f = torch.exp2(torch.randn(n, device=dev) * self.saturation_std)
            f = torch.where(self._mask(n, s.saturation, dev), f, torch.ones_like(f)).reshape(n, 1, 1)
            c, used = (ll + (torch.eye(4, device=dev) - ll) * f) @ c, True
        return c if used else None

    @staticmethod
    def apply_color(images: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n, ch, h, w = images.shape
        flat = images.reshape(n, ch, h * w)
        c = c.to(images.dtype)
        if ch == 3:
            flat = c[:, :3, :3] @ flat + c[:, :3, 3:]
        elif ch == 1:  # grey images: average the colour matrix's rows to a luma gain and offset
            c = c[:, :3, :].mean(dim=1, keepdim=True)
            flat = flat * c[:, :, :3].sum(dim=2, keepdim=True) + c[:, :, 3:]
        else:
            raise TrainingError(f"colour augmentation needs 1 or 3 channels, got {ch}")
        return flat.reshape(n, ch, h, w)


def update_p(
    p: float, rt: float, *, batch: int, interval: int = 4, target: float = 0.6, ada_kimg: float = 500
) -> float:
    """One step of the ADA controller: move p by batch*interval/(ada_kimg*1000) towards r_t == target
    (so p can go from 0 to 1 in `ada_kimg` thousand images), clamped to [0, 1]."""
    step = np.sign(rt - target) * (batch * interval) / (ada_kimg * 1000)
    return float(min(max(p + step, 0.0), 1.0))
