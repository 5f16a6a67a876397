"""`ghosts status` on a read-only workspace reads it as it is, without writing a byte (no migration, no temp
sweep, no SQLite lock or write-ahead files); commands that write say so in one line and exit 1 (with --json,
one JSON object with an `error` field)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from curation.catalog.errors import GhostsError
from curation.catalog.settings import Settings
from curation.catalog.workspace import init_workspace, open_workspace
from flows.cli import main

PHOTO = "Tom_Cruise_avp_2014_4.jpg"
WRITERS = (
    ["import", "{photo}"],
    ["freeze", "--name", "x", "--resolution", "32"],
    ["takedown", "--owner", "someone", "--reason", "asked"],
    ["init"],
)


def ghosts(*args, env=None):
    r = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output  # never a traceback
    return r


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root with its sha256 and mtime: what 'not a byte written' compares."""
    return {
        p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def filled(tmp_path, faces_dir):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    assert ghosts("import", faces_dir / PHOTO, "--data", ws.root).exit_code == 0
    gc.collect()  # the command's engine: its last connection closes, checkpoints and removes the -wal file
    assert not Path(f"{ws.root / 'catalog.sqlite'}-wal").exists()
    (ws.root / "previews" / ".tmp-left-by-a-killed-writer").write_bytes(b"x")  # a sweep would remove it
    old = 1_000_000_000
    os.utime(ws.root / "previews" / ".tmp-left-by-a-killed-writer", (old, old))
    return ws.root


def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made read-only for real: a read-only bind mount (root ignores permissions) or chmod -R a-w."""
    if os.geteuid() == 0:
        point = folder.parent / f"ro-{uuid.uuid4().hex[:6]}"
        point.mkdir()
        if not (_mount("--bind", str(folder), str(point)) and _mount("-o", "remount,ro,bind", str(point))):
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
            point.rmdir()
            pytest.skip("running as root without a read-only bind mount: see the simulated test below")
        try:
            yield point
        finally:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)
            point.rmdir()
    else:
        paths = [folder, *folder.rglob("*")]
        for p in paths:
            p.chmod(p.stat().st_mode & ~0o222)
        try:
            yield folder
        finally:
            for p in paths:
                p.chmod(p.stat().st_mode | 0o200)


def _status_and_writers(root: Path, faces_dir: Path) -> None:
    before = snapshot(root)
    r = ghosts("status", "--data", root)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1].startswith("images   1  new=1")
    r = ghosts("status", "--json", "--data", root)
    assert r.exit_code == 0 and json.loads(r.stdout)["images"]["total"] == 1
    assert snapshot(root) == before  # not a byte, not a lock file, the old temp file still there
    assert not Path(f"{root / 'catalog.sqlite'}-shm").exists()
    for cmd in WRITERS:
        cmd = [c.format(photo=faces_dir / "2007_007763.jpg") for c in cmd]
        r = ghosts(*cmd, "--data", root)
        assert r.exit_code == 1, (cmd, r.output)
        lines = [x for x in r.stderr.splitlines() if x.startswith("ghosts:")]
        assert len(lines) == 1 and "read-only" in lines[0], (cmd, r.stderr)
        r = ghosts(*cmd, "--json", "--data", root) if cmd[0] != "init" else None
        if r is not None:
            assert r.exit_code == 1 and "read-only" in json.loads(r.stdout)["error"], (cmd, r.stdout)
    assert snapshot(root) == before


def test_status_reads_a_read_only_workspace_and_writers_refuse(filled, faces_dir):
    with read_only(filled) as root:
        _status_and_writers(root, faces_dir)


def test_status_sees_what_a_killed_writer_left_in_the_write_ahead_log(filled, faces_dir, tmp_path):
    holder = sqlite3.connect(filled / "catalog.sqlite")
    holder.execute("UPDATE images SET status = 'excluded'")
    holder.commit()  # in the -wal file; no checkpoint while the connection is open
    copy = tmp_path / "killed"
    shutil.copytree(filled, copy)  # what kill -9 of that writer leaves on disk
    holder.close()
    assert Path(f"{copy / 'catalog.sqlite'}-wal").stat().st_size > 0
    with read_only(copy) as root:
        st = json.loads(ghosts("status", "--json", "--data", root).stdout)
        assert st["images"]["by_status"] == {"excluded": 1}


def test_read_only_as_ghosts_sees_it_without_a_mount(filled, faces_dir, monkeypatch):
    """Where the folder cannot really be made read-only (root without mount), ghosts is told it is: status
    must still leave every byte as it was (the catalog opened immutable), and writers refuse."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real(p, mode, **k))
    _status_and_writers(filled, faces_dir)


def test_an_older_schema_in_a_read_only_workspace_is_a_clear_error(filled, monkeypatch):
    with contextlib.closing(sqlite3.connect(filled / "catalog.sqlite")) as c:
        c.execute("UPDATE alembic_version SET version_num = '0002'")
        c.commit()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if mode & os.W_OK else real(p, mode, **k))
    with pytest.raises(GhostsError, match="older schema .*revision 0002.* cannot be upgraded in place"):
        open_workspace(filled, read_only=True)
    r = ghosts("status", "--json", "--data", filled)
    assert r.exit_code == 1 and "older schema" in json.loads(r.stdout)["error"]


def test_a_read_only_workspace_object_refuses_writes(filled):
    from curation.catalog.schema import Image

    ws = open_workspace(filled, read_only=True)
    try:
        with pytest.raises(Exception, match="readonly|read-only") as e, ws.session() as s:
            s.query(Image).update({"owner": "x"})
        from curation.catalog.errors import environment_message

        assert "read-only" in environment_message(e.value)
    finally:
        ws.close()
    ws = open_workspace(filled)
    with ws.session() as s:
        assert [im.owner for im in s.query(Image)] == [None]
    ws.close()


def test_status_of_a_workspace_whose_catalog_is_gone_says_so_and_creates_nothing(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    for extra in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{ws.root / 'catalog.sqlite'}{extra}")
    r = ghosts("status", "--json", "--data", ws.root)
    assert r.exit_code == 1 and "is missing" in json.loads(r.stdout)["error"] and "ghosts init" in r.stderr
    assert not (ws.root / "catalog.sqlite").exists()
    assert ghosts("init", "--data", ws.root).exit_code == 0  # (no data beside it: init starts an empty one)
    assert json.loads(ghosts("status", "--json", "--data", ws.root).stdout)["images"]["total"] == 0


def test_a_catalog_named_by_ghosts_db_url_is_opened_read_only_too(tmp_path, faces_dir, monkeypatch):
    db = tmp_path / "elsewhere" / "my catalog.sqlite"
    db.parent.mkdir()
    env = {"GHOSTS_DB_URL": f"sqlite:///{db}"}
    assert ghosts("init", "--data", tmp_path / "ws", env=env).exit_code == 0
    assert ghosts("import", faces_dir / PHOTO, "--data", tmp_path / "ws", env=env).exit_code == 0
    gc.collect()
    monkeypatch.setenv("GHOSTS_DB_URL", env["GHOSTS_DB_URL"])
    ws = open_workspace(tmp_path / "ws", Settings(), read_only=True)
    try:
        assert "mode=ro" in ws.db_url and ws.catalog_file == db
        with pytest.raises(Exception, match="readonly"), ws.session() as s:
            s.execute(text("UPDATE images SET owner = 'x'"))
    finally:
        ws.close()
    r = ghosts("status", "--json", "--data", tmp_path / "ws", env=env)
    assert r.exit_code == 0 and json.loads(r.stdout)["images"]["total"] == 1
