import os
import time

import pytest

from curation.catalog.store import atomic_write_bytes, atomic_writer, put_bytes, sweep_temp_files


def test_atomic_writer_keeps_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as fh:
        fh.write(b"new, half")
        raise RuntimeError("disk on fire")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_put_bytes_stores_each_content_once(workspace):
    a = put_bytes(workspace, b"same bytes", "png")
    b = put_bytes(workspace, b"same bytes", "png")
    assert a == b
    sha, rel = a
    assert rel == f"images/{sha[:2]}/{sha}.png"
    assert workspace.abspath(rel).read_bytes() == b"same bytes"
    assert list(workspace.tmp_dir.iterdir()) == []


def test_sweep_removes_only_stale_temp_files(tmp_path):
    old = tmp_path / ".tmp-a.jpg.123"
    young = tmp_path / ".tmp-b.jpg.456"
    old.write_bytes(b"x")
    young.write_bytes(b"y")
    past = time.time() - 7200
    os.utime(old, (past, past))
    assert sweep_temp_files(tmp_path) == 1
    assert not old.exists() and young.exists()
