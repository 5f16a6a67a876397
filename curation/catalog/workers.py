"""How many worker processes a parallel step uses by default (analysis, ghosts align, pack, freeze)."""

from __future__ import annotations

import os


def default_workers() -> int:
    """One worker per core this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)
