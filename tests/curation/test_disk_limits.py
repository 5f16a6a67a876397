"""Writes that the machine refuses part-way (a full disk, a file-size limit) end as one line and exit 1 (with
--json, one JSON object with an `error` field), and leave no catalog row without its file and no temp file.

A real full disk needs a small tmpfs (root; tests/curation/test_faults.py::test_really_full_disk); the file-size
limit (RLIMIT_FSIZE, what `ulimit -f` sets) works for every user, in a child process."""

from __future__ import annotations

import json
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from curation.catalog.workspace import init_workspace

REPO = Path(__file__).resolve().parents[2]


def _limited(max_bytes: int):
    def set_limit():
        signal.signal(
            signal.SIGXFSZ, signal.SIG_IGN
        )  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return set_limit


def ghosts_limited(max_bytes: int, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flows", *map(str, args)],
        preexec_fn=_limited(max_bytes),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("as_json", [False, True])
def test_a_file_size_limit_during_import_is_one_line(tmp_path, faces_dir, as_json):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    big = faces_dir / "bald_guys.jpg"  # 648 KB: over the limit below; the other photos are under it
    assert big.stat().st_size > 400_000
    args = ["import", faces_dir / "2007_007763.jpg", big, "--data", ws.root] + (["--json"] if as_json else [])
    r = ghosts_limited(400_000, *args)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("ghosts:")]
    assert errors == [
        "ghosts: error: a file grew past the largest size allowed here (the file system's, or `ulimit -f`)"
    ], r.stderr
    if as_json:
        assert list(json.loads(r.stdout)) == ["error"]
    con = sqlite3.connect(ws.root / "catalog.sqlite")
    rows = con.execute("SELECT path FROM images").fetchall()
    con.close()
    assert all(path is not None and (ws.root / path).is_file() for (path,) in rows)  # no row without its file
    assert len(rows) == 1  # the photo before the big one is in
    assert [p for p in ws.root.rglob(".tmp-*")] == []  # the partial copy went


def test_a_file_size_limit_during_freeze_leaves_no_version(tmp_path, faces_dir):
    from tests.curation.test_freeze import PASCAL, add_faces

    ws = init_workspace(tmp_path / "ws")
    add_faces(ws, faces_dir, PASCAL)
    ws.close()
    assert (ws.root / "catalog.sqlite").stat().st_size < 300_000  # the catalog itself may still be written
    r = ghosts_limited(300_000, "freeze", "--name", "g", "--resolution", 256, "--json", "--data", ws.root)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "largest size allowed" in json.loads(r.stdout)["error"]
    con = sqlite3.connect(ws.root / "catalog.sqlite")
    assert con.execute("SELECT count(*) FROM dataset_versions").fetchone() == (0,)
    con.close()
    assert list((ws.root / "datasets").rglob("*.zip")) == [] and list(ws.root.rglob(".tmp-*")) == []
    assert not (ws.root / "datasets" / "g" / "v1").exists()  # nothing that looks like a version
    r = ghosts_limited(resource.RLIM_INFINITY, "freeze", "--name", "g", "--resolution", 64, "--data", ws.root)
    assert r.returncode == 0, r.stderr
    assert (ws.root / "datasets" / "g" / "v1" / "manifest.json").is_file()
