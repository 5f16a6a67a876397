"""Time from `ghosts run pipeline --import FOUR_PHOTOS` to the review gate's pause, in the foreground.

Usage: python benchmarks/gate_bench.py [--api URL]

Run twice on one PREFECT_HOME: the first time Prefect creates its database. Without --api nothing Prefect-related is configured (PREFECT_API_URL unset, a fresh PREFECT_HOME), the
"foreground" mode of docs/scheduling.md: the command starts one temporary Prefect server for itself and its
analysis worker processes. The figure is wall time from the command's start to the line the gate logs when
it pauses ("waiting for the review"); the analysis alone (`ghosts analyze` on the same photos, same workers)
is timed too, for comparison. Test photos: /work/shared/testdata/faces (read in place).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHOTOS = ("Tom_Cruise_avp_2014_4.jpg", "2008_001322.jpg", "2009_004587.jpg", "dogs.jpg")
FACES = Path(os.environ.get("GHOSTS_TESTDATA", "/work/shared/testdata")) / "faces"
GHOSTS = [sys.executable, "-m", "flows"]


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


def time_to_gate(api: str | None, workers: int = 2, home: Path | None = None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        env = _env(home or root / "prefect-home", api)
        data = root / "data"
        subprocess.run(GHOSTS + ["init", "--data", str(data)], env=env, check=True, capture_output=True)
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
        subprocess.run(GHOSTS + ["init", "--data", str(data)], env=env, check=True, capture_output=True)
        subprocess.run(
            GHOSTS + ["import", str(_photos(root)), "--data", str(data)],
            env=env,
            check=True,
            capture_output=True,
        )
        t0 = time.monotonic()
        subprocess.run(
            GHOSTS + ["analyze", "--data", str(data), "--workers", str(workers)],
            env=env,
            check=True,
            capture_output=True,
        )
        return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", default=None, help="PREFECT_API_URL of a running server (default: none)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home:  # Prefect's database: fresh, then as the first run left it
        first = time_to_gate(args.api, args.workers, Path(home))
        again = time_to_gate(args.api, args.workers, Path(home))
    alone = analysis_alone(args.workers)
    where = "API " + args.api if args.api else "no API configured"
    print(
        f"import + analysis of {len(PHOTOS)} photos, to the review gate ({where}): {first:.1f} s with a fresh "
        f"Prefect database, {again:.1f} s the next time"
    )
    print(f"ghosts analyze alone on the same photos: {alone:.1f} s")


if __name__ == "__main__":
    main()
