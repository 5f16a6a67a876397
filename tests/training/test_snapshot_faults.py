"""Snapshot faults (issue 16): sizes bounded before building, malformed JSON, checksums, a kill between the
weights and the JSON, unique names per step, --resume latest / latest-good, one writer per run folder."""

import json
import multiprocessing
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.tiny import TINY as TINY_RUN
from training.checkpoint import (
    LOCK_NAME,
    RunLock,
    latest_good_snapshot,
    latest_snapshot,
    list_snapshots,
    load_snapshot,
    save_snapshot,
    snapshot_name,
)
from training.errors import TrainingError
from training.networks import Generator

TINY = {"img_resolution": 16, "channel_base": 256, "channel_max": 16}


def _G(seed=0):
    import torch

    torch.manual_seed(seed)
    return Generator(z_dim=8, w_dim=8, mapping_layers=2, **TINY)


def _edit_json(stem, **changes):
    js = stem.with_suffix(".json")
    meta = json.loads(js.read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            meta[outer][inner] = value
        else:
            meta[key] = value
    js.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "field,value",
    [
        ("G_kwargs.mapping_layers", 100_000),
        ("G_kwargs.img_resolution", 1 << 20),
        ("G_kwargs.img_resolution", 48),
        ("G_kwargs.img_channels", 10**6),
        ("G_kwargs.z_dim", 10**7),
        ("G_kwargs.w_dim", -1),
        ("G_kwargs.c_dim", 10**9),
        ("G_kwargs.channel_max", 10**6),
        ("G_kwargs.channel_base", "big"),
        ("G_kwargs.mapping_layers", True),
        ("G_kwargs.evil", 1),
        ("cur_nimg", -5),
        ("augment_p", 7),
    ],
)
def test_sizes_in_the_json_are_bounded_before_building(tmp_path, field, value):
    stem = save_snapshot(tmp_path / "s", G=_G())
    _edit_json(stem, **{field: value})
    start = time.perf_counter()
    with pytest.raises(TrainingError) as e:
        load_snapshot(stem).build_generator()
    assert field.split(".")[-1] in str(e.value)
    assert time.perf_counter() - start < 5  # refused at once, nothing big built


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1, 2]",
        '"a string"',
        "\xff\xfe",
        '{"format": 3}',
        '{"format": "ghosts-stylegan2-ada-snapshot", "G_kwargs": [1]}',
        '{"format": "ghosts-stylegan2-ada-snapshot", "format_version": "x"}',
    ],
)
def test_malformed_json_is_a_clear_error(tmp_path, text):
    stem = save_snapshot(tmp_path / "s", G=_G())
    stem.with_suffix(".json").write_bytes(
        text.encode("utf-8", "surrogateescape") if text != "\xff\xfe" else b"\xff\xfe\x00"
    )
    with pytest.raises(TrainingError):
        load_snapshot(stem)


def test_the_json_records_the_weights_sha256_and_a_changed_byte_is_refused(tmp_path):
    import hashlib

    stem = save_snapshot(tmp_path / "s", G=_G())
    st = stem.with_suffix(".safetensors")
    meta = json.loads(stem.with_suffix(".json").read_text())
    assert meta["weights_sha256"] == hashlib.sha256(st.read_bytes()).hexdigest()
    blob = bytearray(st.read_bytes())
    blob[-1] ^= 1  # one flipped bit in a tensor: safetensors itself would load it
    st.write_bytes(bytes(blob))
    with pytest.raises(TrainingError, match="damaged"):
        load_snapshot(stem)


def test_kill_between_weights_and_json_leaves_a_pair_that_is_refused(tmp_path):
    """Same step written twice (as a resumed run does): the second write dies after its weights. The old JSON now
    sits beside new weights; that pair must not load silently."""
    run = tmp_path / "00000-a-auto"
    stem = save_snapshot(run / snapshot_name(4000), G=_G(1))
    other = save_snapshot(tmp_path / "other", G=_G(2))
    stem.with_suffix(".safetensors").write_bytes(other.with_suffix(".safetensors").read_bytes())  # the kill
    with pytest.raises(TrainingError, match="damaged"):
        load_snapshot(stem)
    # a new step killed after its weights: weights without a JSON are no snapshot at all
    (run / (snapshot_name(4500) + ".safetensors")).write_bytes(other.with_suffix(".safetensors").read_bytes())
    assert list_snapshots(run) == [stem]


def test_names_are_unique_per_image_count_and_sort_by_it():
    assert snapshot_name(0) == "network-snapshot-000000"
    assert snapshot_name(4000) == "network-snapshot-000004"
    names = [snapshot_name(n) for n in (32, 64, 999, 1000, 1032)]
    assert len(set(names)) == 5
    assert names[0] == "network-snapshot-000000-032"


def test_list_snapshots_orders_sub_kimg_snapshots(tmp_path):
    G = _G()
    for n in (1032, 64, 32, 1000):
        save_snapshot(tmp_path / snapshot_name(n), G=G, cur_nimg=n)
    assert [load_snapshot(s).cur_nimg for s in list_snapshots(tmp_path)] == [32, 64, 1000, 1032]


def test_latest_good_skips_a_damaged_newest_pair(tmp_path):
    run = tmp_path / "00000-a-auto"
    good = save_snapshot(run / snapshot_name(32), G=_G(), cur_nimg=32)
    bad = save_snapshot(run / snapshot_name(64), G=_G(), cur_nimg=64)
    bad.with_suffix(".safetensors").write_bytes(b"\0" * 10)
    assert latest_snapshot(tmp_path) == bad
    said = []
    assert latest_good_snapshot(tmp_path, log=said.append) == good
    assert said and bad.name in said[0]
    good.with_suffix(".json").write_text("{")
    assert latest_good_snapshot(tmp_path, log=said.append) is None


def _hold_lock(run_dir, ready, release):
    with RunLock(run_dir):
        ready.set()
        release.wait(20)


def test_one_writer_per_run_folder(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(TrainingError, match="another training process"):
            RunLock(tmp_path).acquire()
    finally:
        release.set()
        holder.join(30)
    # free again once the holder is done, and exclusive within one process too
    with RunLock(tmp_path), pytest.raises(TrainingError, match="another training process"):
        RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()


def _png_claiming(width, height):
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\0" * 64
    )


@pytest.mark.parametrize("size", [(30000, 30000), (32, 32), (16, 8)])
def test_training_reader_checks_the_png_header_size_before_decoding(tmp_path, size, monkeypatch):
    import zipfile

    import PIL.Image

    from tests.training.archives import blob_images, write_archive
    from training.dataset import ImageArchive

    path = write_archive(tmp_path / "a.zip", blob_images(3, 16))
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    images = sorted(n for n in members if n.endswith(".png"))
    members[images[1]] = _png_claiming(*size)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
    ds = ImageArchive(bad)
    assert ds[0][0].shape == (3, 16, 16)
    opened = []
    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: opened.append(a) or pytest.fail("decoded"))
    with pytest.raises(TrainingError, match=f"claims {size[0]}x{size[1]} pixels"):
        ds[1]
    assert not opened


def _loop_setup(tmp_path):
    from tests.training.archives import make_archive
    from training.config import build_options

    archive = make_archive(tmp_path / "a", n=8, res=16)
    out = tmp_path / "runs"
    run = out / "00000-blobs-auto"
    import torch

    kw = {
        "z_dim": 16,
        "w_dim": 16,
        "mapping_layers": 2,
        "img_resolution": 16,
        "channel_base": 128,
        "channel_max": 16,
    }
    torch.manual_seed(1)
    good = save_snapshot(run / snapshot_name(32), G=Generator(**kw), cur_nimg=32)
    torch.manual_seed(2)
    bad = save_snapshot(run / snapshot_name(64), G=Generator(**kw), cur_nimg=64)
    opts = build_options(archive, out, batch=4, kimg=0.008, tick_kimg=0.004, resume="latest", **TINY_RUN)
    return run, good, bad, opts


def test_train_resume_latest_refuses_a_damaged_newest_pair_and_a_locked_run(tmp_path):
    from training.loop import train

    run, good, bad, opts = _loop_setup(tmp_path)
    bad.with_suffix(".safetensors").write_bytes(
        good.with_suffix(".safetensors").read_bytes()
    )  # killed rewrite
    with pytest.raises(TrainingError, match="newest snapshot is unusable.*latest-good"):
        train(opts)
    with RunLock(run), pytest.raises(TrainingError, match="another training process"):
        train(dataclasses_replace(opts, resume="latest-good"))


def dataclasses_replace(obj, **kw):
    import dataclasses

    return dataclasses.replace(obj, **kw)


# ---------------------------------------------------------------------------------------- the run folder lock


def test_the_lock_file_goes_when_the_lock_is_released_however_the_block_ends(tmp_path):
    lock = tmp_path / LOCK_NAME
    with RunLock(tmp_path):
        assert lock.read_text().strip() == str(os.getpid())
    assert not lock.exists()
    with pytest.raises(RuntimeError, match="boom"), RunLock(tmp_path):
        raise RuntimeError("boom")
    assert not lock.exists()


HOLD_AND_SLEEP = (
    "import sys, time; from training.checkpoint import RunLock; RunLock(sys.argv[1]).acquire(); "
    "print('held', flush=True); time.sleep(60)"
)


def test_taking_the_lock_sweeps_the_temp_files_a_killed_writer_left(tmp_path):
    from curation.catalog.store import TMP_PREFIX

    left = [
        tmp_path / f"{TMP_PREFIX}network-snapshot-000004.safetensors.x1",
        tmp_path / f"{TMP_PREFIX}fakes.png.y",
    ]
    for p in left:
        p.write_bytes(b"partial")  # young: the lock, not the age, says nobody writes them
    keep = tmp_path / "network-snapshot-000000-004.json"
    keep.write_text("{}")
    with RunLock(tmp_path) as lock:
        assert lock.swept == 2
    assert [p for p in left if p.exists()] == [] and keep.exists()


def test_a_full_disk_when_the_lock_is_written_leaves_no_lock_file(tmp_path, monkeypatch):
    import errno

    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        RunLock(tmp_path).acquire()
    monkeypatch.undo()
    assert not (tmp_path / LOCK_NAME).exists()
    RunLock(tmp_path).acquire().release()  # and nothing is held


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_message(tmp_path):
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_AND_SLEEP,
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(TrainingError, match=rf"another training process \(pid {child.pid}\)"):
            RunLock(tmp_path).acquire()
    finally:
        child.kill()
        child.wait()
    assert (tmp_path / LOCK_NAME).read_text().strip() == str(child.pid)  # kill -9 leaves the file
    said = []
    with RunLock(tmp_path, log=said.append) as lock:
        assert lock.taken_over_from == child.pid
        assert (tmp_path / LOCK_NAME).read_text().strip() == str(os.getpid())
    assert len(said) == 1 and f"taking over the lock left by process {child.pid}" in said[0]
    assert "no longer running" in said[0]
    assert not (tmp_path / LOCK_NAME).exists()


def _contend(run_dir, rounds, clashes):
    inside = Path(run_dir) / "inside"
    got = 0
    while got < rounds:
        try:
            lock = RunLock(run_dir).acquire()
        except TrainingError:
            continue
        try:
            fd = os.open(inside, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # a second holder would find it there
        except FileExistsError:
            with clashes.get_lock():
                clashes.value += 1
        else:
            os.close(fd)
            os.unlink(inside)
        lock.release()
        got += 1


def test_two_processes_taking_and_releasing_one_run_never_hold_it_together(tmp_path):
    """Removing the lock file on release must not let a process that opened the old file and one that makes
    the new one both think they hold the run."""
    ctx = multiprocessing.get_context("spawn")
    clashes = ctx.Value("i", 0)
    procs = [ctx.Process(target=_contend, args=(tmp_path, 300, clashes)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert clashes.value == 0
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_run_leaves_no_lock_and_fakes_grids_are_named_per_snapshot(tmp_path):
    from training.loop import train

    run, _, _, opts = _loop_setup(tmp_path)
    with pytest.raises(TrainingError, match="no training_options.json"):  # fails with the run locked
        train(dataclasses_replace(opts, resume="latest-good"))
    assert not (run / LOCK_NAME).exists()
    # A new run with a snapshot every tick after the first, 4 images apart (< 1 kimg): each grid its own file.
    old_mask = os.umask(0o022)
    try:
        result = train(dataclasses_replace(opts, resume=None, snap=1, kimg=0.012, outdir=tmp_path / "new"))
    finally:
        os.umask(old_mask)
    assert not (result.run_dir / LOCK_NAME).exists()
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in result.run_dir.iterdir() if p.is_file()}
    assert set(modes.values()) == {0o644}, modes  # the user's umask, not 0600
    grids = sorted(p.name for p in result.run_dir.glob("fakes0*.png"))
    assert grids == ["fakes000000-008.png", "fakes000000-012.png"], grids
    snaps = sorted(p.name for p in result.run_dir.glob("network-snapshot-*.json"))
    assert snaps == ["network-snapshot-000000-008.json", "network-snapshot-000000-012.json"], snaps
