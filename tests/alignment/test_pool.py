"""Worker processes: every job's result comes back, even when a worker dies under one of them."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def square_or_die(job: int) -> int:
    if job == 13:
        os._exit(3)  # a worker killed in native code, or by the OOM killer
    return job * job


@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_a_dying_worker_costs_only_its_job(start):
    from alignment.pool import run_jobs

    jobs = list(range(20))
    out = list(run_jobs(square_or_die, jobs, 2, lambda job: ("crashed", job), initializer=None, start=start))
    assert sorted(r for r in out if not isinstance(r, tuple)) == [j * j for j in jobs if j != 13]
    assert out.count(("crashed", 13)) == 1
    # Jobs in flight beside the culprit are run again, never given up for it.
    assert all(r == ("crashed", 13) for r in out if isinstance(r, tuple))


def test_one_worker_runs_in_this_process():
    from alignment.pool import run_jobs

    assert list(run_jobs(lambda j: j + 1, [1, 2, 3], 1, lambda j: None)) == [2, 3, 4]


def test_workers_forked_after_a_parallel_opencv_call_start(tmp_path):
    """A process whose OpenCV thread pool is running forks workers that can use OpenCV (they used to hang in
    init_worker's cv2.setNumThreads); run in a child process so that a hang fails the test."""
    code = (
        "import cv2, numpy as np\n"
        "from alignment.pool import run_jobs\n"
        "def job(n):\n"
        "    cv2.setNumThreads(1)\n"
        "    return int(cv2.resize(np.full((400, 400), n, np.uint8), (100, 100))[0, 0])\n"
        "img = np.zeros((3000, 3000), np.uint8)\n"
        "for _ in range(3): cv2.resize(img, (1500, 1500), interpolation=cv2.INTER_AREA)\n"
        "import time; time.sleep(0.5)\n"  # its threads now wait on their condition variable
        "print(sorted(run_jobs(job, [1, 2, 3, 4], 2, lambda j: None, initializer=None, start='fork')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[1, 2, 3, 4]"


def test_forked_workers_inherit_a_frozen_heap_and_the_parent_gets_its_own_back():
    """Forked workers' collections leave the objects they inherited alone (gc.freeze: the pages stay shared
    instead of being copied); the parent's collector covers all its objects again once the jobs are done."""
    code = (
        "import gc\n"
        "from alignment.pool import run_jobs\n"
        "def job(n):\n"
        "    return gc.get_freeze_count() > 1000\n"
        "print(set(run_jobs(job, [1, 2, 3, 4], 2, lambda j: None, initializer=None, start='fork')))\n"
        "print(gc.get_freeze_count())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120, env=env
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["{True}", "0"]


def death_signal(_job) -> int:
    sig = ctypes.c_int(0)
    ctypes.CDLL(None).prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
    return sig.value


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("start", ["spawn", "fork"])
def test_workers_are_killed_with_their_parent(start):
    from alignment.pool import run_jobs

    assert (
        list(run_jobs(death_signal, [0, 1], 2, lambda j: None, initializer=None, start=start))
        == [signal.SIGKILL] * 2
    )
