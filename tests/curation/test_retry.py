"""Transient analysis failures are retried (by a plain rerun, or all errors with --retry-errors), a re-import
says what state the image is in and how to retry, and analysis workers die with their parent (kill -9)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import select

from curation.analysis import analyze as analyze_mod
from curation.analysis.analyze import analyze_workspace
from curation.catalog.schema import Image
from curation.sources.ingest import ingest_paths
from flows.cli import main

PHOTO = "Tom_Cruise_avp_2014_4.jpg"


def state(ws) -> tuple[str, str | None]:
    with ws.session() as s:
        im = s.scalars(select(Image)).one()
        return im.status, im.reject_reason


def stored(ws) -> Path:
    with ws.session() as s:
        return ws.abspath(s.scalars(select(Image)).one().path)


def test_a_store_file_missing_for_a_moment_is_retried_by_the_next_run(workspace, faces_dir):
    ingest_paths(workspace, [faces_dir / PHOTO], progress=False)
    path = stored(workspace)
    path.rename(path.with_suffix(".away"))
    s1 = analyze_workspace(workspace, workers=1, progress=False)
    assert s1.error == 1 and state(workspace)[0] == "error"
    assert state(workspace)[1].startswith("file missing from the image store")
    # Re-importing says the image's state and how to retry, instead of a bare "duplicate".
    summary = ingest_paths(workspace, [faces_dir / PHOTO], progress=False)
    assert summary.duplicates == 1 and summary.added == 0
    [known] = summary.failed_before
    assert (
        "analysis failed: file missing" in known["state"]
        and "ghosts analyze --retry-errors" in known["state"]
    )
    path.with_suffix(".away").rename(path)
    s2 = analyze_workspace(workspace, workers=1, progress=False)
    assert (s2.retried, s2.analyzed, s2.error) == (1, 1, 0)
    assert state(workspace) == ("analyzed", None)
    s3 = analyze_workspace(workspace, workers=1, progress=False)
    assert (s3.retried, s3.images) == (0, 0)  # nothing left: an analysed image is never redone


def test_an_unwritable_previews_folder_is_retried_once_writable(workspace, faces_dir, monkeypatch):
    ingest_paths(workspace, [faces_dir / PHOTO], progress=False)

    def read_only(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(workspace.previews_dir / "faces"))

    monkeypatch.setattr(analyze_mod, "save_preview", read_only)
    assert analyze_workspace(workspace, workers=1, progress=False).error == 1
    status, reason = state(workspace)
    assert status == "error" and reason.startswith("cannot read or write a file: Permission denied")
    monkeypatch.undo()
    assert analyze_workspace(workspace, workers=1, progress=False).retried == 1
    assert state(workspace)[0] == "analyzed"


def test_undecodable_images_wait_for_retry_errors(workspace, faces_dir):
    ingest_paths(workspace, [faces_dir / PHOTO], progress=False)
    path = stored(workspace)
    good = path.read_bytes()
    path.write_bytes(good[:300])  # damaged in the store
    analyze_workspace(workspace, workers=1, progress=False)
    assert state(workspace)[1].startswith("cannot decode")
    path.write_bytes(good)  # repaired by hand
    again = analyze_workspace(workspace, workers=1, progress=False)
    assert again.retried == 0 and state(workspace)[0] == "error"  # a decode failure is not retried by itself
    r = CliRunner().invoke(
        main, ["analyze", "--retry-errors", "--workers", "1", "--json", "--data", str(workspace.root)]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert (doc["retried"], doc["analyzed"]) == (1, 1) and state(workspace)[0] == "analyzed"


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_analysis_workers_die_with_their_parent_on_kill_9(workspace, faces_dir):
    ingest_paths(workspace, sorted(faces_dir.glob("*.jpg")), progress=False)
    ghosts = Path(sys.executable).with_name("ghosts")
    proc = subprocess.Popen(
        [str(ghosts), "analyze", "--workers", "2", "--data", str(workspace.root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            # The pool's workers (a resource tracker may be a child too: it exits by itself on EOF).
            workers = [
                c
                for c in _children(proc.pid)
                if "multiprocessing" in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
                and "resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes().decode(errors="replace")
            ]
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2, "the analysis did not start its worker processes"
        time.sleep(1.0)  # let them load their models and take jobs
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if _alive(w)], "workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
        for w in workers:  # a failing run must not leave them behind
            if _alive(w):
                os.kill(w, signal.SIGKILL)
