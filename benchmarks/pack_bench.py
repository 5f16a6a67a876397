"""Benchmark: `ghosts pack` against a plain serial pack of the same folder.

The plain pack is what a straightforward script (or StyleGAN2-ADA's dataset_tool.py) does: for each file, open,
upright, convert, save a PNG with Pillow's defaults, append it to a stored zip, one after another. `ghosts pack`
decodes and encodes on a thread pool with a faster fixed zlib level. Both are also run in the two mixed
settings, so the table shows what the threads and the zlib level each contribute.

    python benchmarks/pack_bench.py [--count 240] [--size 512] [--format jpg] [--repeat 3] [--json]

The inputs are crops of a test photo (../shared/testdata/faces), written to a temp folder.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.catalog.workers import default_workers
from curation.datasets.format import archive_name
from curation.datasets.pack import pack_folder
from curation.sources.ingest import collect_files

PHOTO = REPO.parent / "shared" / "testdata" / "faces" / "bald_guys.jpg"


def make_inputs(folder: Path, count: int, size: int, fmt: str, seed: int = 0) -> None:
    if not PHOTO.exists():
        sys.exit(
            f"test photo missing: {PHOTO} (the benchmark reads ../shared/testdata/faces beside the repo)"
        )
    src = Image.open(PHOTO).convert("RGB")
    rng = np.random.default_rng(seed)
    for i in range(count):
        side = int(rng.integers(300, 900))
        x, y = int(rng.integers(0, src.width - side)), int(rng.integers(0, src.height - side))
        im = src.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.LANCZOS)
        if fmt == "jpg":
            im.save(folder / f"{i:05d}.jpg", quality=95)
        else:
            im.save(folder / f"{i:05d}.png")


def plain_pack(src: Path, out: Path, compress_level: int = 6) -> None:
    """The serial baseline: one file at a time, Pillow's default PNG settings unless told otherwise."""
    files, _ = collect_files([src], recursive=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for i, f in enumerate(files):
            im = ImageOps.exif_transpose(Image.open(f)).convert("RGB")
            buf = io.BytesIO()
            im.save(buf, "PNG", compress_level=compress_level)
            z.writestr(archive_name(i), buf.getvalue())
        z.writestr("dataset.json", json.dumps({"labels": None}))


def timed_round_robin(settings: dict, repeat: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each setting, run in turn `repeat` times, so a burst of load on a shared machine
    hits every setting alike rather than one of them. CPU / wall is how many cores the setting kept busy."""
    runs: dict[str, list[tuple[float, float]]] = {label: [] for label in settings}
    for _ in range(repeat):
        for label, (_, fn) in settings.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            runs[label].append((time.perf_counter() - t0, time.process_time() - c0))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=240, help="number of images")
    ap.add_argument("--size", type=int, default=512, help="side of the (square) images in px")
    ap.add_argument("--format", choices=["jpg", "png"], default="jpg", help="format of the inputs")
    ap.add_argument("--repeat", type=int, default=3, help="runs per setting (the median is reported)")
    ap.add_argument(
        "--workers", type=int, default=None, help="threads for ghosts pack (default: one per core)"
    )
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    workers = args.workers or default_workers()

    with tempfile.TemporaryDirectory(prefix="pack-bench-") as tmp:
        tmp = Path(tmp)
        src = tmp / "in"
        src.mkdir()
        make_inputs(src, args.count, args.size, args.format)
        outs = {k: tmp / f"{k}.zip" for k in ("plain", "plain3", "serial", "ghosts")}
        settings = {
            "plain serial pack (Pillow default zlib 6)": ("plain", lambda: plain_pack(src, outs["plain"], 6)),
            "plain serial pack, zlib 3": ("plain3", lambda: plain_pack(src, outs["plain3"], 3)),
            "ghosts pack, 1 thread": (
                "serial",
                lambda: pack_folder(src, outs["serial"], workers=1, overwrite=True, progress=False),
            ),
            f"ghosts pack, {workers} threads": (
                "ghosts",
                lambda: pack_folder(src, outs["ghosts"], workers=workers, overwrite=True, progress=False),
            ),
        }
        rows = []
        load_before = os.getloadavg()
        all_runs = timed_round_robin(settings, args.repeat)
        for label, (key, _) in settings.items():
            runs = [w for w, _ in all_runs[label]]
            median = statistics.median(runs)
            busy = statistics.median(c / w for w, c in all_runs[label])
            rows.append(
                {
                    "setting": label,
                    "seconds": round(median, 3),
                    "runs": [round(r, 3) for r in runs],
                    "cores_busy": round(busy, 2),
                    "images_per_s": round(args.count / median, 1),
                    "archive_mb": round(outs[key].stat().st_size / 1e6, 2),
                }
            )
    base = rows[0]["seconds"]
    for r in rows:
        r["speedup"] = round(base / r["seconds"], 2)
    report = {
        "inputs": f"{args.count} {args.format.upper()} images, {args.size}x{args.size}",
        "cpus": default_workers(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{report['inputs']}; {report['cpus']} CPUs available; load average before {report['load_average_before']}"
        f", after {report['load_average_after']}"
    )
    print(f"{'setting':45s} {'median s':>9s} {'img/s':>7s} {'cores busy':>10s} {'MB':>7s} {'speedup':>8s}")
    for r in rows:
        print(
            f"{r['setting']:45s} {r['seconds']:9.2f} {r['images_per_s']:7.1f} {r['cores_busy']:10.2f} "
            f"{r['archive_mb']:7.1f} {r['speedup']:7.2f}x"
        )


if __name__ == "__main__":
    main()
