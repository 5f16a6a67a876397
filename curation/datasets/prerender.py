"""Filling the crop cache (curation.datasets.crops) ahead of freeze, when faces are accepted.

`CropRenderer.poke()` is what the review server calls after a decision that accepted faces: it returns at
once, and a daemon thread runs `python -m curation.datasets.prerender WORKSPACE` once the key presses pause
(`delay` seconds without a poke), in its own interpreter at nice 19 (neither the server's GIL nor the CPU a
request wants), again when poked meanwhile; it ends with the server. Before each photo the child waits until
the catalog has gone `delay` seconds without a write, so crops are written between a reviewer's bursts, not
during them.
The child renders every crop the current selection lacks, at the workspace's target size and at the sizes
of the datasets frozen so far; a photo it cannot read is logged and skipped (freeze will say why).

    python -m curation.datasets.prerender WORKSPACE [--size N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import select

from alignment.pool import die_with_parent
from curation.catalog.errors import GhostsError
from curation.catalog.schema import DatasetVersion, get_setting
from curation.catalog.thresholds import DEFAULT_TARGET_SIZE, TARGET_SIZE_SETTING
from curation.catalog.workspace import open_workspace
from curation.datasets.crops import PhotoCrops, render_missing
from curation.datasets.freeze import face_quad, selected_faces

log = logging.getLogger(__name__)


def pending_photos(ws) -> list[PhotoCrops]:
    """The accepted faces a freeze would select now, grouped by photo (in freeze's order)."""
    photos: list[PhotoCrops] = []
    with ws.session() as s:
        for face, image in selected_faces(s):
            if not photos or photos[-1].image_sha256 != image.sha256:
                photos.append(PhotoCrops(ws.abspath(image.path), image.sha256, []))
            # A face without a usable quad is left out here: freeze refuses it, saying why.
            with contextlib.suppress(GhostsError):
                photos[-1].quads.append(face_quad(face))
    return photos


def render_sizes(ws) -> list[int]:
    """The sides to render at: the workspace's target size and those of the datasets frozen so far."""
    with ws.session() as s:
        sizes = {int(get_setting(s, TARGET_SIZE_SETTING, DEFAULT_TARGET_SIZE))}
        sizes.update(int(r) for r in s.scalars(select(DatasetVersion.resolution).distinct()))
    return sorted(sizes)


def prerender(ws, sizes: list[int] | None = None, yield_to_writes: float = 0.0) -> list[dict[str, int]]:
    """Render every missing crop of the current selection; one line of counts per size. With
    `yield_to_writes`, wait before each photo until the catalog has not been written for that many seconds."""
    between = (lambda: wait_for_quiet(ws, yield_to_writes)) if yield_to_writes > 0 else None
    return render_missing(
        ws.root, pending_photos(ws), sizes or render_sizes(ws), ws.settings.max_pixels, between
    )


def wait_for_quiet(ws, quiet_s: float, poll_s: float = 0.25) -> None:
    """Return once the catalog (and its write-ahead log) has gone `quiet_s` seconds without a write: a reviewer
    at work commits a decision per key, and each commit's sync would also have to flush the crops written
    meanwhile (measured: a burst of 30 keys went from a median of 52-90 to 132-172 ms while crops were written)."""
    if ws.catalog_file is None:
        return
    files = [ws.catalog_file, ws.catalog_file.with_name(ws.catalog_file.name + "-wal")]
    while True:
        newest = max((f.stat().st_mtime for f in files if f.exists()), default=0.0)
        if time.time() - newest >= quiet_s:
            return
        time.sleep(poll_s)


class CropRenderer:
    """Runs the prerender in a separate lowest-priority process whenever poked (see the module doc)."""

    def __init__(self, root: Path, delay: float = 3.0):
        self.root, self.delay = Path(root), delay
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.runs = 0  # renders finished (for tests and logs)

    def poke(self, *_args) -> None:
        """Ask for a render soon; never blocks and never raises."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ghosts-crops", daemon=True)
                self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        while self._wake.wait(timeout=300):  # idle for 5 minutes: the thread ends; the next poke starts one
            self._wake.clear()
            # Wait for a pause in the key presses first: one render for all of them.
            while self._wake.wait(timeout=self.delay):
                self._wake.clear()
            cmd = [sys.executable, "-m", "curation.datasets.prerender", str(self.root)]
            cmd += ["--parent", str(os.getpid()), "--quiet", str(self.delay)]
            try:
                subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            except OSError as e:  # the cache is an accelerator: freeze renders what is missing
                log.warning("crop cache: could not start the renderer (%s)", e)
            self.runs += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Render accepted faces' crops into the workspace's crop cache.")
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--size", type=int, action="append", help="side in px (default: target and frozen sizes)")
    ap.add_argument("--parent", type=int, default=None, help="end when this process (the review server) ends")
    ap.add_argument(
        "--quiet", type=float, default=0.0, help="render after this many s without a catalog write"
    )
    args = ap.parse_args(argv)
    if args.parent is not None:
        die_with_parent(args.parent)
    with contextlib.suppress(OSError):
        os.nice(19)  # lowest priority: the user's review and commands come first

    for line in prerender(open_workspace(args.workspace), args.size, args.quiet):
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
