"""The `processes` runner: Prefect's tasks in threads, their work in plain worker processes (no Prefect in
them), prestarted by a foreground command, surviving a worker that dies; batches spread over the workers."""

from __future__ import annotations

import os

import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from curation.catalog.errors import GhostsError
from flows.runners import WorkerProcessesTaskRunner, in_worker
from flows.scrape import spread_batches
from flows.worker_pool import WorkerPool, prestarted, shared_pool

# What a worker says about itself: its pid, and whether Prefect was ever imported in it.
PROBE = "(__import__('os').getpid(), 'prefect' in __import__('sys').modules)"


@task(cache_policy=NO_CACHE)
def probe(i: int) -> tuple[int, bool, int]:
    pid, has_prefect = in_worker(eval, PROBE)
    return pid, has_prefect, os.getpid()


@flow
def probes(n: int) -> list[tuple[int, bool, int]]:
    return [f.result() for f in probe.map(range(n))]


def test_tasks_work_in_plain_worker_processes(prefect_api):
    out = probes.with_options(task_runner=WorkerProcessesTaskRunner(max_workers=2))(4)
    pids = {pid for pid, _, _ in out}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # two workers, none of them this process
    assert not any(has_prefect for _, has_prefect, _ in out)  # spawned without Prefect: no run context
    assert {task_pid for _, _, task_pid in out} == {os.getpid()}  # the tasks themselves ran in threads here
    assert in_worker(eval, "1 + 1") == 2  # outside a flow: right here


def test_a_prestarted_pool_serves_the_flow_runs_of_the_command(prefect_api):
    with prestarted(2) as pool:
        assert shared_pool(2) is pool and shared_pool(3) is None
        workers = set(pool._executor._processes)
        out = probes.with_options(task_runner=WorkerProcessesTaskRunner(max_workers=2))(4)
        assert {pid for pid, _, _ in out} <= workers  # no process of its own
    assert shared_pool(2) is None
    with pytest.raises(GhostsError, match="stopped"):
        pool.call(os.getpid)


def test_a_worker_that_dies_fails_its_call_and_the_next_gets_fresh_workers():
    pool = WorkerPool(2)
    try:
        first = pool.call(os.getpid)
        with pytest.raises(GhostsError, match="worker process died"):
            pool.call(os._exit, 3)
        again = pool.call(os.getpid)
        assert again != first and pool.call(eval, "2 * 21") == 42
    finally:
        pool.close()


@pytest.mark.parametrize(
    "images, batch, runner, workers, address, size",
    [
        (4, 8, "processes", 2, None, 2),  # 2 batches of 2 for 2 workers, not 1 of 4
        (5, 8, "processes", 2, None, 3),
        (100, 8, "processes", 2, None, 8),  # enough for every worker: the batch size as given
        (3, 8, "threads", 4, None, 1),
        (4, 8, "dask", None, None, 2),  # a local cluster of 2 workers by default
        (4, 8, "dask", 2, "tcp://10.0.0.5:8786", 8),  # a remote cluster's size is not known
        (0, 8, "processes", 2, None, 8),
    ],
)
def test_batches_spread_over_the_local_workers(images, batch, runner, workers, address, size):
    assert spread_batches(images, batch, runner, workers, address) == size
