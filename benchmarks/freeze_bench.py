"""Benchmark: `ghosts freeze` of N faces at 256 px from their original photos, against `ghosts pack` of the
same N aligned faces, both as whole commands.

A workspace of Instagram-sized synthetic posts (benchmarks/analyze_bench.py) is built and analysed; the N
best faces are accepted with the auto-accept rule `max=N`; `ghosts freeze --resolution 256` then decodes each
original photo once and aligns, checks and encodes its accepted faces. The faces of the frozen archive are
written out as PNG files and packed with `ghosts pack`: the same faces, from prepared files.

    python benchmarks/freeze_bench.py [--faces 1000] [--photos 700] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.analyze_bench import build
from benchmarks.commands import GHOSTS, run_once


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--faces", type=int, default=1000)
    ap.add_argument("--photos", type=int, default=700, help="posts to build (about 1.5 faces found per post)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="freeze-bench-"))
    data = root / "data"
    if not data.exists():
        build(root, args.photos)
        run_once([GHOSTS, "analyze", "--target-size", "256", "--json", "--data", str(data)])
    from curation.catalog.workspace import open_workspace
    from curation.review.autoaccept import apply_rule

    accepted = apply_rule(open_workspace(data), f"max={args.faces}").accepted_total
    print(f"{accepted} faces accepted; load average {os.getloadavg()}", flush=True)
    freeze_runs, pack_runs = [], []
    faces_dir = root / "faces"
    for i in range(args.repeat):
        shutil.rmtree(data / "datasets", ignore_errors=True)
        wall, cpu, peak, _ = run_once(
            [GHOSTS, "freeze", "--name", "bench", "--resolution", "256", "--json", "--data", str(data)]
        )
        freeze_runs.append((wall, cpu, peak))
        if i == 0:
            (archive,) = (data / "datasets").rglob("*.zip")
            shutil.rmtree(faces_dir, ignore_errors=True)
            faces_dir.mkdir()
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if name.endswith(".png"):
                        (faces_dir / name.replace("/", "_")).write_bytes(z.read(name))
        wall_p, cpu_p, peak_p, _ = run_once(
            [GHOSTS, "pack", str(faces_dir), "--out", str(root / "packed.zip"), "--overwrite", "--json"]
        )
        pack_runs.append((wall_p, cpu_p, peak_p))
        print(
            f"  run {i + 1}/{args.repeat}  freeze {wall:6.2f} s wall {cpu:6.2f} s CPU   pack {wall_p:6.2f} s wall "
            f"{cpu_p:6.2f} s CPU",
            flush=True,
        )
    med = {
        k: statistics.median(r[0] for r in runs) for k, runs in (("freeze", freeze_runs), ("pack", pack_runs))
    }
    report = {
        "faces": accepted,
        "freeze_wall_s": round(med["freeze"], 2),
        "pack_wall_s": round(med["pack"], 2),
        "freeze_cpu_s": round(statistics.median(r[1] for r in freeze_runs), 2),
        "pack_cpu_s": round(statistics.median(r[1] for r in pack_runs), 2),
        "freeze_over_pack": round(med["freeze"] / med["pack"], 2),
        "load_average_after": os.getloadavg(),
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
