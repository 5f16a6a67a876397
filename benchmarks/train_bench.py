"""Training speed: seconds per kimg and per G+D minibatch at 32/64/128 px, measured by the real training
loop (all four phases, lazy regularisation included in proportion) on a synthetic archive.

    python benchmarks/train_bench.py                      # CPU (and CUDA when present)
    python benchmarks/train_bench.py --res 32 --cbase 2048 --cmax 64 --batch 8
    python benchmarks/train_bench.py --layer                  # the up-sampling convolution, three forms

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
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.training.archives import make_archive
from training.config import build_options
from training.loop import train
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
    args = ap.parse_args()
    if args.layer:
        b, cin, cout, res = (int(v) for v in args.layer_shape.split(","))
        for row in measure_layer(b, cin, cout, res, reps=max(args.steps // 2, 2)):
            print(json.dumps(row), flush=True)
        return
    devices = (
        args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for res in (int(r) for r in args.res.split(",")):
                row = measure(
                    res,
                    device,
                    batch=args.batch,
                    steps=args.steps,
                    cbase=args.cbase,
                    cmax=args.cmax,
                    tmp=Path(tmp),
                )
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
