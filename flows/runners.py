"""Where a flow's mapped tasks run: local processes (default), threads, or a Dask cluster."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from curation.catalog.errors import GhostsError
from curation.catalog.workers import default_workers
from flows.worker_pool import WorkerPool, shared_pool

RunnerKind = Literal["threads", "processes", "dask"]
RUNNER_KINDS = ("threads", "processes", "dask")


def make_task_runner(
    kind: str = "processes", workers: int | None = None, dask_address: str | None = None
) -> TaskRunner:
    """A Prefect task runner for analysis batches.

    processes (default): `workers` worker processes (default: one per core) do the work, the tasks waiting
    on them in as many threads (`WorkerProcessesTaskRunner`). Analysis is CPU-bound, and each process holds
    its own copy of dlib's models, which must not be shared by threads running at once.
    threads: one process, `workers` threads; lighter to start, for work whose libraries are thread-safe.
    dask: prefect-dask's DaskTaskRunner on the scheduler at `dask_address` (fan out beyond one machine; every
    worker needs ghosts installed and the workspace at the same path), or on a local cluster of `workers`
    single-threaded processes when no address is given. Giving an address implies dask.
    """
    if dask_address:
        kind = "dask"
    if kind not in RUNNER_KINDS:
        raise GhostsError(f"unknown task runner {kind!r}: use one of {', '.join(RUNNER_KINDS)}")
    if workers is not None and workers < 1:
        raise GhostsError(f"--workers must be at least 1 (got {workers})")
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "processes":
        return WorkerProcessesTaskRunner(max_workers=workers)
    try:  # imported here for start-up cost: dask and distributed take seconds, and only this kind needs them
        from prefect_dask import DaskTaskRunner
    except ImportError as e:  # pragma: no cover - prefect-dask is a dependency, but a broken install says so
        raise GhostsError(f"the dask task runner needs the prefect-dask package ({e})") from e
    if dask_address:
        if not dask_address.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://", "ucx://")):
            raise GhostsError(
                f"--dask-address {dask_address!r}: give the scheduler's address, e.g. tcp://10.0.0.5:8786"
            )
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers or 2, "threads_per_worker": 1})


class WorkerProcessesTaskRunner(ThreadPoolTaskRunner):
    """Prefect's tasks in threads of the flow's process; what they pass to `in_worker` in plain worker
    processes (flows.worker_pool), which hold no Prefect run context, so nothing ships their logs and nothing
    waits for that at the end. The workers a foreground command prestarted are used when their count fits;
    otherwise the runner starts its own for the flow run and stops them when it ends."""

    def __init__(self, max_workers: int | None = None):
        super().__init__(max_workers=max_workers or default_workers())
        self.pool: WorkerPool | None = None
        self._own_pool = False

    def __enter__(self):
        super().__enter__()
        self.pool = shared_pool(self._max_workers)
        self._own_pool = self.pool is None
        if self._own_pool:
            self.pool = WorkerPool(self._max_workers)
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        try:
            super().__exit__(exc_type, exc_value, traceback)
        finally:
            if self._own_pool and self.pool is not None:
                self.pool.close()
            self.pool, self._own_pool = None, False

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.update(pool=None, _own_pool=False)  # worker processes do not travel
        return state


def in_worker(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a worker process of the running flow's `WorkerProcessesTaskRunner`, else right here
    (threads, a Dask worker, a task called outside a flow). `fn` must be importable without Prefect."""
    ctx = FlowRunContext.get()
    runner = ctx.task_runner if ctx is not None else None
    if isinstance(runner, WorkerProcessesTaskRunner) and runner.pool is not None:
        return runner.pool.call(fn, *args)
    return fn(*args)
