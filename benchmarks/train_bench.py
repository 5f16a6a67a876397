"""Training speed: seconds per kimg and per G+D minibatch at 32/64/128 px, measured by the real training
loop (all four phases, lazy regularisation included in proportion) on a synthetic archive.

    python benchmarks/train_bench.py                      # CPU (and CUDA when present)
    python benchmarks/train_bench.py --res 32 --cbase 2048 --cmax 64 --batch 8

The first minibatch (warm-up) is its own tick and is left out; the figure is the second tick.
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


def measure(res: int, device: str, *, batch: int, steps: int, cbase: int | None, cmax: int | None,
            tmp: Path) -> dict:
    archive = make_archive(tmp, n=max(64, batch), res=res, name=f"bench{res}")
    opts = build_options(archive, tmp / f"runs-{device}", batch=batch, kimg=batch * (1 + steps) / 1000,
                         tick_kimg=batch * steps / 1000, cbase=cbase, cmax=cmax, workers=0 if device == "cpu" else 2,
                         metrics="none", snap=0, device=device)
    t0 = time.time()
    result = train(opts)
    rows = read_stats(result.run_dir / "stats.jsonl")
    sec_per_kimg = rows[-1]["Timing/sec_per_kimg"]["mean"]
    return {"res": res, "device": device, "batch": batch, "steps": steps, "cbase": opts.cbase, "cmax": opts.cmax,
            "sec_per_kimg": round(sec_per_kimg, 2), "sec_per_step": round(sec_per_kimg * batch / 1000, 3),
            "wall_s": round(time.time() - t0, 1), "torch_threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", default="32,64,128", help="comma list of resolutions")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4, help="minibatches in the measured tick")
    ap.add_argument("--cbase", type=int, default=None, help="default: the auto config (16384 below 512 px)")
    ap.add_argument("--cmax", type=int, default=None)
    ap.add_argument("--devices", default=None, help="comma list; default cpu plus cuda when present")
    args = ap.parse_args()
    devices = args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    with tempfile.TemporaryDirectory() as tmp:
        for device in devices:
            for res in (int(r) for r in args.res.split(",")):
                row = measure(res, device, batch=args.batch, steps=args.steps, cbase=args.cbase, cmax=args.cmax,
                              tmp=Path(tmp))
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
