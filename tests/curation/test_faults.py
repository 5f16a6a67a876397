"""Environment faults: every one is one clear line and exit status 1 (a JSON `error` with --json), and the
workspace is left as it was: odd paths, failed init, missing / damaged / newer / locked / read-only catalog,
a full disk, a --data that cannot be a folder."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Image
from curation.catalog.workspace import init_workspace, open_workspace
from flows.cli import main

PHOTO = "Tom_Cruise_avp_2014_4.jpg"


def ghosts(*args, env=None):
    r = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output  # never a traceback
    return r


def one_error_line(r) -> str:
    assert r.exit_code == 1, r.output
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("ghosts: error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["données", "a b#c?d@e%f", "%C3%A9 100%", "ünï cødé/sub dir"])
def test_any_typed_path_is_a_workspace(tmp_path, faces_dir, name):
    root = tmp_path / name
    r = ghosts("init", "--data", root)
    assert r.exit_code == 0, r.output
    assert str(root / "catalog.sqlite") in r.stdout
    assert (root / "catalog.sqlite").is_file() and not list(tmp_path.glob("**/*%25*"))
    assert ghosts("import", faces_dir / PHOTO, "--data", root).exit_code == 0
    r = ghosts("status", "--json", "--data", root)
    assert r.exit_code == 0 and json.loads(r.stdout)["images"]["total"] == 1
    assert ghosts("init", "--data", root).exit_code == 0  # again: safe, keeps the image
    assert json.loads(ghosts("status", "--json", "--data", root).stdout)["images"]["total"] == 1


def test_a_failed_init_leaves_nothing_half_made(tmp_path, monkeypatch):
    import curation.catalog.workspace as wsmod

    def broken(engine, revision="head"):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "new" / "catalog.sqlite"))

    monkeypatch.setattr(wsmod, "upgrade_catalog", broken)
    r = ghosts("init", "--data", tmp_path / "new" / "ws")
    assert "cannot create a workspace" in one_error_line(r) and "the disk is full" in r.stderr
    assert not (tmp_path / "new").exists()
    # Into a folder the user made: only what init added goes.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    one_error_line(ghosts("init", "--data", tmp_path / "mine"))
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
    monkeypatch.undo()
    assert ghosts("init", "--data", tmp_path / "mine").exit_code == 0
    open_workspace(tmp_path / "mine").close()


def test_data_on_a_path_that_cannot_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    for data in (tmp_path / "file", tmp_path / "file" / "ws"):
        for cmd in (["init"], ["status"], ["status", "--json"]):
            r = ghosts(*cmd, "--data", data)
            assert r.exit_code != 0 and "Traceback" not in r.output
    r = ghosts("init", "--data", tmp_path / "file" / "ws")
    assert "is a file, not a folder" in one_error_line(r)
    r = ghosts("status", "--json", "--data", tmp_path / "file" / "ws")
    assert "no ghosts workspace" in json.loads(r.stdout)["error"]


@pytest.fixture
def filled(tmp_path, faces_dir):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    assert ghosts("import", faces_dir / PHOTO, "--data", ws.root).exit_code == 0
    return ws.root


def _json_error(r) -> str:
    one_error_line(r)
    doc = json.loads(r.stdout)
    assert list(doc) == ["error"]
    return doc["error"]


def test_missing_catalog_beside_images_is_not_recreated(filled):
    for extra in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{filled / 'catalog.sqlite'}{extra}")
    for cmd in (["status"], ["init"], ["import", filled / "images"]):
        r = ghosts(*cmd, "--data", filled)
        assert "catalog" in one_error_line(r) and "is missing" in r.stderr and "backup" in r.stderr
    assert "is missing" in _json_error(ghosts("status", "--json", "--data", filled))
    assert not (filled / "catalog.sqlite").exists()


def test_damaged_catalog(filled):
    (filled / "catalog.sqlite").write_bytes(b"this is not sqlite" * 100)
    for extra in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{filled / 'catalog.sqlite'}{extra}")
    assert "damaged" in _json_error(ghosts("status", "--json", "--data", filled))
    assert "damaged" in one_error_line(ghosts("import", filled / "images", "--data", filled))


def test_catalog_from_a_newer_ghosts_is_refused_untouched(filled):
    with contextlib.closing(sqlite3.connect(filled / "catalog.sqlite")) as c:
        c.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
        c.commit()
    err = _json_error(ghosts("status", "--json", "--data", filled))
    assert "newer ghosts" in err and "9999_from_the_future" in err
    with contextlib.closing(sqlite3.connect(filled / "catalog.sqlite")) as c:
        assert c.execute("SELECT version_num FROM alembic_version").fetchall() == [("9999_from_the_future",)]


def test_locked_catalog(filled, faces_dir, tmp_path):
    other = tmp_path / "other.jpg"
    other.write_bytes((faces_dir / "2007_007763.jpg").read_bytes())
    holder = sqlite3.connect(filled / "catalog.sqlite", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    try:
        env = {"GHOSTS_LOCK_TIMEOUT": "0.3"}
        r = ghosts("status", "--json", "--data", filled, env=env)  # readers are not blocked (WAL)
        assert r.exit_code == 0 and json.loads(r.stdout)["images"]["total"] == 1
        r = ghosts("import", other, "--json", "--data", filled, env=env)
        assert "locked by another ghosts process" in _json_error(r)
    finally:
        holder.rollback()
        holder.close()
    ws = open_workspace(filled)
    with ws.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1  # nothing half-written
    ws.close()
    assert ghosts("import", other, "--data", filled).exit_code == 0


def test_disk_full_during_import_is_one_line_and_no_row_without_its_file(filled, faces_dir, monkeypatch):
    from curation.sources import ingest

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(filled / "tmp" / ".tmp-x"))

    monkeypatch.setattr(ingest, "put_bytes", full)
    r = ghosts("import", faces_dir / "2007_007763.jpg", "--json", "--data", filled)
    assert _json_error(r).startswith("the disk is full")
    ws = open_workspace(filled)
    with ws.session() as s:
        assert s.scalar(select(func.count()).select_from(Image)) == 1
    ws.close()


def _mount(*args) -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture
def mountpoint(tmp_path):
    point = tmp_path / f"mnt-{uuid.uuid4().hex[:6]}"
    point.mkdir()
    yield point
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def test_really_full_disk(mountpoint, faces_dir, tmp_path):
    """On a 2 MB tmpfs (needs root): import until the disk is full; one line, and the catalog still opens."""
    if not _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mountpoint)):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    root = mountpoint / "ws"
    assert ghosts("init", "--data", root).exit_code == 0
    big = tmp_path / "big"
    big.mkdir()
    import numpy as np
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    for k in range(6):  # incompressible 600 KB PNGs: the third one does not fit
        PILImage.fromarray(rng.integers(0, 255, (400, 500, 3), dtype=np.uint8)).save(big / f"{k}.png")
    r = ghosts("import", big, "--json", "--data", root)
    assert _json_error(r).startswith(("the disk is full", "the disk holding the catalog is full"))
    ws = open_workspace(root)
    with ws.session() as s:
        for im in s.scalars(select(Image)):
            assert ws.abspath(im.path).is_file()  # every row has its file
    ws.close()


def test_read_only_workspace(filled, mountpoint):
    """Read-only by a read-only bind mount (root) or by permissions (other users): `status` reads it as it is
    (tests/curation/test_status_readonly.py), commands that write say it is read-only."""
    if _mount("--bind", str(filled), str(mountpoint)) and _mount("-o", "remount,ro,bind", str(mountpoint)):
        root = mountpoint
    elif os.geteuid() != 0:
        root = filled
        for p in [filled, *filled.rglob("*")]:
            p.chmod(p.stat().st_mode & ~0o222)
    else:
        pytest.skip("cannot make a read-only folder here")
    try:
        assert ghosts("status", "--data", root).exit_code == 0
        for cmd in (["import", root / "images"], ["import", root / "images", "--json"]):
            r = ghosts(*cmd, "--data", root)
            assert "read-only" in one_error_line(r)
        r = ghosts("import", root / "images", "--json", "--data", root)
        assert "read-only" in json.loads(r.stdout)["error"]
    finally:
        if root == filled:
            for p in [filled, *filled.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)


def test_library_raises_ghosts_errors_not_sqlite_ones(filled):
    (filled / "catalog.sqlite").write_bytes(b"\0" * 4096)
    with pytest.raises(GhostsError, match="damaged|not an SQLite"):
        open_workspace(Path(filled))


def test_data_with_a_name_too_long_for_the_file_system(tmp_path):
    data = tmp_path / ("x" * 300)
    for cmd in (["init"], ["status"]):
        assert "the file name is too long" in one_error_line(ghosts(*cmd, "--data", data))
    assert "too long" in _json_error(ghosts("status", "--json", "--data", data))
    assert list(tmp_path.iterdir()) == []
