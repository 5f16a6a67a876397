"""Benchmark: `ghosts freeze` of N faces at 256 px from their original photos, against `ghosts pack` of the
same N aligned faces, both as whole commands.

A workspace of Instagram-sized synthetic posts (benchmarks/analyze_bench.py) is built and analysed; the N
best faces are accepted with the auto-accept rule `max=N`; `ghosts freeze --resolution 256` then decodes each
original photo once and aligns, checks and encodes its accepted faces. The faces of the frozen archive are
written out as PNG files and packed with `ghosts pack`: the same faces, from prepared files.

Each run times, as whole commands: a cold freeze (no crop cache), the pack, the prerender that `ghosts review`
runs in the background as faces are accepted (the render cost moved to acceptance), and a warm freeze that
takes every crop from the cache. The archives of the cold and warm freezes must hold the same members.

    python benchmarks/freeze_bench.py [--faces 1000] [--photos 700] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
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
    faces_dir = root / "faces"
    freeze = [GHOSTS, "freeze", "--name", "bench", "--resolution", "256", "--json", "--data", str(data)]
    pack = [GHOSTS, "pack", str(faces_dir), "--out", str(root / "packed.zip"), "--overwrite", "--json"]
    # What `ghosts review` runs in the background as faces are accepted (at nice 19; here timed as a command).
    prerender = [sys.executable, "-m", "curation.datasets.prerender", str(data), "--size", "256"]
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in ("cold", "pack", "render", "warm")}
    digests = set()
    for i in range(args.repeat):
        shutil.rmtree(data / "datasets", ignore_errors=True)
        shutil.rmtree(data / "cache" / "crops", ignore_errors=True)
        runs["cold"].append(run_once(freeze)[:3])
        (archive,) = (data / "datasets").rglob("*.zip")
        digests.add(members_digest(archive))
        if i == 0:
            shutil.rmtree(faces_dir, ignore_errors=True)
            faces_dir.mkdir()
            with zipfile.ZipFile(archive) as z:
                for name in z.namelist():
                    if name.endswith(".png"):
                        (faces_dir / name.replace("/", "_")).write_bytes(z.read(name))
        runs["pack"].append(run_once(pack)[:3])
        runs["render"].append(run_once(prerender)[:3])
        shutil.rmtree(data / "datasets", ignore_errors=True)
        runs["warm"].append(run_once(freeze)[:3])
        (archive,) = (data / "datasets").rglob("*.zip")
        digests.add(members_digest(archive))
        print(
            f"  run {i + 1}/{args.repeat}  "
            + "   ".join(f"{k} {r[-1][0]:6.2f} s wall {r[-1][1]:6.2f} s CPU" for k, r in runs.items()),
            flush=True,
        )
    if len(digests) != 1:
        raise SystemExit("the archives from cached and rendered crops differ")
    med = {
        k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in runs.items()
    }
    report = {
        "faces": accepted,
        "load_average_after": os.getloadavg(),
        **{f"{k}_{w}_s": round(med[k][j], 2) for k in runs for j, w in enumerate(("wall", "cpu"))},
        "cold_over_pack_wall": round(med["cold"][0] / med["pack"][0], 2),
        "cold_over_pack_cpu": round(med["cold"][1] / med["pack"][1], 2),
        "warm_over_pack_wall": round(med["warm"][0] / med["pack"][0], 2),
        "warm_over_pack_cpu": round(med["warm"][1] / med["pack"][1], 2),
        "render_cpu_ms_per_face": round(1000 * med["render"][1] / max(accepted, 1), 2),
        "archives_identical": True,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def members_digest(archive: Path) -> str:
    """sha256 over the archive's members but the card (whose title names the version, which grows each run)."""
    h = hashlib.sha256()
    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            if name != "DATASET.md":
                h.update(name.encode() + b"\0" + z.read(name))
    return h.hexdigest()


if __name__ == "__main__":
    main()
