"""The analysis worker processes behind the `processes` task runner: plain processes, outside Prefect.

Prefect's analysis tasks run in threads of the flow's process and hand their CPU work to these workers
(`WorkerPool.call`). The workers import no Prefect, hold no flow run context and ship no logs (a task's
logs come from its thread), so they start in a fraction of the time Prefect's process-pool workers take and
nothing waits on a log-forwarding thread when they stop. A foreground command starts them while its
temporary Prefect server starts (`prestarted`); a served run's task runner starts its own. They are spawned,
never forked: a worker forked after the command opened the catalog shares SQLite's per-process lock state
with it and reads the catalog wrong (it saw none of the photos imported after the fork).

Nothing here imports Prefect: a spawned worker imports this module to find `analyze_batch_here`.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from alignment.pool import die_with_parent, init_worker
from curation.analysis.analyze import analyze_images
from curation.analysis.identities import describe_faces, update_identities
from curation.catalog.errors import GhostsError
from curation.catalog.workers import default_workers
from flows.workspace import open_data


def analyze_batch_here(
    data: str, image_ids: list[int], detector: str, target_size: int | None
) -> dict[str, Any]:
    """One analysis batch in this process (a worker's job), its faces described too. Grouping them into people
    waits for `identities_here`: batches running at once would each group the same faces, and race to write
    the grouping."""
    ws = open_data(data)
    out = analyze_images(ws, image_ids, detector, target_size=target_size, identities=False)
    describe_faces(ws, image_ids=image_ids)
    return out


def identities_here(data: str) -> dict[str, Any]:
    """Group the new faces into people (describing any a batch left), once the batches are in."""
    return update_identities(open_data(data), progress=False).as_dict()


def _pid() -> int:
    return os.getpid()


class WorkerPool:
    """`workers` worker processes, started now; `call` runs a function in one of them and returns its result.

    A worker that dies (a crash in native code, the OOM killer) breaks the executor: the calls in flight fail
    with a GhostsError (the analysis task's retry runs its batch again) and the next call gets fresh workers.
    """

    def __init__(self, workers: int | None = None):
        self.workers = max(int(workers or default_workers()), 1)
        self._lock = threading.Lock()
        self._closed = False
        self._executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=functools.partial(die_with_parent, os.getpid(), init_worker),
        )
        for _ in range(self.workers):  # start every worker now, not on the first batch
            executor.submit(_pid)
        return executor

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._closed:
                raise GhostsError("the analysis worker processes were stopped")
            executor = self._executor
        try:
            return executor.submit(fn, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self._executor is executor and not self._closed:
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._start()
            raise GhostsError(
                "an analysis worker process died (out of memory, or a crash in native code)"
            ) from None

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor = self._executor
        executor.shutdown(wait=True, cancel_futures=True)


_shared: WorkerPool | None = None


@contextlib.contextmanager
def prestarted(workers: int | None) -> Iterator[WorkerPool]:
    """Start the analysis workers now, for the `processes` task runner of any flow this block runs."""
    global _shared
    pool = WorkerPool(workers)
    previous, _shared = _shared, pool
    try:
        yield pool
    finally:
        _shared = previous
        pool.close()


def shared_pool(workers: int | None) -> WorkerPool | None:
    """The prestarted pool when it has `workers` workers (None: the default count), else None."""
    pool = _shared
    if pool is None or pool.workers != max(int(workers or default_workers()), 1):
        return None
    return pool
