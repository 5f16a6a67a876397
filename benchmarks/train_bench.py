"""Training speed: seconds per kimg and per G+D minibatch at 32/64/128 px, measured by the real training
loop (all four phases, lazy regularisation included in proportion) on a synthetic archive.

    python benchmarks/train_bench.py                      # CPU (and CUDA when present)
    python benchmarks/train_bench.py --res 32 --cbase 2048 --cmax 64 --batch 8
    python benchmarks/train_bench.py --layer                  # the up-sampling convolution, three forms
    python benchmarks/train_bench.py --vs-reference [--threads 1] [--compile]   # a step vs the reference

`--vs-reference` times ghosts' training minibatch (the four phases as training.loop runs them, EMA) against
benchmarks/baselines/stylegan2_ada_fp32.py, the reference's fp32 CPU step re-implemented from its documented
algorithm, at 32 px (cbase 1024, cmax 64) and 64 px (16384, 512), batch 8, no augmentation: the same weights
in both (checked: same images and logits before timing), one warm-up each, then `--reps` minibatches each,
alternating; medians per phase, wall and CPU time, the step with the regularisers in proportion, the ratio.

The first minibatch (warm-up) is its own tick and is left out; the figure is the second tick.

`--layer` times one up-sampling modulated convolution (forward + backward, grouped per sample) in three forms:
`v1`, ghosts' layer before format version 2 (FIR up-sampling, then the 3x3 kernel at twice the resolution);
`v2`, today's layer (stride-2 transposed convolution, then the separable [1,3,3,1] FIR); and `reference-cpu`,
the reference implementation's CPU algorithm re-expressed here (NVlabs code is not run: the same transposed
convolution followed by its non-separable 4x4 FIR, as its plain-PyTorch fallback computes it). FLOPs are counted
from the shapes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.training.archives import make_archive
from training.config import build_options
from training.loop import (
    _set_trainable,
    ema_beta,
    network_kwargs,
    new_loss_and_optimizers,
    new_networks,
    train,
    update_ema,
)
from training.report import read_stats


def measure(
    res: int, device: str, *, batch: int, steps: int, cbase: int | None, cmax: int | None, tmp: Path
) -> dict:
    archive = make_archive(tmp, n=max(64, batch), res=res, name=f"bench{res}")
    opts = build_options(
        archive,
        tmp / f"runs-{device}",
        batch=batch,
        kimg=batch * (1 + steps) / 1000,
        tick_kimg=batch * steps / 1000,
        cbase=cbase,
        cmax=cmax,
        workers=0 if device == "cpu" else 2,
        metrics="none",
        snap=0,
        device=device,
    )
    t0 = time.time()
    result = train(opts)
    rows = read_stats(result.run_dir / "stats.jsonl")
    sec_per_kimg = rows[-1]["Timing/sec_per_kimg"]["mean"]
    return {
        "res": res,
        "device": device,
        "batch": batch,
        "steps": steps,
        "cbase": opts.cbase,
        "cmax": opts.cmax,
        "sec_per_kimg": round(sec_per_kimg, 2),
        "sec_per_step": round(sec_per_kimg * batch / 1000, 3),
        "wall_s": round(time.time() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }


def _upconv_forms(x, w, s, f1):
    import torch.nn.functional as F

    from training.networks import _legacy_modulated_conv2d, modulated_conv2d

    f2 = (f1[:, None] * f1[None, :]).flip([0, 1])  # the reference's 2-D filter, flipped for conv2d

    def reference_cpu(x, w, s):
        n, cin = s.shape
        cout = w.shape[0]
        ww = w.unsqueeze(0) * s.reshape(n, 1, cin, 1, 1)
        ww = ww * (ww.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, cout, 1, 1, 1)
        ww = ww.transpose(1, 2).reshape(n * cin, cout, 3, 3)
        y = F.conv_transpose2d(x.reshape(1, n * cin, *x.shape[2:]), ww, stride=2, groups=n)
        y = F.pad(y, [1, 1, 1, 1])
        c = y.shape[1]
        y = F.conv2d(y, (f2 * 4).expand(c, 1, 4, 4), groups=c)
        return y.reshape(n, cout, *y.shape[2:])

    return {
        "v1": lambda: _legacy_modulated_conv2d(x, w, s, padding=1, resample_filter=f1, up=2),
        "v2": lambda: modulated_conv2d(x, w, s, padding=1, up=2, resample_filter=f1),
        "reference-cpu": lambda: reference_cpu(x, w, s),
    }


def measure_layer(batch: int, cin: int, cout: int, res: int, reps: int) -> list[dict]:
    from training.ops import setup_filter

    torch.manual_seed(0)
    x = torch.randn(batch, cin, res, res, requires_grad=True)
    w = torch.randn(cout, cin, 3, 3, requires_grad=True)
    s = torch.randn(batch, cin, requires_grad=True)
    forms = _upconv_forms(x, w, s, setup_filter([1, 3, 3, 1]))
    out = {}
    for name, fn in forms.items():
        fn().square().mean().backward()  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn().square().mean().backward()
            times.append(time.perf_counter() - t0)
        out[name] = min(times)
    # multiply-adds x 2 of the 3x3 kernel, forward only (backward is about twice that)
    flops = {"v1": 2 * batch * cout * cin * 9 * (2 * res) ** 2, "v2": 2 * batch * cout * cin * 9 * res**2}
    flops["reference-cpu"] = flops["v2"]
    same = torch.allclose(forms["v2"](), forms["reference-cpu"](), atol=1e-4)
    return [
        {
            "layer": name,
            "batch": batch,
            "cin": cin,
            "cout": cout,
            "res_in": res,
            "sec_fwd_bwd": round(t, 3),
            "conv_gflop_fwd": round(flops[name] / 1e9, 2),
            "v2_equals_reference_cpu": same,
            "torch_threads": torch.get_num_threads(),
        }
        for name, t in out.items()
    ]


# ------------------------------------------------------------------------ ghosts step vs the reference step

PHASES = ("Gmain", "Greg", "Dmain", "Dreg")


def _anchor_like(G, D, opts):
    """The reference-step anchor with ghosts' weights loaded under the reference's names."""
    from benchmarks.baselines import stylegan2_ada_fp32 as ref

    g, d = network_kwargs(opts)
    # The same shape; the anchor has no labels (c_dim 0 here), so no label mapping, and no reduced precision.
    ghosts_only = ("c_dim", "num_reduced_res")
    aG = ref.Generator(**{k: v for k, v in g.items() if k not in ghosts_only})
    aD = ref.Discriminator(**{k: v for k, v in d.items() if k not in (*ghosts_only, "mapping_layers")})
    ref.load_reference_state(aG, ref.reference_names(G.state_dict(), opts.resolution, "G"))
    ref.load_reference_state(aD, ref.reference_names(D.state_dict(), opts.resolution, "D"))
    step = ref.ReferenceStep(
        aG,
        aD,
        lr=opts.glr,
        betas=opts.betas,
        r1_gamma=opts.gamma,
        pl_weight=opts.pl_weight,
        style_mixing_prob=opts.style_mixing_prob,
        g_reg_interval=opts.g_reg_interval,
        d_reg_interval=opts.d_reg_interval,
        batch=opts.batch,
        ema_kimg=opts.ema_kimg,
    )
    return step


def _check_same_networks(G, D, step, z) -> dict:
    """ghosts and the anchor compute the same images and logits for the same weights (train and eval forms of
    the anchor's modulated convolution both); raises if not."""
    with torch.no_grad():
        img = G(z, None, noise_mode="const")
        logits = D(img, None)
        step.G.eval()
        a_eval = step.G(z, 1.0, "const")
        step.G.train()
        step.G.mapping.eval()  # no w_avg update in this check
        a_train = step.G(z, 1.0, "const")
        step.G.mapping.train()
        a_logits = step.D(img)
    err = {
        "G_maxabs_vs_anchor_fused": float((img - a_eval).abs().max()),
        "G_maxabs_vs_anchor_unfused": float((img - a_train).abs().max()),
        "D_maxabs_vs_anchor": float((logits - a_logits).abs().max()),
        "image_maxabs": float(img.abs().max()),
    }
    if (
        max(err["G_maxabs_vs_anchor_fused"], err["G_maxabs_vs_anchor_unfused"])
        > 1e-4 * max(1.0, err["image_maxabs"])
        or err["D_maxabs_vs_anchor"] > 1e-4
    ):
        raise SystemExit(f"ghosts and the reference anchor differ: {err}")
    return err


def _ghosts_step(G, D, G_ema, loss, opt_G, opt_D, opts, real, n, times: dict) -> None:
    """One minibatch with all four phases, as training.loop runs them (batch_idx 0), each phase timed."""

    def g_main():
        _set_trainable(G, True)
        _set_trainable(D, False)
        opt_G.zero_grad(set_to_none=True)
        loss.accumulate_G_main(loss.random.randn(n, G.z_dim), None)
        opt_G.step()

    def g_reg():
        opt_G.zero_grad(set_to_none=True)
        loss.accumulate_G_reg(loss.random.randn(n, G.z_dim), None, gain=opts.g_reg_interval)
        opt_G.step()

    def d_main():
        _set_trainable(G, False)
        _set_trainable(D, True)
        opt_D.zero_grad(set_to_none=True)
        loss.accumulate_D_main(real, None, loss.random.randn(n, G.z_dim), None)
        opt_D.step()

    def d_reg():
        opt_D.zero_grad(set_to_none=True)
        loss.accumulate_D_reg(real, None, gain=opts.d_reg_interval)
        opt_D.step()
        _set_trainable(D, False)

    def ema():
        update_ema(G_ema, G, ema_beta(opts, cur_nimg=10**9))  # past the ramp-up, as the anchor's step

    for name, fn in zip((*PHASES, "ema"), (g_main, g_reg, d_main, d_reg, ema)):
        _timed(times, name, fn)


def _timed(times: dict, name: str, fn) -> None:
    """Wall time and this process's CPU time (all threads) of fn(); CPU time moves less with other load."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    times.setdefault(name, []).append(time.perf_counter() - t0)
    times.setdefault(name + "_cpu", []).append(time.process_time() - c0)


def _anchor_step(step, real, n, z_dim, times: dict) -> None:
    for i, name in enumerate(PHASES):
        _timed(times, name, lambda i=i: step.run_phase(i, real, torch.randn(n, z_dim)))
    _timed(times, "ema", lambda: step.update_ema(cur_nimg=10**9))


def _summary(times: dict, opts) -> dict:
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {}
    for suffix in ("", "_cpu"):
        m = {k: med[k + suffix] for k in (*PHASES, "ema")}
        # Lazy regularisation in proportion: G reg every g_reg_interval minibatches, D reg every
        # d_reg_interval; a "full" step is one that runs all four phases.
        amortised = m["Gmain"] + m["Dmain"] + m["ema"]
        amortised += m["Greg"] / opts.g_reg_interval + m["Dreg"] / opts.d_reg_interval
        out[f"step{suffix}_s"] = round(amortised, 3)
        out[f"full_step{suffix}_s"] = round(sum(m.values()), 3)
        out.update({f"{k}{suffix}_s": round(v, 3) for k, v in m.items()})
    return out


def compare_with_reference(
    res: int, cbase: int, cmax: int, *, batch: int, reps: int, compile: bool, tmp: Path
) -> dict:
    """Median step times of ghosts and of the reference anchor, run by run alternating, same weights."""
    from training.loss import SharedRandom

    archive = make_archive(tmp, n=max(64, batch), res=res, name=f"cmp{res}")
    opts = build_options(
        archive, tmp / "runs", batch=batch, cbase=cbase, cmax=cmax, aug="noaug", metrics="none", device="cpu"
    )
    assert opts.resolution == res and opts.c_dim == 0  # the archive made above: res px, no labels
    torch.manual_seed(0)
    G, D = new_networks(opts)
    with torch.no_grad():  # "trained-like": biases and noise strengths off zero so the check sees them
        for p in [*G.parameters(), *D.parameters()]:
            if not p.any():
                p.normal_(0, 0.1)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    step = _anchor_like(G, D, opts)
    z = torch.randn(batch, opts.z_dim)
    check = _check_same_networks(G, D, step, z)

    loss, opt_G, opt_D = new_loss_and_optimizers(G, D, None, SharedRandom(opts.seed), opts, compile=compile)
    real = torch.rand(batch, opts.channels, res, res) * 2 - 1
    n = batch
    runs = {
        "ghosts": lambda t: _ghosts_step(G, D, G_ema, loss, opt_G, opt_D, opts, real, n, t),
        "reference": lambda t: _anchor_step(step, real, n, opts.z_dim, t),
    }
    t0 = time.perf_counter()
    runs["ghosts"]({})  # warm-up (and, with --compile, the compilation)
    warm_ghosts = time.perf_counter() - t0
    runs["reference"]({})
    times = {"ghosts": {}, "reference": {}}
    for r in range(reps):
        order = ("ghosts", "reference") if r % 2 == 0 else ("reference", "ghosts")
        for name in order:
            runs[name](times[name])
            done = {k: round(v[-1], 3) for k, v in times[name].items()}
            print(f"# {res} px rep {r + 1}/{reps} {name}: {done}", file=sys.stderr, flush=True)
    out = {name: _summary(t, opts) for name, t in times.items()}
    return {
        "res": res,
        "cbase": cbase,
        "cmax": cmax,
        "batch": batch,
        "map_layers": opts.map_layers,
        "reps": reps,
        "compile": compile,
        "ghosts": out["ghosts"],
        "reference": out["reference"],
        "ratio_ghosts_over_reference": round(out["ghosts"]["step_s"] / out["reference"]["step_s"], 3),
        "ratio_cpu_time": round(out["ghosts"]["step_cpu_s"] / out["reference"]["step_cpu_s"], 3),
        "ghosts_first_step_s": round(warm_ghosts, 1),
        "same_networks": check,
        "torch_threads": torch.get_num_threads(),
        "load_avg": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", default="32,64,128", help="comma list of resolutions")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="minibatches in the measured tick")
    ap.add_argument("--cbase", type=int, default=None, help="default: the auto config (16384 below 512 px)")
    ap.add_argument("--cmax", type=int, default=None)
    ap.add_argument("--devices", default=None, help="comma list; default cpu plus cuda when present")
    ap.add_argument("--layer", action="store_true", help="time the up-sampling convolution forms instead")
    ap.add_argument(
        "--layer-shape", default="2,512,256,32", help="batch,cin,cout,input resolution for --layer"
    )
    ap.add_argument(
        "--vs-reference",
        action="store_true",
        help="time ghosts' step against the reference anchor (benchmarks/baselines/stylegan2_ada_fp32.py)",
    )
    ap.add_argument(
        "--configs",
        default="32:1024:64,64:16384:512",
        help="for --vs-reference: comma list of res:cbase:cmax",
    )
    ap.add_argument("--reps", type=int, default=5, help="for --vs-reference: timed steps per implementation")
    ap.add_argument("--compile", action="store_true", help="for --vs-reference: ghosts with torch.compile")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.vs_reference:
        with tempfile.TemporaryDirectory() as tmp:
            for cfg in args.configs.split(","):
                res, cbase, cmax = (int(v) for v in cfg.split(":"))
                row = compare_with_reference(
                    res, cbase, cmax, batch=args.batch, reps=args.reps, compile=args.compile, tmp=Path(tmp)
                )
                print(json.dumps(row), flush=True)
        return
    if args.layer:
        b, cin, cout, res = (int(v) for v in args.layer_shape.split(","))
        for row in measure_layer(b, cin, cout, res, reps=max(args.steps // 2, 2)):
            print(json.dumps(row), flush=True)
        return
    devices = (
        args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    sizes = {"batch": args.batch, "steps": args.steps, "cbase": args.cbase, "cmax": args.cmax}  # for each run
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for res in (int(r) for r in args.res.split(",")):
                print(json.dumps(measure(res, device, tmp=Path(tmp), **sizes)), flush=True)


if __name__ == "__main__":
    main()
