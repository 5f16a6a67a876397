"""Benchmark: `ghosts pack` as a whole command against a dataset_tool-like packer (the anchor), side by side.

The folder is N aligned faces at 256 px, written as `ghosts align` writes them (PNG, zlib level 4): faces
found in the test photos and in synthetic posts, aligned with alignment.align_face, and repeated with small
shifts and flips until there are N distinct images. Each command runs in its own process (start-up included),
the two alternate, and the medians of --repeat runs are reported with their ratio.

    python benchmarks/pack_command_bench.py [--count 300] [--size 256] [--repeat 5] [--json out.json]

The anchor is benchmarks/baselines/dataset_tool_like.py (Pillow open, RGB, PNG at compress_level 0, stored zip).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.commands import GHOSTS, Command, alternate, baseline, print_table, run_once, table

FACES = REPO.parent / "shared" / "testdata" / "faces"


def make_aligned_faces(folder: Path, count: int, size: int, seed: int = 0) -> int:
    """`count` distinct aligned faces at `size` px in `folder`, as `ghosts align` would write them."""
    from alignment.align import align_face, ffhq_quad
    from alignment.detect import detect_faces
    from alignment.files import encode_png
    from curation.catalog.imaging import load_rgb

    rng = np.random.default_rng(seed)
    faces = []
    for name in (
        "bald_guys.jpg",
        "Tom_Cruise_avp_2014_4.jpg",
        "2008_002506.jpg",
        "2009_004587.jpg",
        "2008_001322.jpg",
        "2008_007676.jpg",
    ):
        rgb = load_rgb(FACES / name)
        faces += [(rgb, ffhq_quad(d.landmarks)) for d in detect_faces(rgb)]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rgb, quad = faces[i % len(faces)]
        side = np.linalg.norm(quad[3] - quad[0])
        # Distinct images: the quad shifted, scaled and turned a little (a different framing of the face).
        jitter = quad + rng.normal(0, 0.02 * side, 2)
        centre = jitter.mean(axis=0)
        jitter = centre + (jitter - centre) * rng.uniform(0.95, 1.05)
        out = align_face(rgb, jitter, size)
        if rng.random() < 0.5:
            out = out[:, ::-1]
        (folder / f"face{i:05d}.png").write_bytes(encode_png(out))
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pack-cmd-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "aligned"
        make_aligned_faces(src, args.count, args.size)
        mb = sum(f.stat().st_size for f in src.iterdir()) / 1e6
        print(
            f"{args.count} aligned {args.size}-px PNGs, {mb:.1f} MB; load average {os.getloadavg()}",
            flush=True,
        )
        anchor_zip, ghosts_zip = tmp / "anchor.zip", tmp / "ghosts.zip"
        anchor = Command(
            "dataset_tool-like packer (anchor)",
            baseline("dataset_tool_like.py", src, anchor_zip),
        )
        ghosts = Command("ghosts pack", [GHOSTS, "pack", str(src), "--out", str(ghosts_zip), "--overwrite"])
        run_once(ghosts.argv)  # warm the file cache for both
        first = ghosts_zip.read_bytes()
        alternate([anchor, ghosts], args.repeat)
        reproducible = ghosts_zip.read_bytes() == first
        verify = run_once([GHOSTS, "verify", str(ghosts_zip)])[3].strip().splitlines()[-1]
        rows = table([anchor, ghosts], anchor)
        print_table(rows, f"medians of {args.repeat} alternating runs (whole commands)")
        print(
            f"archives: anchor {anchor_zip.stat().st_size / 1e6:.1f} MB, ghosts {ghosts_zip.stat().st_size / 1e6:.1f}"
            f" MB; ghosts byte-identical across runs: {reproducible}; verify: {verify}"
        )
        report = {
            "inputs": f"{args.count} aligned {args.size}-px PNGs ({mb:.1f} MB)",
            "repeat": args.repeat,
            "rows": rows,
            "reproducible": reproducible,
            "anchor_mb": anchor_zip.stat().st_size / 1e6,
            "ghosts_mb": ghosts_zip.stat().st_size / 1e6,
            "load_average_after": os.getloadavg(),
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
