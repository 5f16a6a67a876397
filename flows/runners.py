"""Where a flow's mapped tasks run: local processes (default), threads, or a Dask cluster."""

from __future__ import annotations

from typing import Literal

from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner, ThreadPoolTaskRunner

from curation.catalog.errors import GhostsError

RunnerKind = Literal["threads", "processes", "dask"]
RUNNER_KINDS = ("threads", "processes", "dask")


def make_task_runner(
    kind: str = "processes", workers: int | None = None, dask_address: str | None = None
) -> TaskRunner:
    """A Prefect task runner for analysis batches.

    processes (default): `workers` spawned processes (default: one per core). Analysis is CPU-bound, and each
    process holds its own copy of dlib's models, which must not be shared by threads running at once.
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
        return ProcessPoolTaskRunner(max_workers=workers)
    try:
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
