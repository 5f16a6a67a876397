"""`ghosts import` of paths that cannot be read (missing, unreadable, a symlink loop, a named pipe, a broken
link, an unreadable sub-folder) among good ones: each is reported as that item, the batch goes on, the summary
comes at the end, and the exit status is non-zero because something failed (with --json: one document holding
the summary and an `error` field)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from curation.catalog.errors import GhostsError
from curation.catalog.files import collect_files
from curation.sources.ingest import Unreadable, ingest_paths, read_local_file
from flows.cli import main

GOOD = ("Tom_Cruise_avp_2014_4.jpg", "2007_007763.jpg")


@pytest.fixture
def mess(tmp_path, faces_dir, monkeypatch):
    """Two good photos named around six paths that cannot be read, and a folder holding more of the kind."""
    d = tmp_path / "in"
    d.mkdir()
    good = []
    for name in GOOD:
        (d / name).write_bytes((faces_dir / name).read_bytes())
        good.append(d / name)
    locked = d / "locked.jpg"
    locked.write_bytes((faces_dir / "dogs.jpg").read_bytes())
    if os.geteuid() == 0:  # root reads any file: make this one fail the way an unreadable one does
        real = os.open

        def fake_open(path, flags, *a, **k):
            if Path(path) == locked:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, flags, *a, **k)

        monkeypatch.setattr(os, "open", fake_open)
    else:
        locked.chmod(0)
    loop = d / "loop.jpg"
    loop.symlink_to(loop)
    broken = d / "broken.jpg"
    broken.symlink_to(tmp_path / "nowhere.jpg")
    fifo = d / "pipe.jpg"
    os.mkfifo(fifo)  # opening it for reading would block for ever
    folder = d / "folder"
    folder.mkdir()
    (folder / "bald_guys.jpg").write_bytes((faces_dir / "bald_guys.jpg").read_bytes())
    os.mkfifo(folder / "inner-pipe.png")
    (folder / "inner-loop.jpg").symlink_to(folder / "inner-loop.jpg")
    named = [good[0], d / "typo.jpg", locked, loop, broken, fifo, folder, good[1]]
    yield named
    locked.chmod(0o644)


EXPECTED_FAILED = {
    "typo.jpg": "no such file or folder",
    "locked.jpg": "cannot read file: Permission denied",
    "loop.jpg": "symlink loop",
    "broken.jpg": "broken symlink",
    "pipe.jpg": "not a file or folder: a named pipe",
    "inner-pipe.png": "not a file or folder: a named pipe",
    "inner-loop.jpg": "symlink loop",
}


def _check_failed(failed):
    reasons = {Path(f["path"]).name: f["reason"] for f in failed}
    assert set(reasons) == set(EXPECTED_FAILED), reasons
    for name, start in EXPECTED_FAILED.items():
        assert reasons[name].startswith(start), (name, reasons[name])


def test_the_batch_goes_past_every_path_that_cannot_be_read(workspace, mess):
    summary = ingest_paths(workspace, mess, progress=False)
    assert summary.added == 3  # the two named photos and the one in the folder
    assert summary.rejected == []  # a path that cannot be read is a failure, not a verdict on an image
    _check_failed(summary.failed)
    # The order of the report follows the order of the paths given.
    assert Path(summary.failed[0]["path"]).name == "typo.jpg"


def test_cli_reports_each_item_then_the_summary_and_exits_nonzero(workspace, mess):
    r = CliRunner().invoke(main, ["import", *map(str, mess), "--data", str(workspace.root)])
    assert r.exit_code == 1, r.output
    out = r.stdout.splitlines()
    assert out[0].startswith("added 3,") and "failed 7" in out[0]
    for name, start in EXPECTED_FAILED.items():
        assert any(line.startswith("  failed ") and name in line and start in line for line in out), name
    err = [x for x in r.stderr.splitlines() if x.startswith("ghosts:")]  # (the progress bar is there too)
    assert err == [
        "ghosts: error: 7 of the paths could not be read (listed above); the other items were imported"
    ]
    assert "Traceback" not in r.output


def test_cli_json_is_one_document_with_the_summary_and_an_error(workspace, mess):
    r = CliRunner().invoke(main, ["import", *map(str, mess), "--json", "--data", str(workspace.root)])
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)  # one JSON document, nothing else on stdout
    assert doc["added"] == 3 and doc["rejected"] == []
    _check_failed(doc["failed"])
    assert doc["error"].startswith("7 of the paths could not be read")
    # Run again: the good ones are duplicates now, the bad ones still fail, one by one.
    again = json.loads(
        CliRunner().invoke(main, ["import", *map(str, mess), "--json", "--data", str(workspace.root)]).stdout
    )
    assert again["added"] == 0 and again["duplicates"] == 3 and len(again["failed"]) == 7


def test_only_bad_paths_still_give_the_summary(workspace, tmp_path):
    r = CliRunner().invoke(
        main,
        ["import", str(tmp_path / "a.jpg"), str(tmp_path / "b"), "--json", "--data", str(workspace.root)],
    )
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["added"] == 0 and [f["reason"] for f in doc["failed"]] == ["no such file or folder"] * 2


def test_a_clean_batch_and_refusals_exit_zero(workspace, faces_dir, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not an image")
    r = CliRunner().invoke(
        main, ["import", str(faces_dir / GOOD[0]), str(notes), "--json", "--data", str(workspace.root)]
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["added"] == 1 and len(doc["rejected"]) == 1 and doc["failed"] == [] and "error" not in doc


def test_a_file_swapped_for_a_pipe_after_the_listing_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "late.jpg"
    os.mkfifo(fifo)
    with pytest.raises(Unreadable, match="not a file or folder: a named pipe"):
        read_local_file(fifo, 1 << 20)
    with pytest.raises(Unreadable, match="cannot read file: No such file"):
        read_local_file(tmp_path / "gone.jpg", 1 << 20)


def test_pack_and_other_callers_without_a_problem_list_still_stop_at_a_bad_name(tmp_path):
    os.mkfifo(tmp_path / "p")
    with pytest.raises(GhostsError, match="not a file or folder: a named pipe"):
        collect_files([tmp_path / "p"])
    with pytest.raises(GhostsError, match="no such file or folder"):
        collect_files([tmp_path / "missing"])


def test_a_device_named_on_the_command_line_is_one_failed_item(workspace, faces_dir):
    summary = ingest_paths(workspace, ["/dev/null", faces_dir / GOOD[0], "/dev/zero"], progress=False)
    assert summary.added == 1
    assert [f["reason"] for f in summary.failed] == ["not a file or folder: a character device"] * 2
