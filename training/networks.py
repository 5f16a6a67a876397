"""StyleGAN2 networks (config F), composed bottom-up: layers -> blocks -> Generator / Discriminator.

Facts from Karras et al. 2020 ("Analyzing and Improving the Image Quality of StyleGAN") and the ADA paper:
equalised learning rate everywhere (weights stored N(0,1), scaled at run time by 1/sqrt(fan_in)), a mapping
network with lr multiplier 0.01, modulated + demodulated 3x3 convolutions, [1,3,3,1] FIR resampling, per-layer
noise with learned strength, a skip generator (ToRGB per block) and a residual discriminator with minibatch
standard deviation. Reduced precision (bf16 autocast) is used only for the top resolutions and only when
`reduced_precision` is switched on.

`arch_version` says which maths a network computes for its weights:
- 2 (the default): StyleGAN2 as the reference implementation (NVlabs stylegan2-ada-pytorch) computes it, so
  its published weights render the same images: the up-sampling convolution is a true convolution done as a
  stride-2 transposed convolution, padded once before the [1,3,3,1] FIR; minibatch-std groups are strided
  (samples i, i+n, i+2n, ...); activations are clamped to +-conv_clamp whenever conv_clamp is set.
- 1: the layers of ghosts' format-version-1 snapshots (a correlation at twice the resolution, zero padding after
  the FIR, contiguous minibatch-std groups, clamping only in reduced precision), kept so those snapshots render
  exactly as they did.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.errors import TrainingError
from training.ops import setup_filter, upfirdn2d

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2  # leaky ReLU slope; its output is scaled by sqrt(2) to keep unit variance


def activate(x: torch.Tensor, activation: str, clamp: float | None = None) -> torch.Tensor:
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE) * SQRT2
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}")
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def reduced_precision_context(enabled: bool, device: torch.device):
    """bf16 autocast for a block, or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ----------------------------------------------------------------------------------------------- layers


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate and an optional per-layer learning-rate multiplier."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        activation: str = "linear",
        lr_multiplier: float = 1.0,  # 0.01 in the mapping network
        bias_init: float = 0.0,
    ):  # 1 for style affines so styles start around 1
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        return activate(F.linear(x, w, b), self.activation)


class Conv2dLayer(nn.Module):
    """Plain convolution (discriminator) with equalised learning rate and optional FIR downsampling."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        bias: bool = True,
        activation: str = "linear",
        down: int = 1,
        resample_filter=(1, 3, 3, 1),
        conv_clamp: float | None = 256,  # +-clamp on the output (x gain), when the caller asks
        arch_version: int = 2,
    ):
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.legacy_fir = arch_version == 1  # format version 1's filter arithmetic, bit for bit
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor, gain: float = 1.0, clamp: bool = False) -> torch.Tensor:
        w = self.weight * self.weight_gain
        k = w.shape[-1]
        if self.down > 1 and k == 1 and not self.legacy_fir:
            # 1x1 (the skip): low-pass and decimate first, then the 1x1 kernel at the low resolution.
            p = (self.resample_filter.numel() - self.down + 1) // 2
            x = upfirdn2d(x, self.resample_filter, down=self.down, padding=p)
            x = F.conv2d(x, w.to(x.dtype))
        elif self.down > 1:
            # Low-pass with enough padding that a stride-2 valid convolution lands on H/2.
            p = (self.resample_filter.numel() - self.down + k - 1) // 2
            x = upfirdn2d(x, self.resample_filter, padding=p, separable=self.legacy_fir or None)
            x = F.conv2d(x, w.to(x.dtype), stride=self.down)
        else:
            x = F.conv2d(x, w.to(x.dtype), padding=k // 2)
        if self.bias is not None:
            x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        x = activate(x, self.activation) * gain
        if clamp and self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp * gain, self.conv_clamp * gain)
        return x


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    padding: int = 0,
    fused: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
) -> torch.Tensor:
    """Convolution whose input channels are scaled per sample by `styles`, then (optionally) demodulated so
    each output feature map has unit expected variance.

    With `up=2` the layer up-samples as the reference does: a true convolution of the zero-stuffed input,
    computed as a stride-2 transposed convolution (output 2H+1), then the FIR low-pass with one pixel of
    padding on each side (output 2H). A 3x3 kernel thus costs what it costs at the input resolution.

    The fused form folds the per-sample weights into one grouped convolution (groups = batch); the unfused
    form scales activations instead. They are mathematically equal; the tests check it.
    """
    n, cin = styles.shape
    cout = weight.shape[0]
    if not fused:
        x = x * styles.to(x.dtype).reshape(n, cin, 1, 1)
        if up > 1:
            x = F.conv_transpose2d(x, weight.to(x.dtype).transpose(0, 1), stride=up)
            x = _fir_after_transposed_conv(x, resample_filter, up, weight.shape[-1], padding)
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=padding)
        if demodulate:
            d = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # [N, Cout]
            x = x * d.to(x.dtype).reshape(n, cout, 1, 1)
        return x
    w = weight.unsqueeze(0) * styles.reshape(n, 1, cin, 1, 1)  # [N, Cout, Cin, k, k]
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, cout, 1, 1, 1)
    h, wd = x.shape[2:]
    x = x.reshape(1, n * cin, h, wd)
    k = weight.shape[2:]
    if up > 1:
        w = w.transpose(1, 2).reshape(n * cin, cout, *k)  # conv_transpose2d wants [in, out / groups, kh, kw]
        x = F.conv_transpose2d(x, w.to(x.dtype), stride=up, groups=n)
        x = _fir_after_transposed_conv(x, resample_filter, up, k[-1], padding)
    else:
        x = F.conv2d(x, w.reshape(n * cout, cin, *k).to(x.dtype), padding=padding, groups=n)
    return x.reshape(n, cout, *x.shape[2:])


def _fir_after_transposed_conv(
    x: torch.Tensor, f: torch.Tensor, up: int, k: int, padding: int
) -> torch.Tensor:
    """Low-pass the output of a stride-`up` transposed convolution with kernel `k` so that, with `padding`,
    the result is exactly `up` times the input size; all the padding goes before the FIR."""
    p0 = padding + (f.numel() + up - 1) // 2 - (k - 1)
    p1 = padding + (f.numel() - up) // 2 - (k - up)
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=up * up)  # one 2-D depthwise pass (ops.upfirdn2d)


def _fused_modconv(layer: nn.Module, x: torch.Tensor) -> bool:
    """Which form of modulated convolution a layer runs: one grouped convolution of per-sample weights
    (fused), or the activations scaled around one convolution of the whole batch. The same maths
    (tests/training/test_networks.py), different rounding.
    - format version 1: always fused, bit for bit what those snapshots rendered;
    - on CPU: never fused; mkldnn's grouped convolution is slow: at 64 px (cbase 16384) a G forward of 8
      images took 2.8 s fused and 1.4 s not, and backward gains too (benchmarks/train_bench.py --vs-reference);
    - elsewhere, as the reference: fused in eval mode, not in training mode."""
    if layer.arch_version == 1:
        return True
    return not layer.training and x.device.type != "cpu"


def _legacy_modulated_conv2d(x, weight, styles, *, padding, resample_filter, up, fused=True):
    """Format-version-1 up-sampling convolution: FIR up-sampling (zero padding after the filter), then a 3x3
    correlation at twice the resolution."""
    if up > 1:
        x = upfirdn2d(x, resample_filter, up=up, separable=True, centered=True)
    return modulated_conv2d(x, weight, styles, padding=padding, fused=fused)


# ---------------------------------------------------------------------------------------------- mapping


class MappingNetwork(nn.Module):
    """z (and an optional class label c) -> w, broadcast to `num_ws` style vectors; tracks the mean w."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int | None,
        *,
        num_layers: int = 8,  # 8 in StyleGAN2, 2 in the ADA "auto" config
        lr_multiplier: float = 0.01,  # the mapping learns 100x slower than the synthesis
        w_avg_beta: float | None = 0.995,
    ):  # decay of the tracked mean w used for truncation
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.w_avg_beta = w_avg_beta
        self.embed = FullyConnectedLayer(c_dim, w_dim) if c_dim > 0 else None
        features = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnectedLayer(features[i], features[i + 1], activation="lrelu", lr_multiplier=lr_multiplier)
            for i in range(num_layers)
        )
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self,
        z: torch.Tensor | None,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        update_emas: bool = False,
    ) -> torch.Tensor:
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            if c is None:
                raise TrainingError(f"this network is conditional: pass c with {self.c_dim} columns")
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        x = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        for layer in self.layers:
            x = layer(x)
        if update_emas and hasattr(self, "w_avg"):
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x = x.clone()
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x


# -------------------------------------------------------------------------------------------- synthesis


class _ModulatedLayer(nn.Module):
    """What the synthesis layers and ToRGB share: the style affine, the kernel, the bias and the clamp."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int, conv_clamp, arch_version
    ):
        super().__init__()
        self.conv_clamp, self.arch_version = conv_clamp, arch_version
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def _bias_act_clamp(self, x: torch.Tensor, act: str, clamp: bool) -> torch.Tensor:
        return activate(
            x + self.bias.to(x.dtype).reshape(1, -1, 1, 1), act, self.conv_clamp if clamp else None
        )


class SynthesisLayer(_ModulatedLayer):
    """Modulated 3x3 conv (+ optional 2x upsampling), per-pixel noise with learned strength, bias, lrelu."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        *,
        kernel_size: int = 3,
        up: int = 1,
        use_noise: bool = True,
        resample_filter=(1, 3, 3, 1),
        conv_clamp: float | None = 256,
        arch_version: int = 2,
    ):
        super().__init__(in_channels, out_channels, w_dim, kernel_size, conv_clamp, arch_version)
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.padding = kernel_size // 2
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        if use_noise:
            # A fixed noise image per layer, named in the state dict, so "const" noise is reproducible
            # and a projector can optimise it.
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
            self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        noise: torch.Tensor | None = None,
        clamp: bool = False,
    ) -> torch.Tensor:
        styles = self.affine(w)
        fused = _fused_modconv(self, x)
        conv = _legacy_modulated_conv2d if self.arch_version == 1 else modulated_conv2d
        x = conv(
            x,
            self.weight,
            styles,
            padding=self.padding,
            up=self.up,
            resample_filter=self.resample_filter,
            fused=fused,
        )
        if self.use_noise:
            if noise is None and noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device)
            elif noise is None and noise_mode == "const":
                noise = self.noise_const
            elif noise is None and noise_mode != "none":
                raise ValueError(f"noise_mode must be 'const', 'random' or 'none', not {noise_mode!r}")
            if noise is not None:
                x = x + (noise * self.noise_strength).to(x.dtype)
        return self._bias_act_clamp(x, "lrelu", clamp)


class ToRGBLayer(_ModulatedLayer):
    """1x1 modulated conv to image channels, without demodulation."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        conv_clamp: float | None = 256,
        arch_version: int = 2,
    ):
        super().__init__(in_channels, out_channels, w_dim, 1, conv_clamp, arch_version)
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, clamp: bool = False) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=_fused_modconv(self, x))
        return self._bias_act_clamp(x, "linear", clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the skip generator: (const | upsampling conv) -> conv -> ToRGB added to the
    upsampled image of the previous block."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        *,
        reduced: bool = False,
        resample_filter=(1, 3, 3, 1),
        conv_clamp: float | None = 256,
        arch_version: int = 2,
    ):
        super().__init__()
        self.in_channels, self.resolution, self.reduced = in_channels, resolution, reduced
        self.arch_version = arch_version
        self.register_buffer("resample_filter", setup_filter(resample_filter), persistent=False)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim,
                resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                arch_version=arch_version,
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, arch_version=arch_version
        )
        self.torgb = ToRGBLayer(
            out_channels, img_channels, w_dim, conv_clamp=conv_clamp, arch_version=arch_version
        )
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def noise_layers(self) -> list[SynthesisLayer]:
        return [self.conv1] if self.in_channels == 0 else [self.conv0, self.conv1]

    def forward(self, x, img, ws, noise_mode="const", noise_inputs=None, reduced_precision=False):
        n = ws.shape[0]
        noise_inputs = noise_inputs or [None] * self.num_conv
        use_reduced = reduced_precision and self.reduced
        clamp = use_reduced or self.arch_version >= 2  # the reference clamps whenever conv_clamp is set
        with reduced_precision_context(use_reduced, ws.device):
            if self.in_channels == 0:
                x = self.const.unsqueeze(0).expand(n, -1, -1, -1)
                x = self.conv1(x, ws[:, 0], noise_mode, noise_inputs[0], clamp=clamp)
            else:
                x = self.conv0(x, ws[:, 0], noise_mode, noise_inputs[0], clamp=clamp)
                x = self.conv1(x, ws[:, 1], noise_mode, noise_inputs[1], clamp=clamp)
            y = self.torgb(x, ws[:, self.num_conv], clamp=clamp).float()
        if img is not None:
            img = upfirdn2d(
                img, self.resample_filter, up=2, centered=True, separable=self.arch_version == 1 or None
            )
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """w+ (one w per layer) -> image, from a learned 4x4 constant up to `img_resolution`."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int,
        *,
        channel_base: int = 32768,  # feature maps at resolution r: min(channel_base // r, channel_max)
        channel_max: int = 512,
        num_reduced_res: int = 4,  # top resolutions that may run in bf16
        conv_clamp: float | None = 256,
        arch_version: int = 2,
    ):
        super().__init__()
        check_resolution(img_resolution)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        if min(channels.values()) < 1:
            raise TrainingError(f"channel_base {channel_base} is too small for {img_resolution} px")
        reduced_from = max(2 ** (int(np.log2(img_resolution)) + 1 - num_reduced_res), 8)
        self.blocks = nn.ModuleList()
        self.num_ws = 0
        for r in self.block_resolutions:
            block = SynthesisBlock(
                channels[r // 2] if r > 4 else 0,
                channels[r],
                w_dim,
                r,
                img_channels,
                reduced=r >= reduced_from,
                conv_clamp=conv_clamp,
                arch_version=arch_version,
            )
            self.num_ws += block.num_conv
            self.blocks.append(block)
        self.num_ws += self.blocks[-1].num_torgb
        self.reduced_precision = False  # switched on by the training loop on CUDA

    def noise_layers(self) -> list[SynthesisLayer]:
        """Every layer that takes a noise input, in order (a projector optimises their `noise_const`)."""
        return [layer for block in self.blocks for layer in block.noise_layers()]

    def forward(
        self, ws: torch.Tensor, noise_mode: str = "const", noise_inputs: list[torch.Tensor] | None = None
    ) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = noise_idx = 0
        for block in self.blocks:
            block_noise = None
            if noise_inputs is not None:
                block_noise = noise_inputs[noise_idx : noise_idx + block.num_conv]
            # A block's ToRGB shares its w with the next block's first conv (reference indexing).
            x, img = block(
                x,
                img,
                ws[:, w_idx : w_idx + block.num_conv + block.num_torgb],
                noise_mode,
                block_noise,
                self.reduced_precision,
            )
            w_idx += block.num_conv
            noise_idx += block.num_conv
        return img


class Generator(nn.Module):
    """z -> w -> image. Call `G(z, c)`; use `G.mapping` and `G.synthesis` for latent-space work."""

    def __init__(
        self,
        *,
        z_dim: int = 512,
        c_dim: int = 0,
        w_dim: int = 512,
        img_resolution: int,
        img_channels: int = 3,
        mapping_layers: int = 8,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_reduced_res: int = 4,
        conv_clamp: float | None = 256,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        arch_version: int = 2,
    ):
        super().__init__()
        check_arch_version(arch_version)
        self.init_kwargs = {
            "z_dim": z_dim,
            "c_dim": c_dim,
            "w_dim": w_dim,
            "img_resolution": img_resolution,
            "img_channels": img_channels,
            "mapping_layers": mapping_layers,
            "channel_base": channel_base,
            "channel_max": channel_max,
            "num_reduced_res": num_reduced_res,
            "conv_clamp": conv_clamp,
            "mapping_lr_multiplier": mapping_lr_multiplier,
            "w_avg_beta": w_avg_beta,
            "arch_version": arch_version,
        }
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(
            w_dim,
            img_resolution,
            img_channels,
            channel_base=channel_base,
            channel_max=channel_max,
            num_reduced_res=num_reduced_res,
            conv_clamp=conv_clamp,
            arch_version=arch_version,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim,
            c_dim,
            w_dim,
            self.num_ws,
            num_layers=mapping_layers,
            lr_multiplier=mapping_lr_multiplier,
            w_avg_beta=w_avg_beta,
        )

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        update_emas: bool = False,
    ) -> torch.Tensor:
        ws = self.mapping(
            z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, update_emas=update_emas
        )
        return self.synthesis(ws, noise_mode=noise_mode)


# ------------------------------------------------------------------------------------------ discriminator


class DiscriminatorBlock(nn.Module):
    """Residual block: (FromRGB) -> conv -> downsampling conv, plus a 1x1 downsampling skip; both
    branches scaled by sqrt(1/2) so the sum keeps unit variance."""

    def __init__(
        self,
        in_channels: int,
        tmp_channels: int,
        out_channels: int,
        img_channels: int,
        *,
        reduced: bool = False,
        conv_clamp: float | None = 256,
        arch_version: int = 2,
    ):
        super().__init__()
        self.in_channels, self.reduced, self.arch_version = in_channels, reduced, arch_version
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(
                img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp
            )
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(
            tmp_channels,
            out_channels,
            3,
            activation="lrelu",
            down=2,
            conv_clamp=conv_clamp,
            arch_version=arch_version,
        )
        # The reference passes no conv_clamp to the 1x1 skip: it is never clamped. Format version 1 clamped it
        # (in reduced precision), and keeps doing so, so those snapshots render as before.
        self.skip = Conv2dLayer(
            tmp_channels,
            out_channels,
            1,
            bias=False,
            down=2,
            conv_clamp=conv_clamp if arch_version == 1 else None,
            arch_version=arch_version,
        )

    def forward(self, x, img, reduced_precision=False):
        use_reduced = reduced_precision and self.reduced
        clamp = use_reduced or self.arch_version >= 2
        with reduced_precision_context(use_reduced, img.device):
            if self.in_channels == 0:
                x = self.fromrgb(img, clamp=clamp)
            y = self.skip(x, gain=math.sqrt(0.5), clamp=clamp)
            x = self.conv0(x, clamp=clamp)
            x = self.conv1(x, gain=math.sqrt(0.5), clamp=clamp)
            x = y + x
        return x.float()


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation across groups of samples, so D can see a lack of variety."""

    def __init__(self, group_size: int = 4, num_channels: int = 1, strided: bool = True):
        super().__init__()
        self.group_size, self.num_channels, self.strided = group_size, num_channels, strided

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n)
        if n % g != 0:
            raise TrainingError(
                f"minibatch-std group size {g} must divide the per-device batch {n}; "
                f"change --batch or the mbstd group"
            )
        f = self.num_channels
        if self.strided:  # the reference's groups: sample i belongs to group i mod (n / g)
            y = x.reshape(g, n // g, f, c // f, h, w)
            y = (y - y.mean(dim=0)).square().mean(dim=0)
            y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n/g, f]
            y = y.reshape(1, n // g, f, 1, 1).expand(g, n // g, f, h, w).reshape(n, f, h, w)
        else:  # format version 1: contiguous groups (samples 0..g-1, g..2g-1, ...)
            y = x.reshape(n // g, g, f, c // f, h, w)
            y = (y - y.mean(dim=1, keepdim=True)).square().mean(dim=1)
            y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # [n/g, f]
            y = y.reshape(n // g, 1, f, 1, 1).expand(n // g, g, f, h, w).reshape(n, f, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(
        self,
        in_channels: int,
        cmap_dim: int,
        *,
        resolution: int = 4,
        mbstd_group_size: int = 4,
        mbstd_num_channels: int = 1,
        conv_clamp: float | None = 256,
        arch_version: int = 2,
    ):
        super().__init__()
        self.cmap_dim, self.arch_version = cmap_dim, arch_version
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels, strided=arch_version >= 2)
        self.conv = Conv2dLayer(
            in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu", conv_clamp=conv_clamp
        )
        self.fc = FullyConnectedLayer(in_channels * resolution * resolution, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: torch.Tensor | None) -> torch.Tensor:
        x = self.conv(self.mbstd(x), clamp=self.arch_version >= 2)
        x = self.out(self.fc(x.flatten(1)))
        if self.cmap_dim > 0:  # projection discriminator for class-conditional training
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.cmap_dim)
        return x


class Discriminator(nn.Module):
    """Residual discriminator: image (and optional label) -> one logit per image."""

    def __init__(
        self,
        *,
        c_dim: int = 0,
        img_resolution: int,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_reduced_res: int = 4,
        conv_clamp: float | None = 256,
        mbstd_group_size: int = 4,  # samples per minibatch-std group
        mbstd_num_channels: int = 1,
        mapping_layers: int = 8,  # label mapping depth; the reference always uses 8 in D
        cmap_dim: int | None = None,
        arch_version: int = 2,
    ):
        super().__init__()
        check_resolution(img_resolution)
        check_arch_version(arch_version)
        self.init_kwargs = {
            "c_dim": c_dim,
            "img_resolution": img_resolution,
            "img_channels": img_channels,
            "channel_base": channel_base,
            "channel_max": channel_max,
            "num_reduced_res": num_reduced_res,
            "conv_clamp": conv_clamp,
            "mbstd_group_size": mbstd_group_size,
            "mbstd_num_channels": mbstd_num_channels,
            "mapping_layers": mapping_layers,
            "cmap_dim": cmap_dim,
            "arch_version": arch_version,
        }
        self.c_dim, self.img_resolution, self.img_channels = c_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(int(np.log2(img_resolution)), 2, -1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions + [4]}
        if min(channels.values()) < 1:
            raise TrainingError(f"channel_base {channel_base} is too small for {img_resolution} px")
        reduced_from = max(2 ** (int(np.log2(img_resolution)) + 1 - num_reduced_res), 8)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(
                channels[r] if r < img_resolution else 0,
                channels[r],
                channels[r // 2],
                img_channels,
                reduced=r >= reduced_from,
                conv_clamp=conv_clamp,
                arch_version=arch_version,
            )
            for r in self.block_resolutions
        )
        cmap_dim = (channels[4] if cmap_dim is None else cmap_dim) if c_dim > 0 else 0
        self.mapping = (
            MappingNetwork(0, c_dim, cmap_dim, None, num_layers=mapping_layers, w_avg_beta=None)
            if c_dim > 0
            else None
        )
        self.b4 = DiscriminatorEpilogue(
            channels[4],
            cmap_dim,
            mbstd_group_size=mbstd_group_size,
            mbstd_num_channels=mbstd_num_channels,
            conv_clamp=conv_clamp,
            arch_version=arch_version,
        )
        self.reduced_precision = False

    def forward(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        x = None
        for block in self.blocks:
            x = block(x, img, self.reduced_precision)
        cmap = self.mapping(None, c) if self.mapping is not None else None
        return self.b4(x, cmap)

    def layers_in_freeze_order(self) -> list[nn.Module]:
        """The layers Freeze-D counts, as the reference counts them: fromrgb, conv0, conv1, skip of each block
        from the top resolution down (the epilogue is never frozen)."""
        return [
            getattr(b, name)
            for b in self.blocks
            for name in ("fromrgb", "conv0", "conv1", "skip")
            if hasattr(b, name)
        ]

    def freeze_layers(self, count: int) -> int:
        """Freeze-D: gradients off for the first `count` layers; returns how many parameters were frozen."""
        frozen = 0
        for layer in self.layers_in_freeze_order()[:count]:
            for p in layer.parameters():
                p.requires_grad_(False)
                frozen += p.numel()
        return frozen


LATEST_ARCH_VERSION = 2


def check_arch_version(v: int) -> None:
    if v not in (1, LATEST_ARCH_VERSION):
        raise TrainingError(
            f"unknown network arch_version {v}; this ghosts knows 1 and {LATEST_ARCH_VERSION}"
        )


def copy_matching(module: nn.Module, source: dict[str, torch.Tensor]) -> tuple[int, int]:
    """Copy every tensor of `source` whose name and shape match one of `module`'s (transfer learning).
    Returns (copied, skipped), skipped counting the module's tensors left as they were."""
    copied = 0
    state = module.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            src = source.get(name)
            if src is not None and tuple(src.shape) == tuple(t.shape):
                t.copy_(src)
                copied += 1
    return copied, len(state) - copied


def check_resolution(res: int) -> None:
    if res < 4 or res & (res - 1) != 0:
        raise TrainingError(f"image resolution must be a power of two >= 4, got {res}")


__all__ = [
    "Discriminator",
    "Generator",
    "MappingNetwork",
    "MinibatchStdLayer",
    "SynthesisNetwork",
    "modulated_conv2d",
]
