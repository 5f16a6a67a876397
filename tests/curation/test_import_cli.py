import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
from click.testing import CliRunner
from PIL import Image

from flows.cli import main


def run(*args, env=None):
    return CliRunner().invoke(main, list(map(str, args)), env=env, catch_exceptions=False)


def test_init_import_status_json(tmp_path, faces_dir):
    data = tmp_path / "ws"
    assert run("init", "--data", data).exit_code == 0
    r = run("import", faces_dir, "--json", "--data", data)
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {
        "added": 12,
        "duplicates": 0,
        "near_duplicates": 0,
        "converted": 0,
        "skipped": 4,
        "rejected": [],
        "failed_before": [],
        "failed": [],
    }
    r = run("import", faces_dir, "--json", env={"GHOSTS_DATA": str(data)})
    assert json.loads(r.output)["duplicates"] == 12
    st = json.loads(run("status", "--json", "--data", data).output)
    assert st["images"]["total"] == 12 and st["images"]["by_status"] == {"new": 12}


def test_import_reports_refusals_and_still_exits_zero(tmp_path, degenerate_dir):
    data = tmp_path / "ws"
    run("init", "--data", data)
    r = run("import", degenerate_dir, "--json", "--data", data)
    assert r.exit_code == 0
    out = json.loads(r.output)
    assert out["added"] == 7 and out["converted"] == 7 and len(out["rejected"]) == 3


def test_command_errors_are_clear_and_nonzero(tmp_path):
    r = run("status", "--data", tmp_path / "missing")
    assert r.exit_code == 1 and "run `ghosts init" in r.output
    run("init", "--data", tmp_path / "ws")
    r = run("import", tmp_path / "no-such-folder", "--data", tmp_path / "ws")
    assert r.exit_code == 1 and "no such file or folder" in r.output


def _noise_jpegs(folder, n):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (480, 480, 3), dtype=np.uint8)).save(
            folder / f"{i:04d}.jpg", quality=95
        )


def _check_store_and_catalog(ws_dir):
    con = sqlite3.connect(ws_dir / "catalog.sqlite")
    rows = con.execute("SELECT sha256, path FROM images WHERE path IS NOT NULL").fetchall()
    con.close()
    for sha, rel in rows:  # no row without its file
        assert (ws_dir / rel).is_file(), rel
    for f in (ws_dir / "images").rglob("*"):  # no partial file in the store
        if f.is_file():
            assert hashlib.sha256(f.read_bytes()).hexdigest() == f.stem, f
    return len(rows)


def test_kill_9_midway_then_rerun_completes(tmp_path):
    n = 300
    photos = tmp_path / "photos"
    _noise_jpegs(photos, n)
    data = tmp_path / "ws"
    run("init", "--data", data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GHOSTS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows", "import", str(photos), "--data", str(data)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    count = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            con = sqlite3.connect(data / "catalog.sqlite", timeout=5)
            count = con.execute("SELECT count(*) FROM images").fetchone()[0]
            con.close()
        except sqlite3.OperationalError:
            pass
        if count >= 20:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = _check_store_and_catalog(data)
    assert 20 <= done < n, "the import finished before it could be killed; make the batch bigger"
    r = run("import", photos, "--json", "--data", data)
    out = json.loads(r.output)
    assert out["added"] + out["duplicates"] == n and out["duplicates"] == done
    assert _check_store_and_catalog(data) == n
