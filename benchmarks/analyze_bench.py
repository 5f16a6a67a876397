"""Benchmark: `ghosts analyze` as a whole command on a workspace of Instagram-sized photos.

The workspace is built from the synthetic source's material (scikit-image's astronaut and cameraman pasted
with feathered edges onto its other sample photos, as `curation.sources.synthetic` does for the demo), at
Instagram's portrait size, 1080 x 1350, with 0 to 3 faces per photo (a quarter each), each head 18-45% of the
photo's width, rolled up to +-25 degrees, colour-cast, JPEG quality 80-95. It is imported with
`ghosts import` (the one ingest path), then analysed with `ghosts analyze --target-size 256` in a fresh
process, timed from start to exit (start-up, model loading, catalog writes and previews included).

    python benchmarks/analyze_bench.py [--photos 10000] [--keep DIR] [--reuse DIR] [--no-identities]
                                       [--json out.json]

--photos 500 is enough to iterate; the figure for the issue is the full 10,000. --reuse DIR times analysis of
a workspace built earlier (its analysis is reset first, so the same photos are analysed again); --build-only
builds the --keep workspace and stops. Printed: the whole command's wall time, CPU time (all its processes)
and CPU per photo, and the wall time and rate of each phase (faces found and recorded; then, with
identities, the descriptors).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.commands import GHOSTS, run_once

SIZE = (1080, 1350)


def _heads():
    from curation.sources.synthetic import ASTRONAUT_HEAD, CAMERAMAN_HEAD, _sample

    return _sample("astronaut").crop(ASTRONAUT_HEAD), _sample("camera").crop(CAMERAMAN_HEAD)


def make_photo(i: int, folder: str, seed: int = 0) -> int:
    """Photo number i (deterministic): a background filling 1080 x 1350 and 0-3 pasted heads; the count."""
    from PIL import Image, ImageDraw, ImageFilter, ImageOps

    from curation.sources.synthetic import BACKGROUNDS, _sample

    global _CACHE
    if "_CACHE" not in globals():
        _CACHE = {"heads": _heads()}
    rng = np.random.default_rng([seed, i])
    name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    if name not in _CACHE:
        _CACHE[name] = _sample(name)
    bg = ImageOps.fit(
        _CACHE[name],
        SIZE,
        Image.Resampling.BICUBIC,
        centering=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.2, 0.8))),
    )
    n = int(rng.integers(0, 4))
    astronaut, cameraman = _CACHE["heads"]
    for k in range(n):
        head = (
            cameraman if rng.random() < 1 / 6 else astronaut
        )  # the cameraman's profile: missed, as in the demo
        side = int(SIZE[0] * rng.uniform(0.18, 0.45))
        h = head.resize((side, side), Image.Resampling.LANCZOS)
        if rng.random() < 0.5:
            h = ImageOps.mirror(h)
        arr = np.asarray(h).astype(np.float32) * rng.uniform(0.7, 1.25, 3) + rng.uniform(-20, 20)
        h = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        mask = Image.new("L", h.size, 0)
        ImageDraw.Draw(mask).ellipse((side * 0.06, side * 0.02, side * 0.94, side * 0.98), fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(side * 0.05))
        angle = float(rng.uniform(-25, 25))
        h, mask = (im.rotate(angle, Image.Resampling.BICUBIC, expand=True) for im in (h, mask))
        # Heads side by side in bands so that they overlap little.
        band = SIZE[0] // n
        x = int(band * k + rng.integers(0, max(1, band - h.width // 2)))
        x = min(x, SIZE[0] - h.width)
        y = int(rng.integers(0, SIZE[1] - h.height))
        bg.paste(h, (max(x, 0), y), mask)
    bg.save(Path(folder) / f"post{i:05d}.jpg", quality=int(rng.integers(80, 96)))
    return n


def build(root: Path, photos: int) -> dict:
    folder = root / "posts"
    folder.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        heads = list(pool.map(make_photo, range(photos), [str(folder)] * photos, chunksize=32))
    made = time.perf_counter() - t
    data = root / "data"
    run_once([GHOSTS, "init", "--data", str(data)])
    t = time.perf_counter()
    run_once([GHOSTS, "import", str(folder), "--data", str(data)])
    imported = time.perf_counter() - t
    print(
        f"built {photos} photos ({sum(heads)} heads pasted, {heads.count(0)} photos without) in {made:.0f} s, "
        f"imported in {imported:.0f} s",
        flush=True,
    )
    return {"photos": photos, "heads_pasted": sum(heads), "photos_without_head": heads.count(0)}


def reset_analysis(data: Path) -> None:
    """Forget every analysis result, so that the same photos are analysed again."""
    db = sqlite3.connect(data / "catalog.sqlite")
    db.execute("PRAGMA foreign_keys=ON")
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    for t in ("decisions", "faces"):
        if t in tables:
            db.execute(f"DELETE FROM {t}")
    db.execute("UPDATE images SET status='new' WHERE status IN ('analyzed', 'no_face', 'error')")
    db.commit()
    db.close()
    shutil.rmtree(data / "previews", ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=10000)
    ap.add_argument("--keep", type=Path, default=None, help="build the workspace here and keep it")
    ap.add_argument("--reuse", type=Path, default=None, help="a workspace folder built with --keep")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument(
        "--no-identities", action="store_true", help="time `ghosts analyze --no-identities` (no descriptors)"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--build-only", action="store_true", help="build (and import) the --keep workspace, no timing"
    )
    args = ap.parse_args()
    tmp = None
    if args.reuse:
        root = args.reuse
        reset_analysis(root / "data")
        built = {"photos": len(list((root / "posts").glob("*.jpg")))}
    else:
        root = args.keep or Path(tmp := tempfile.mkdtemp(prefix="analyze-bench-"))
        built = build(root, args.photos)
        if args.build_only:
            return
    argv = [GHOSTS, "analyze", "--target-size", "256", "--json", "--data", str(root / "data")]
    if args.workers:
        argv += ["--workers", str(args.workers)]
    if args.no_identities:
        argv.append("--no-identities")
    load = os.getloadavg()
    wall, cpu, peak, out = run_once(argv)
    summary = json.loads(out[out.index("{") :])
    n = built["photos"]
    report = built | {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_mb": round(peak),
        "photos_per_s": round(n / wall, 2),
        "cpu_ms_per_photo": round(cpu / n * 1000),  # less sensitive to a busy machine than the rate
        "identities": not args.no_identities,
        "projected_10000_s": round(wall / n * 10000),
        "load_average_before": load,
        "summary": {
            k: summary.get(k) for k in ("images", "analyzed", "no_face", "error", "faces", "flagged")
        },
    }
    # The two phases of the command (wall, inside it): the faces found and recorded, then the descriptors.
    faces_s = summary.get("faces_seconds") or 0.0
    report["faces_phase"] = {"wall_s": faces_s, "photos_per_s": round(n / faces_s, 2) if faces_s else None}
    ids = summary.get("identities")
    if ids:
        d = ids.get("describe_seconds") or 0.0
        report["descriptor_phase"] = {
            "wall_s": d,
            "faces_described": ids.get("described"),
            "faces_per_s": round(ids["described"] / d, 2) if d else None,
            "photos_per_s": round(summary.get("analyzed", 0) / d, 2) if d else None,
        }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
