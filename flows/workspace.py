"""The workspace a flow run works on, named by a plain path so it travels to threads, processes and Dask workers."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from curation.catalog.settings import Settings
from curation.catalog.workspace import Workspace, open_workspace

_open: dict[tuple[int, Path], Workspace] = {}
_lock = threading.Lock()


def resolve_data(data: str | os.PathLike | None) -> str:
    """The absolute workspace folder for a flow parameter: --data, else GHOSTS_DATA, else ./data."""
    return str(Path(data if data is not None else Settings().data).expanduser().resolve())


def open_data(data: str | os.PathLike | None) -> Workspace:
    """The initialised workspace at `data`, opened once per process.

    Opening checks the catalog schema and sweeps stale temp files from the image store, which is worth doing
    once per process, not once per task; the engine is shared by the threads of the process.
    """
    key = (os.getpid(), Path(resolve_data(data)))
    with _lock:
        ws = _open.get(key)
        if ws is None:
            ws = _open[key] = open_workspace(key[1], Settings())
        return ws
