"""Timing calls inside one process (benchmarks/commands.py times whole commands): pinned to one core, the
best of a few repeats."""

from __future__ import annotations

import os
import time

import cv2


def pin_to_one_core() -> None:
    """OpenCV single-threaded and the process on one CPU, so figures compare per core."""
    cv2.setNumThreads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def best_time(fn, repeat: int) -> tuple[float, object]:
    """The fastest of `repeat` calls of fn (seconds) and the last call's result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out
