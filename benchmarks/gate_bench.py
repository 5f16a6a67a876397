"""Time from `ghosts run pipeline --import FOUR_PHOTOS` to the review gate's pause, in the foreground.

Usage: python benchmarks/gate_bench.py [--api URL] [--runs N] [--compare CHECKOUT]

Without --api nothing Prefect-related is configured (PREFECT_API_URL unset, a PREFECT_HOME of its own), the
"foreground" mode of docs/scheduling.md: the command starts one temporary Prefect server for itself and its
analysis workers. The figure is wall time from the command's start to the line the gate logs when it pauses
("waiting for the review"); the analysis alone (`ghosts analyze` on the same photos, same workers) is the
anchor. First one run on a fresh PREFECT_HOME (Prefect creates its database), then N rounds on that home,
each round timing the gate, the gate of --compare (another checkout of ghosts, e.g. `git worktree add
/tmp/before COMMIT`, run with this interpreter) when given, and the analysis alone, one after the other, so
load changes hit all alike; medians are printed. Test photos: /work/shared/testdata/faces (read in place).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTOS = ("Tom_Cruise_avp_2014_4.jpg", "2008_001322.jpg", "2009_004587.jpg", "dogs.jpg")
FACES = Path(os.environ.get("GHOSTS_TESTDATA", "/work/shared/testdata")) / "faces"
GHOSTS = [sys.executable, "-m", "flows"]
REPO = Path(__file__).resolve().parents[1]


def _env(home: Path, api: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    if api:
        env["PREFECT_API_URL"] = api
    return env


def _photos(root: Path) -> Path:
    d = root / "photos"
    d.mkdir()
    for name in PHOTOS:
        os.symlink(FACES / name, d / name)
    return d


def time_to_gate(
    api: str | None, workers: int = 2, home: Path | None = None, code: Path | None = None
) -> float:
    """Seconds to the gate's pause; `code`: the checkout whose `flows` runs (default: this one)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = _env(home or root / "prefect-home", api)
        data = root / "data"
        cwd = code or REPO
        subprocess.run(
            GHOSTS + ["init", "--data", str(data)], env=env, check=True, capture_output=True, cwd=cwd
        )
        t0 = time.monotonic()
        proc = subprocess.Popen(
            GHOSTS
            + [
                "run",
                "pipeline",
                "--import",
                str(_photos(root)),
                "--data",
                str(data),
                "--target",
                "2",
                "--workers",
                str(workers),
                "--no-train",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=cwd,
        )
        try:
            for line in proc.stdout:
                if "waiting for the review" in line:
                    return time.monotonic() - t0
            raise SystemExit(f"the pipeline ended before the gate (exit {proc.wait()})")
        finally:
            proc.terminate()
            proc.wait(timeout=120)  # the paused run is marked crashed on the way out


def analysis_alone(workers: int = 2) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = _env(root / "prefect-home", None)
        data = root / "data"
        subprocess.run(
            GHOSTS + ["init", "--data", str(data)], env=env, check=True, capture_output=True, cwd=REPO
        )
        subprocess.run(
            GHOSTS + ["import", str(_photos(root)), "--data", str(data)],
            env=env,
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        t0 = time.monotonic()
        subprocess.run(
            GHOSTS + ["analyze", "--data", str(data), "--workers", str(workers)],
            env=env,
            check=True,
            capture_output=True,
            cwd=REPO,
        )
        return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", default=None, help="PREFECT_API_URL of a running server (default: none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5, help="rounds after the fresh-database run (default 5)")
    ap.add_argument("--compare", type=Path, default=None, metavar="CHECKOUT", help="another ghosts checkout")
    args = ap.parse_args()
    codes = {"this checkout": None} | ({f"{args.compare}": args.compare} if args.compare else {})
    gates: dict[str, list[float]] = {name: [] for name in codes}
    alone: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        homes = {name: Path(tmp) / f"home-{i}" for i, name in enumerate(codes)}
        fresh = {
            name: time_to_gate(args.api, args.workers, homes[name], code) for name, code in codes.items()
        }
        for _ in range(args.runs):
            for name, code in codes.items():
                gates[name].append(time_to_gate(args.api, args.workers, homes[name], code))
            alone.append(analysis_alone(args.workers))
    where = "API " + args.api if args.api else "no API configured"
    anchor = statistics.median(alone)
    print(
        f"import + analysis of {len(PHOTOS)} photos to the review gate ({where}), --workers {args.workers}:"
    )
    for name in codes:
        gate = statistics.median(gates[name])
        print(
            f"  {name}: {fresh[name]:.1f} s with a fresh Prefect database; then median {gate:.1f} s "
            f"(runs {', '.join(f'{g:.1f}' for g in gates[name])}): analysis + {gate - anchor:.1f} s, "
            f"{gate / anchor:.2f}x the analysis alone"
        )
    print(
        f"  ghosts analyze alone on the same photos: median {anchor:.1f} s (runs {', '.join(f'{a:.1f}' for a in alone)})"
    )


if __name__ == "__main__":
    main()
