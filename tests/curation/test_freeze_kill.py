"""A freeze killed (-9) at any moment leaves nothing that looks like a version, and the next freeze finishes
or redoes it: killed before its catalog commit, or between the commit and the rename into vN/."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import pytest
from click.testing import CliRunner

from curation.datasets.freeze import freeze_dataset
from flows.cli import main
from tests.curation.test_freeze import PASCAL, add_faces

KILL_AT = {
    # after the archive and its manifest are written, before the catalog row is committed
    "before_commit": "freeze.atomic_write_text",
    # after the commit, before the staging folder is renamed to vN
    "before_rename": "freeze.os.replace",
}


def freeze_killed_at(ws, point: str) -> int:
    script = textwrap.dedent(f"""
        import os
        from curation.catalog.workspace import open_workspace
        from curation.datasets import freeze
        target = {KILL_AT[point]!r}.split(".")[-1]
        holder = freeze if {point!r} == "before_commit" else freeze.os
        real = getattr(holder, target)
        def killed(*args, **kwargs):
            if {point!r} == "before_commit":
                real(*args, **kwargs)  # the manifest is written...
            elif ".tmp-v" not in str(args[0]):
                return real(*args, **kwargs)  # (the zip's own temp file rename)
            os.kill(os.getpid(), 9)  # ...and the process dies like kill -9
        if {point!r} == "before_commit":
            freeze.atomic_write_text = killed
        else:
            freeze.os = type("os", (), {{**{{k: getattr(os, k) for k in dir(os) if not k.startswith("__")}},
                                         "replace": staticmethod(killed)}})
        freeze.freeze_dataset(open_workspace({str(ws.root)!r}), "ghosts", resolution=32, progress=False)
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, check=False).returncode


def versions_on_disk(ws) -> list[str]:
    """Folders and archives a user or `ghosts verify` would take for a version."""
    folder = ws.datasets_dir / "ghosts"
    return sorted(p.relative_to(folder).as_posix() for p in folder.glob("v*"))


@pytest.mark.parametrize("point", list(KILL_AT))
def test_a_killed_freeze_leaves_no_version_lookalike_and_the_next_one_settles_it(workspace, faces_dir, point):
    add_faces(workspace, faces_dir, PASCAL)
    assert freeze_killed_at(workspace, point) == -9
    st = json.loads(CliRunner().invoke(main, ["status", "--json", "--data", str(workspace.root)]).stdout)
    assert versions_on_disk(workspace) == []  # nothing named vN without being a finished, recorded version
    if point == "before_commit":
        assert st["datasets"] == []
    else:  # recorded, not yet in place: status says so instead of listing it as live
        assert [d["state"] for d in st["datasets"]] == ["missing"]
    again = freeze_dataset(workspace, "ghosts", resolution=32, progress=False)
    assert again.version == 1 and again.path.is_file()
    assert versions_on_disk(workspace) == ["v1"]
    assert not list((workspace.datasets_dir / "ghosts").glob(".tmp-*"))
    with zipfile.ZipFile(again.path) as z:
        assert sum(n.endswith(".png") for n in z.namelist()) == again.count
    st = json.loads(CliRunner().invoke(main, ["status", "--json", "--data", str(workspace.root)]).stdout)
    assert [(d["version"], d["state"]) for d in st["datasets"]] == [(1, "current")]
    r = CliRunner().invoke(main, ["verify", str(again.path)])
    assert r.exit_code == 0, r.output
