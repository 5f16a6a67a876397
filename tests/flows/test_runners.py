"""The task runner factory: each kind, and clear errors for what cannot work."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from curation.catalog.errors import GhostsError
from flows.runners import WorkerProcessesTaskRunner, make_task_runner


def test_runner_kinds():
    threads = make_task_runner("threads", workers=3)
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    processes = make_task_runner("processes", workers=2)
    assert isinstance(processes, WorkerProcessesTaskRunner) and processes._max_workers == 2
    assert processes.pool is None  # no process starts before a flow run enters the runner


def test_dask_runner_from_an_address_or_a_local_cluster():
    from prefect_dask import DaskTaskRunner

    remote = make_task_runner("threads", dask_address="tcp://10.0.0.5:8786")  # an address implies dask
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://10.0.0.5:8786"
    local = make_task_runner("dask", workers=3)
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {"n_workers": 3, "threads_per_worker": 1}


@pytest.mark.parametrize(
    "kind, workers, address, fragment",
    [
        ("fibers", None, None, "unknown task runner 'fibers'"),
        ("threads", 0, None, "--workers must be at least 1"),
        ("dask", None, "10.0.0.5:8786", "tcp://10.0.0.5:8786"),
    ],
)
def test_runner_errors(kind, workers, address, fragment):
    with pytest.raises(GhostsError, match=fragment):
        make_task_runner(kind, workers, address)
