"""Worker processes: every job's result comes back, even when a worker dies under one of them."""

from __future__ import annotations

import os

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
