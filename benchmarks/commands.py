"""Timing whole commands side by side: each command in its own process, the commands run in turn (round robin)
so that a burst of load from other jobs hits them all alike; wall time, CPU time (user + system) and peak
resident memory of each run from the kernel's accounting of that one child (os.wait4)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
GHOSTS = str(Path(sys.executable).with_name("ghosts"))


def baseline(script: str, *args) -> list[str]:
    """The command line of an anchor script in benchmarks/baselines, run by this Python."""
    return [PYTHON, str(REPO / "benchmarks" / "baselines" / script), *map(str, args)]


@dataclass
class Command:
    label: str
    argv: list[str]
    before: Callable[[], None] | None = None  # run before every timed run (e.g. remove the last output)
    runs: list[tuple[float, float, float]] = field(default_factory=list)  # (wall s, CPU s, peak MB)

    def median(self, k: int) -> float:
        return statistics.median(r[k] for r in self.runs)

    def summary(self) -> dict:
        return {
            "command": self.label,
            "wall_s": round(self.median(0), 3),
            "cpu_s": round(self.median(1), 3),
            "peak_mb": round(self.median(2), 1),
            "runs_wall_s": [round(r[0], 3) for r in self.runs],
        }


def run_once(argv: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """Run argv to completion: (wall s, CPU s, peak RSS MB, combined output). A failure stops the benchmark.

    The command runs under /usr/bin/time, a small process, so the peak resident size is the command's own (a
    child forked straight from this benchmark would report this process's peak as its floor)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        t = time.perf_counter()
        p = subprocess.Popen(
            ["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        peak_kb = rss.read().strip().splitlines()
    text = out.decode(errors="replace")
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {p.returncode}:\n{text[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, float(peak_kb[-1]) / 1024 if peak_kb else float("nan"), text


def alternate(commands: list[Command], repeat: int, env: dict | None = None, verbose: bool = True) -> None:
    """Run every command `repeat` times, in turn; the runs are kept on each Command."""
    for i in range(repeat):
        for c in commands:
            if c.before:
                c.before()
            wall, cpu, peak, _ = run_once(c.argv, env)
            c.runs.append((wall, cpu, peak))
            if verbose:
                print(
                    f"  run {i + 1}/{repeat}  {c.label:40s} {wall:7.2f} s wall  {cpu:7.2f} s CPU  {peak:6.0f} MB",
                    flush=True,
                )


def table(commands: list[Command], anchor: Command) -> list[dict]:
    """Medians per command and the anchor's median wall time over each command's (> 1: faster than the anchor)."""
    rows = []
    for c in commands:
        row = c.summary()
        row["speedup_vs_anchor"] = round(anchor.median(0) / c.median(0), 2)
        rows.append(row)
    return rows


def print_table(rows: list[dict], title: str) -> None:
    print(title)
    print(f"{'command':42s} {'wall s':>8s} {'CPU s':>8s} {'peak MB':>8s} {'vs anchor':>10s}")
    for r in rows:
        print(
            f"{r['command']:42s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_mb']:8.0f} "
            f"{r['speedup_vs_anchor']:9.2f}x"
        )
