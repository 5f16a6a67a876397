"""Worker processes for per-photo jobs: bounded in flight, surviving a worker that dies, and dying with
their parent however it ends (kill -9 included): on Linux the kernel sends each worker SIGKILL when the
process that started it goes (PR_SET_PDEATHSIG); everywhere a watchdog thread in the worker exits it once its
parent is gone."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import cv2

from alignment.models import face_detector, landmark_predictor
from curation.catalog.workers import default_workers  # noqa: F401 - re-exported for alignment's callers

PR_SET_PDEATHSIG = 1  # prctl(2)


def die_with_parent(parent_pid: int, initializer: Callable[[], None] | None = None) -> None:
    """Worker start-up: be killed when `parent_pid` ends, then run `initializer`."""
    if sys.platform.startswith("linux"):
        try:
            # The C library already loaded into this process (find_library runs ldconfig in a subprocess:
            # about 5 ms per worker start)
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still ends the worker
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()
    if initializer is not None:
        initializer()


def _watch_parent(parent_pid: int, every_s: float = 1.0) -> None:
    while os.getppid() == parent_pid:
        time.sleep(every_s)
    os._exit(1)  # orphaned: nobody will read our results


def fork_is_safe() -> bool:
    """Whether this process may fork workers that go on running Python: the platform forks, and no other
    thread runs here. Forking a process that runs other threads (a Prefect client, a test harness, torch's
    thread pools) can copy a lock held by one of them into the child, which then waits on it for ever."""
    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and "torch" not in sys.modules
    )


@contextlib.contextmanager
def opencv_threads_stopped() -> Iterator[None]:
    """OpenCV's worker threads stopped (joined) for the block, restored after it. A process forked while they
    run inherits a thread pool without its threads, and hangs in its first OpenCV call that reconfigures it
    (cv2.setNumThreads in init_worker); they exist only once this process ran a parallel OpenCV call, and
    threading does not count them."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(threads)


@contextlib.contextmanager
def heap_frozen() -> Iterator[None]:
    """The objects that exist now moved out of the garbage collector's reach for the block (gc.freeze), as
    Python's documentation advises before a fork without exec: a child's collections then never walk, and
    never write to, the objects it inherited, so their pages stay shared instead of being copied one by one.
    This process gets them back at the end of the block; its children keep them frozen."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def init_worker() -> None:
    """Worker set-up: single-threaded OpenCV (one process per core already) and dlib's models loaded once."""
    cv2.setNumThreads(1)
    face_detector("hog")
    landmark_predictor()


def run_jobs(
    fn: Callable[[Any], Any],
    jobs: Sequence[Any],
    workers: int,
    crashed: Callable[[Any], Any],
    *,
    per_worker: int = 2,  # jobs queued per worker: keeps them busy without holding every result in memory
    initializer: Callable[[], None] | None = init_worker,
    start: str = "spawn",  # how the first pool's workers start: "spawn", or "fork" from a process that holds
    # no threads yet (they inherit its loaded models at no cost; pools run again after a crash always spawn)
) -> Iterator[Any]:
    """fn(job) for every job, as results come in: in this process when workers is 1, else in worker
    processes. `fn` must not raise; it reports failures in its result.

    A worker that dies (a crash in native code, the OOM killer) takes its pool with it, and every job in
    flight with it. Those jobs are run again one at a time in a fresh pool: the one that kills its worker
    alone yields `crashed(job)`; the others complete normally.
    """
    if workers <= 1:
        for job in jobs:
            yield fn(job)
        return
    pending = deque(jobs)
    suspects: deque = deque()
    if start == "fork" and not fork_is_safe():
        start = "spawn"
    ctx = multiprocessing.get_context(start)
    guarded = functools.partial(die_with_parent, os.getpid(), initializer)
    forking = opencv_threads_stopped() if start == "fork" else contextlib.nullcontext()
    with forking, heap_frozen() if start == "fork" else contextlib.nullcontext():
        while pending or suspects:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=guarded) as pool:
                # Never fork again: by now this process holds the pool's manager thread (and a progress bar's).
                ctx = multiprocessing.get_context("spawn")
                broken = False
                while suspects and not broken:
                    job = suspects.popleft()
                    try:
                        result = pool.submit(fn, job).result()
                    except BrokenProcessPool:
                        broken = True
                        result = crashed(job)
                    yield result
                in_flight: dict[Future, Any] = {}
                while (pending or in_flight) and not broken:
                    while pending and len(in_flight) < per_worker * workers:
                        job = pending.popleft()
                        try:
                            in_flight[pool.submit(fn, job)] = job
                        except BrokenProcessPool:  # a worker died since the last wait: this job never ran
                            pending.appendleft(job)
                            broken = True
                            break
                    if broken:
                        break
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for fut in done:
                        job = in_flight.pop(fut)
                        try:
                            result = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            suspects.append(job)
                            continue
                        yield result
                suspects.extend(in_flight.values())
