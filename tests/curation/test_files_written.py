"""What ghosts leaves on disk: files with the user's umask (secrets 0600), temp files swept, dataset versions
shown as what they are, and a huge non-image refused from its header."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from curation.catalog.schema import Image
from curation.catalog.settings import Settings
from curation.catalog.store import TMP_PREFIX, atomic_write_bytes, atomic_write_text
from curation.catalog.workspace import init_workspace, open_workspace
from curation.datasets.freeze import freeze_dataset
from curation.datasets.takedown import takedown
from curation.sources.ingest import ingest_paths
from flows.cli import main
from tests.curation.test_freeze import PASCAL, add_faces


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_files_get_the_users_umask(tmp_path, faces_dir, umask, mask, expected):
    umask(mask)
    ws = init_workspace(tmp_path / "ws")
    add_faces(ws, faces_dir, PASCAL[:2])
    v1 = freeze_dataset(ws, "ghosts", resolution=32, progress=False)
    with ws.session() as s:
        stored = [ws.abspath(im.path) for im in s.scalars(select(Image))]
    written = [*stored, v1.path.parent / "manifest.json", ws.root / ".ghosts-workspace"]
    assert {p.name: mode(p) for p in written} == {p.name: expected for p in written}
    # Secrets stay private whatever the umask: asked for, or inside a private folder such as sessions/.
    atomic_write_text(ws.sessions_dir / "someone.json", "{}")
    assert mode(ws.sessions_dir) == 0o700 and mode(ws.sessions_dir / "someone.json") == 0o600
    atomic_write_bytes(ws.datasets_dir / "secret.bin", b"x", private=True)
    assert mode(ws.datasets_dir / "secret.bin") == 0o600
    ws.close()


def test_temp_files_left_by_a_killed_writer_are_swept(workspace):
    old = time.time() - 2 * 3600
    left = [
        workspace.previews_dir / f"{TMP_PREFIX}a.jpg.x1",
        workspace.datasets_dir / "d" / "v1" / f"{TMP_PREFIX}d.zip.y",
        workspace.runs_dir / "r" / f"{TMP_PREFIX}network.pt.z",
        workspace.tmp_dir / f"{TMP_PREFIX}img.q",
    ]
    young = workspace.previews_dir / f"{TMP_PREFIX}b.jpg.x2"  # may belong to a writer still running
    for p in [*left, young]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    for p in left:
        os.utime(p, (old, old))
    open_workspace(workspace.root).close()
    assert [p for p in left if p.exists()] == [] and young.exists()


def test_status_shows_superseded_and_purged_versions(workspace, faces_dir):
    add_faces(workspace, faces_dir, PASCAL)
    with workspace.session() as s:
        for k, im in enumerate(s.scalars(select(Image).order_by(Image.id))):
            im.owner = f"owner{k % 2}"
    freeze_dataset(workspace, "a", resolution=32, progress=False)
    freeze_dataset(workspace, "b", resolution=32, progress=False)
    takedown(workspace, owner="owner0", reason="asked", progress=False)  # a: v1 kept, b: v1 purged below
    r = takedown(workspace, owner="owner1", reason="asked", purge=True, progress=False)
    assert r.purged
    out = CliRunner().invoke(main, ["status", "--json", "--data", str(workspace.root)])
    states = {(d["name"], d["version"]): d["state"] for d in json.loads(out.stdout)["datasets"]}
    assert states == {("a", 1): "purged", ("a", 2): "purged", ("b", 1): "purged", ("b", 2): "purged"}, states
    text = CliRunner().invoke(main, ["status", "--data", str(workspace.root)]).stdout
    assert "[purged (takedown #1: asked; takedown #2: asked)]" in text


def test_status_states_current_older_superseded(workspace, faces_dir):
    add_faces(workspace, faces_dir, PASCAL[:2])
    freeze_dataset(workspace, "a", resolution=32, progress=False)
    add_faces(workspace, faces_dir, PASCAL[2:])  # more photos: v2 holds them too
    with workspace.session() as s:
        for k, im in enumerate(s.scalars(select(Image).order_by(Image.id))):
            im.owner = f"owner{k}"
    freeze_dataset(workspace, "a", resolution=32, progress=False)
    takedown(workspace, owner="owner3", reason="asked", progress=False)  # only in v2
    st = json.loads(CliRunner().invoke(main, ["status", "--json", "--data", str(workspace.root)]).stdout)
    states = [(d["version"], d["state"]) for d in st["datasets"]]
    assert states == [(1, "older"), (2, "superseded"), (3, "current")], states


def test_a_huge_non_image_is_refused_from_its_header(workspace, tmp_path, monkeypatch):
    big = tmp_path / "huge.jpg"
    with big.open("wb") as fh:  # sparse: 1 GB on paper, nothing on disk
        fh.write(b"PK\x03\x04 not a photo at all")
        fh.truncate(1 << 30)
    read = []
    real = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: read.append(self) or real(self))
    summary = ingest_paths(workspace, [big], progress=False)
    assert read == [] and summary.added == 0
    assert summary.rejected[0]["reason"].startswith("not an image: 1073741824 bytes")
    monkeypatch.setenv("GHOSTS_MAX_FILE_BYTES", str(1 << 20))
    ws = open_workspace(workspace.root, Settings())
    assert ingest_paths(ws, [big], progress=False).rejected[0]["reason"].startswith("too large")
    ws.close()


def test_recursive_import_reports_symlink_loops_and_unreadable_folders(
    workspace, faces_dir, tmp_path, monkeypatch
):
    top = tmp_path / "photos"
    (top / "ok").mkdir(parents=True)
    (top / "locked").mkdir()
    (top / "ok" / "a.jpg").write_bytes((faces_dir / PASCAL[0]).read_bytes())
    (top / "locked" / "b.jpg").write_bytes((faces_dir / PASCAL[1]).read_bytes())
    (top / "loop").symlink_to(top / "loop")  # a link to itself
    (top / "ok" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    named_loop = tmp_path / "named-loop.jpg"
    named_loop.symlink_to(named_loop)
    locked = top / "locked"
    if os.geteuid() == 0:  # root reads any folder: make this one fail the way an unreadable one does
        real = os.scandir

        def scandir(path="."):
            if Path(path) == locked:
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        locked.chmod(0)
    try:
        summary = ingest_paths(workspace, [named_loop, top], recursive=True, progress=False)
    finally:
        locked.chmod(0o755)
    reasons = {Path(r["path"]).name: r["reason"] for r in summary.failed}
    assert summary.added == 1 and summary.rejected == []  # a.jpg; the batch went on past every problem
    assert reasons["named-loop.jpg"].startswith("symlink loop")
    assert reasons["loop"].startswith("symlink loop")
    assert reasons["gone.jpg"].startswith("broken symlink")
    assert reasons["locked"] == "cannot read folder: Permission denied"
    out = CliRunner().invoke(main, ["import", "-r", str(named_loop), str(top), "--data", str(workspace.root)])
    assert out.exit_code == 1 and "symlink loop" in out.stdout  # reported per item; non-zero: items failed
    # A path that does not exist at all is one failed item too, with one clear error line at the end.
    out = CliRunner().invoke(main, ["import", str(tmp_path / "typo.jpg"), "--data", str(workspace.root)])
    assert out.exit_code == 1 and "no such file or folder" in out.stdout and "ghosts: error:" in out.stderr


def test_an_archive_writers_leftover_is_swept_by_the_next_writer_but_a_live_ones_is_not(tmp_path, umask):
    from curation.datasets.format import encode_png
    from curation.datasets.writer import ArchiveWriter

    umask(0o022)
    folder = tmp_path / "out"
    folder.mkdir(mode=0o755)  # (pytest's tmp_path is 0700, which would keep the archive 0600)
    out = folder / "out.zip"
    dead = folder / f"{TMP_PREFIX}out.zip.killed"  # what a killed `ghosts pack` leaves: nobody holds it
    dead.write_bytes(b"PK partial")
    other = folder / f"{TMP_PREFIX}unrelated.zip.x"  # another output's: not ours to judge
    other.write_bytes(b"x")
    live = ArchiveWriter(out)  # a writer still running
    try:
        assert not dead.exists() and other.exists()
        with ArchiveWriter(out) as second:  # the same output again: the live writer's temp file stays
            assert live.tmp_path.exists() and second.tmp_path.exists()
            second.add(encode_png(np.zeros((8, 8, 3), np.uint8)))
            info = second.finish("# card\n")
    finally:
        live.abort()
    assert mode(info.path) == 0o644 and not live.tmp_path.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(["out.zip", other.name])
