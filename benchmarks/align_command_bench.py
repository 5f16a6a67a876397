"""Benchmark: `ghosts align` as a whole command against the plain FFHQ recipe (the anchor), side by side.

The folder mixes the shared test photos (9 PASCAL photos, a portrait, a 24-face collage, dogs without a face)
with synthetic Instagram-sized posts (1080 x 1350, 0-3 faces: scikit-image's astronaut and cameraman pasted at
random roll, scale and position onto its other sample photos; see benchmarks/analyze_bench.py).

The anchor is benchmarks/baselines/ffhq_recipe_folder.py (HOG with one upsample on the full photo, 68
landmarks, the plain recipe, Pillow PNGs). It is timed two ways: as a whole command, and its loop alone
("in-process": its imports and model loading left out, which favours it). `ghosts align` is timed as a whole
command only (start-up, imports and model loading included). Runs alternate; medians of --repeat.

    python benchmarks/align_command_bench.py [--posts 24] [--size 256] [--repeat 5] [--workers N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.commands import GHOSTS, Command, baseline, print_table, run_once, table

FACES = REPO.parent / "shared" / "testdata" / "faces"


def make_folder(folder: Path, posts: int, seed: int = 0) -> int:
    """The mixed folder: every shared test photo plus `posts` synthetic 1080 x 1350 posts with 0-3 faces."""
    from benchmarks.analyze_bench import make_photo

    folder.mkdir(parents=True, exist_ok=True)
    for f in sorted(FACES.glob("*.jpg")):
        shutil.copy(f, folder / f.name)
    for i in range(posts):
        make_photo(i, str(folder), seed=seed + 1)
    return len(list(FACES.glob("*.jpg"))) + posts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--posts", type=int, default=24, help="synthetic posts added to the 12 shared photos")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--workers", type=int, default=None, help="ghosts align --workers (default: its own)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="align-cmd-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "photos"
        n = make_folder(src, args.posts)
        print(f"{n} photos; load average {os.getloadavg()}", flush=True)
        out_a, out_g = tmp / "recipe", tmp / "ghosts"
        recipe = Command(
            "plain FFHQ recipe, whole command",
            baseline("ffhq_recipe_folder.py", src, out_a, args.size),
        )
        argv = [GHOSTS, "align", str(src), "--out", str(out_g), "--size", str(args.size)]
        if args.workers:
            argv += ["--workers", str(args.workers)]
        ghosts = Command("ghosts align, whole command", argv)
        in_process: list[float] = []
        run_once(ghosts.argv)  # warm the file cache
        for i in range(args.repeat):
            for c in (recipe, ghosts):
                shutil.rmtree(out_a if c is recipe else out_g, ignore_errors=True)
                wall, cpu, peak, text = run_once(c.argv)
                c.runs.append((wall, cpu, peak))
                if c is recipe:
                    in_process.append(float(re.search(r"in-process seconds: ([\d.]+)", text).group(1)))
                print(
                    f"  run {i + 1}/{args.repeat}  {c.label:36s} {wall:7.2f} s wall  {cpu:7.2f} s CPU  "
                    f"{peak:6.0f} MB",
                    flush=True,
                )
        rows = table([recipe, ghosts], recipe)
        print_table(rows, f"medians of {args.repeat} alternating runs")
        loop = statistics.median(in_process)
        faces_a, faces_g = len(list(out_a.glob("*.png"))), len(list(out_g.glob("*.png")))
        print(
            f"plain recipe in-process (its loop alone): {loop:.2f} s; ghosts align whole command / that: "
            f"{loop / ghosts.median(0):.2f}x faster"
        )
        print(f"faces written: recipe {faces_a}, ghosts {faces_g}")
        report = {
            "photos": n,
            "size": args.size,
            "repeat": args.repeat,
            "rows": rows,
            "recipe_in_process_s": round(loop, 3),
            "speedup_vs_recipe_in_process": round(loop / ghosts.median(0), 2),
            "faces_recipe": faces_a,
            "faces_ghosts": faces_g,
            "cpus": os.cpu_count(),
        }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
