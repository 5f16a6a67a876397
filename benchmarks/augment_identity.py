"""What the reference's augment pipe does at p = 0 and ghosts skips: the geometric resampling round trip
(reflect padding, sym6 2x up-sampling, bilinear grid sampling at the identity, 2x down-sampling) on real
photos. Prints the pixel difference it makes (max/mean abs, images in [-1, 1]) and its forward + backward time
against the skipped path. Usage: python benchmarks/augment_identity.py [FOLDER] [--res 64] [--batch 8]"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.augment import AugmentPipe


def load(folder: Path, res: int, batch: int) -> torch.Tensor:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:batch]
    imgs = []
    for f in files:
        im = Image.open(f).convert("RGB")
        side = min(im.size)
        im = im.crop((0, 0, side, side)).resize((res, res), Image.LANCZOS)
        imgs.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1)
    return torch.from_numpy(np.stack(imgs))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", nargs="?", default="../shared/testdata/faces")
    ap.add_argument("--res", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    x = load(Path(args.folder), args.res, args.batch)
    pipe = AugmentPipe.from_name("bgc")
    eye = torch.eye(3).expand(x.shape[0], 3, 3)
    with torch.no_grad():
        y = pipe.apply_geometric(x, eye)
    d = (y - x).abs()
    print(
        f"{x.shape[0]} photos at {args.res} px: identity round trip max abs {d.max():.3g}, mean abs {d.mean():.3g}"
    )

    def run(fn):
        times = []
        for _ in range(args.repeats):
            xi = x.clone().requires_grad_(True)
            t0 = time.perf_counter()
            fn(xi).square().sum().backward()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    skipped, trip = [], []
    for _ in range(3):  # alternate the two, run by run
        skipped.append(run(lambda xi: xi))
        trip.append(run(lambda xi: pipe.apply_geometric(xi, eye)))
    print(
        f"forward+backward per batch: round trip {statistics.median(trip):.2f} ms, skipped {statistics.median(skipped):.3f} ms"
    )


if __name__ == "__main__":
    main()
