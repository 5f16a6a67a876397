"""The reference StyleGAN2-ADA training step on CPU in fp32, for benchmarks/train_bench.py to time against.

Written for ghosts from the documented behaviour of NVlabs stylegan2-ada-pytorch (its paper, README and the
semantics of its ops); none of its code is copied or run (NVIDIA's licence is non-commercial). What it
reproduces is the work that implementation does per minibatch when it runs on a CPU in fp32:

- ops as its plain-PyTorch fallbacks compute them off CUDA: `bias_act` adds the bias, applies the activation,
  multiplies by the gain and then clamps, each a separate tensor op; `upfirdn2d` zero-stuffs, pads, crops, and
  filters with the [1,3,3,1] filter as one non-separable 4x4 depthwise convolution (its `setup_filter` makes
  filters under 8 taps 2-D), then decimates by slicing;
- `conv2d_resample`'s paths: a 3x3 up-sampling layer is a stride-2 transposed convolution followed by the FIR
  with the padding folded in before it; a down-sampling 3x3 layer filters then runs a stride-2 convolution;
  the 1x1 skip filters and decimates first, then convolves;
- modulated convolution with `fused_modconv = not training`: networks in training mode scale the activations
  by the styles, convolve with the shared weight and multiply by demodulation coefficients computed from the
  full per-sample weight tensor (noise added by the same multiply-add); in eval mode one grouped convolution;
- the StyleGAN2 loss in its four phases (G main; G path length on the first half of the batch every 4th
  minibatch; D main with a separate backward for fakes and reals; D R1 every 16th minibatch), each phase
  zeroing the gradients, switching requires_grad on for its network only, replacing non-finite gradients
  and stepping a lazily-regularised Adam; then the EMA of G.

Modules carry the reference's state-dict names (`mapping.fc0`, `synthesis.b8.conv0`, `b16.skip`, ...), so a
network pickle's tensors load unchanged (`tests/training/test_train_anchor.py` renders the NVlabs fixture with
it). Unconditional networks only (no labels), fp32 only, no augmentation pipe.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# ------------------------------------------------------------------------------------------------- ops


def make_filter(taps=(1, 3, 3, 1)) -> torch.Tensor:
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)  # filters under 8 taps become non-separable 2-D kernels
    return f / f.sum()


def bias_act(x, b=None, act="linear", gain=None, clamp=None):
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2)
        gain = math.sqrt(2) if gain is None else gain
    else:
        gain = 1.0 if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def upfirdn2d(x, f, up=1, down=1, padding=(0, 0, 0, 0), gain=1.0):
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    f = (f * gain).to(x.dtype).flip([0, 1])  # a true convolution: conv2d correlates
    x = F.conv2d(x, f[None, None].repeat([c, 1, 1, 1]), groups=c)
    return x[:, :, ::down, ::down]


def upsample2d(x, f, up=2):
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def conv2d_resample(x, w, f=None, up=1, down=1, padding=0, groups=1):
    """The conv2d_resample paths a StyleGAN2 network takes (weights never flipped: see the callers)."""
    cout, cin_g, kh, kw = w.shape
    fw = f.shape[-1] if f is not None else 1
    p0 = p1 = padding
    if up > 1:
        p0, p1 = p0 + (fw + up - 1) // 2, p1 + (fw - up) // 2
    if down > 1:
        p0, p1 = p0 + (fw - down + 1) // 2, p1 + (fw - down) // 2
    if kw == 1 and down > 1 and up == 1:
        x = upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, groups=groups)
    if down > 1 and up == 1:
        x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    if up > 1:
        if groups == 1:
            w = w.transpose(0, 1)
        else:
            w = w.reshape(groups, cout // groups, cin_g, kh, kw).transpose(1, 2)
            w = w.reshape(groups * cin_g, cout // groups, kh, kw)
        p0, p1 = p0 - (kw - 1), p1 - (kw - up)
        pt = max(min(-p0, -p1), 0)
        x = F.conv_transpose2d(x, w, stride=up, padding=pt, groups=groups)
        return upfirdn2d(x, f, padding=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up * up)
    return F.conv2d(x, w, padding=p0, groups=groups)


def modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, f=None, demodulate=True, fused=True):
    n = x.shape[0]
    _cout, cin, kh, kw = weight.shape
    w = dcoefs = None
    if demodulate or fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
    if demodulate and fused:
        w = w * dcoefs.reshape(n, -1, 1, 1, 1)
    if not fused:
        x = x * styles.reshape(n, -1, 1, 1)
        x = conv2d_resample(x, weight, f=f, up=up, padding=padding)
        if demodulate and noise is not None:
            x = torch.addcmul(noise, x, dcoefs.reshape(n, -1, 1, 1))
        elif demodulate:
            x = x * dcoefs.reshape(n, -1, 1, 1)
        elif noise is not None:
            x = x.add_(noise)
        return x
    x = x.reshape(1, -1, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(-1, cin, kh, kw), f=f, up=up, padding=padding, groups=n)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x.add_(noise)
    return x


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# ---------------------------------------------------------------------------------------------- layers


class FullyConnectedLayer(nn.Module):
    def __init__(self, cin, cout, bias=True, activation="linear", lr_multiplier=1.0, bias_init=0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([cout, cin]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([cout], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(cin)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight * self.weight_gain
        b = self.bias
        if b is not None and self.bias_gain != 1:
            b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    def __init__(self, cin, cout, k, bias=True, activation="linear", down=1, conv_clamp=None):
        super().__init__()
        self.activation, self.down, self.conv_clamp, self.padding = activation, down, conv_clamp, k // 2
        self.register_buffer("resample_filter", make_filter(), persistent=False)
        self.weight = nn.Parameter(torch.randn([cout, cin, k, k]))
        self.bias = nn.Parameter(torch.zeros([cout])) if bias else None
        self.weight_gain = 1 / math.sqrt(cin * k * k)
        self.act_gain = math.sqrt(2) if activation == "lrelu" else 1.0

    def forward(self, x, gain=1.0):
        w = self.weight * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, down=self.down, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    def __init__(self, z_dim, w_dim, num_ws, num_layers=8, lr_multiplier=0.01, w_avg_beta=0.995):
        super().__init__()
        self.num_ws, self.num_layers, self.w_avg_beta = num_ws, num_layers, w_avg_beta
        feats = [z_dim] + [w_dim] * num_layers
        for i in range(num_layers):
            layer = FullyConnectedLayer(
                feats[i], feats[i + 1], activation="lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, truncation_psi=1.0, skip_w_avg_update=False):
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = self.w_avg.lerp(x, truncation_psi)
        return x


class SynthesisLayer(nn.Module):
    def __init__(self, cin, cout, w_dim, resolution, up=1, conv_clamp=None):
        super().__init__()
        self.resolution, self.up, self.conv_clamp, self.padding = resolution, up, conv_clamp, 1
        self.register_buffer("resample_filter", make_filter(), persistent=False)
        self.affine = FullyConnectedLayer(w_dim, cin, bias_init=1)
        self.weight = nn.Parameter(torch.randn([cout, cin, 3, 3]))
        self.bias = nn.Parameter(torch.zeros([cout]))
        self.register_buffer("noise_const", torch.randn([resolution, resolution]))
        self.noise_strength = nn.Parameter(torch.zeros([]))

    def forward(self, x, w, noise_mode="random", fused_modconv=True):
        styles = self.affine(w)
        noise = None
        if noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution]) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x,
            self.weight,
            styles,
            noise=noise,
            up=self.up,
            padding=self.padding,
            f=self.resample_filter,
            fused=fused_modconv,
        )
        return bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, cin, cout, w_dim, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, cin, bias_init=1)
        self.weight = nn.Parameter(torch.randn([cout, cin, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([cout]))
        self.weight_gain = 1 / math.sqrt(cin)

    def forward(self, x, w, fused_modconv=True):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused_modconv)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    def __init__(self, cin, cout, w_dim, resolution, img_channels, conv_clamp=None):
        super().__init__()
        self.in_channels = cin
        self.register_buffer("resample_filter", make_filter(), persistent=False)
        if cin == 0:
            self.const = nn.Parameter(torch.randn([cout, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(cin, cout, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(cout, cout, w_dim, resolution, conv_clamp=conv_clamp)
        self.torgb = ToRGBLayer(cout, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if cin == 0 else 2

    def forward(self, x, img, ws, noise_mode="random"):
        w_iter = iter(ws.unbind(dim=1))
        fused = not self.training  # fp32: fused grouped convolution in eval mode only
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise_mode, fused)
        else:
            x = self.conv0(x, next(w_iter), noise_mode, fused)
            x = self.conv1(x, next(w_iter), noise_mode, fused)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused)
        img = img.add_(y) if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(self, w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp):
        super().__init__()
        self.block_resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        ch = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        self.num_ws = 0
        for r in self.block_resolutions:
            block = SynthesisBlock(ch[r // 2] if r > 4 else 0, ch[r], w_dim, r, img_channels, conv_clamp)
            self.num_ws += block.num_conv
            setattr(self, f"b{r}", block)
        self.num_ws += 1

    def forward(self, ws, noise_mode="random"):
        block_ws, w_idx = [], 0
        for r in self.block_resolutions:
            block = getattr(self, f"b{r}")
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + 1))
            w_idx += block.num_conv
        x = img = None
        for r, cur in zip(self.block_resolutions, block_ws):
            x, img = getattr(self, f"b{r}")(x, img, cur, noise_mode)
        return img


class Generator(nn.Module):
    def __init__(
        self,
        *,
        z_dim,
        w_dim,
        img_resolution,
        img_channels,
        mapping_layers,
        channel_base,
        channel_max,
        conv_clamp,
    ):
        super().__init__()
        self.z_dim = z_dim
        self.synthesis = SynthesisNetwork(
            w_dim, img_resolution, img_channels, channel_base, channel_max, conv_clamp
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, w_dim, self.num_ws, num_layers=mapping_layers)

    def forward(self, z, truncation_psi=1.0, noise_mode="random"):
        return self.synthesis(self.mapping(z, truncation_psi), noise_mode)


class DiscriminatorBlock(nn.Module):
    def __init__(self, cin, tmp, cout, img_channels, conv_clamp=None):
        super().__init__()
        self.in_channels = cin
        if cin == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp, 1, activation="lrelu", conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp, tmp, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp, cout, 3, activation="lrelu", down=2, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp, cout, 1, bias=False, down=2)  # the reference gives the skip no clamp

    def forward(self, x, img):
        if self.in_channels == 0:
            y = self.fromrgb(img)
            x = x + y if x is not None else y
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y.add_(x), img


class MinibatchStdLayer(nn.Module):
    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g, f = min(self.group_size, n), self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = y.square().mean(dim=0)
        y = (y + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, cin, mbstd_group_size=4, conv_clamp=None):
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size)
        self.conv = Conv2dLayer(cin + 1, cin, 3, activation="lrelu", conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(cin * 16, cin, activation="lrelu")
        self.out = FullyConnectedLayer(cin, 1)

    def forward(self, x):
        x = self.conv(self.mbstd(x))
        return self.out(self.fc(x.flatten(1)))


class Discriminator(nn.Module):
    def __init__(
        self, *, img_resolution, img_channels, channel_base, channel_max, conv_clamp, mbstd_group_size
    ):
        super().__init__()
        self.block_resolutions = [2**i for i in range(int(np.log2(img_resolution)), 2, -1)]
        ch = {r: min(channel_base // r, channel_max) for r in self.block_resolutions + [4]}
        for r in self.block_resolutions:
            cin = ch[r] if r < img_resolution else 0
            setattr(self, f"b{r}", DiscriminatorBlock(cin, ch[r], ch[r // 2], img_channels, conv_clamp))
        self.b4 = DiscriminatorEpilogue(ch[4], mbstd_group_size, conv_clamp)

    def forward(self, img):
        x = None
        for r in self.block_resolutions:
            x, img = getattr(self, f"b{r}")(x, img)
        return self.b4(x)


# ----------------------------------------------------------------------------------------- ghosts names


def reference_names(ghosts_state: dict[str, torch.Tensor], res: int, net: str) -> dict[str, torch.Tensor]:
    """A ghosts G or D state dict under the reference's names (the inverse of training.pickle_import's
    renaming): mapping.layers.i -> mapping.fci; G synthesis.blocks.k -> synthesis.b(4 * 2**k);
    D blocks.k -> b(res / 2**k)."""
    out = {}
    for name, t in ghosts_state.items():
        parts = name.split(".")
        if parts[0] == "mapping" and parts[1] == "layers":
            parts[1:3] = [f"fc{parts[2]}"]
        elif net == "G" and parts[:2] == ["synthesis", "blocks"]:
            parts[1:3] = [f"b{4 * 2 ** int(parts[2])}"]
        elif net == "D" and parts[0] == "blocks":
            parts[0:2] = [f"b{res // 2 ** int(parts[1])}"]
        out[".".join(parts)] = t
    return out


def load_reference_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load tensors by name; every parameter and persistent buffer of `module` must be given."""
    missing, unexpected = module.load_state_dict(
        {k: v for k, v in state.items() if not k.endswith("resample_filter")}, strict=False
    )
    if missing or unexpected:
        raise KeyError(f"anchor state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")


# ------------------------------------------------------------------------------------------ the step


class ReferenceStep:
    """One training minibatch as the reference's loop runs it (phases, lazy regularisation, EMA)."""

    def __init__(
        self,
        G: Generator,
        D: Discriminator,
        *,
        lr: float = 0.0025,
        betas=(0.0, 0.99),
        r1_gamma: float = 10.0,
        pl_weight: float = 2.0,
        style_mixing_prob: float = 0.9,
        g_reg_interval: int = 4,
        d_reg_interval: int = 16,
        batch: int = 8,
        ema_kimg: float = 10.0,
    ):
        self.G, self.D = G.train().requires_grad_(False), D.train().requires_grad_(False)
        self.G_ema = copy.deepcopy(G).eval()
        self.r1_gamma, self.pl_weight, self.style_mixing_prob = r1_gamma, pl_weight, style_mixing_prob
        self.pl_mean = torch.zeros([])
        self.batch, self.ema_kimg = batch, ema_kimg
        self.phases = []
        for name, module, interval in (("G", G, g_reg_interval), ("D", D, d_reg_interval)):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(
                module.parameters(), lr=lr * ratio, betas=[b**ratio for b in betas], eps=1e-8
            )
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]

    def run_G(self, z):
        ws = self.G.mapping(z)
        if self.style_mixing_prob > 0:
            cutoff = torch.empty([], dtype=torch.int64).random_(1, ws.shape[1])
            keep = torch.full_like(cutoff, ws.shape[1])
            cutoff = torch.where(torch.rand([]) < self.style_mixing_prob, cutoff, keep)
            ws[:, cutoff:] = self.G.mapping(torch.randn_like(z), skip_w_avg_update=True)[:, cutoff:]
        return self.G.synthesis(ws), ws

    def accumulate(self, phase: str, real_img, z, gain: float) -> None:
        if phase == "Gmain":
            img, _ = self.run_G(z)
            F.softplus(-self.D(img)).mean().mul(gain).backward()
        elif phase == "Greg":
            n = z.shape[0] // 2
            img, ws = self.run_G(z[:n])
            pl_noise = torch.randn_like(img) / np.sqrt(img.shape[2] * img.shape[3])
            (grads,) = torch.autograd.grad(
                [(img * pl_noise).sum()], [ws], create_graph=True, only_inputs=True
            )
            lengths = grads.square().sum(2).mean(1).sqrt()
            pl_mean = self.pl_mean.lerp(lengths.mean(), 0.01)
            self.pl_mean.copy_(pl_mean.detach())
            loss = (lengths - pl_mean).square() * self.pl_weight
            (img[:, 0, 0, 0] * 0 + loss).mean().mul(gain).backward()
        elif phase == "Dmain":
            img, _ = self.run_G(z)
            F.softplus(self.D(img)).mean().mul(gain).backward()
            logits = self.D(real_img.detach())
            (logits * 0 + F.softplus(-logits)).mean().mul(gain).backward()
        elif phase == "Dreg":
            real = real_img.detach().requires_grad_(True)
            logits = self.D(real)
            (grads,) = torch.autograd.grad([logits.sum()], [real], create_graph=True, only_inputs=True)
            loss = grads.square().sum([1, 2, 3]) * (self.r1_gamma / 2)
            (logits * 0 + loss).mean().mul(gain).backward()

    def run_phase(self, index: int, real_img, z) -> None:
        phase, module, opt, interval = self.phases[index]
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        self.accumulate(phase, real_img, z, gain=interval)
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    def update_ema(self, cur_nimg: int, rampup: float | None = 0.05) -> None:
        ema_nimg = self.ema_kimg * 1000
        if rampup is not None:
            ema_nimg = min(ema_nimg, cur_nimg * rampup)
        beta = 0.5 ** (self.batch / max(ema_nimg, 1e-8))
        with torch.no_grad():
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
