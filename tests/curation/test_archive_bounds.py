"""Sizes read from an archive are bounded before anything is allocated: class labels (a label of 10**9 would
make training's one-hot vectors terabytes) and PNG headers; training refuses what verify refuses."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib

import numpy as np
import pytest

from curation.datasets.format import DATASET_JSON, MAX_CLASSES, ArchiveError, encode_png
from curation.datasets.reader import open_archive
from curation.datasets.verify import verify_archive
from curation.datasets.writer import ArchiveWriter
from training.dataset import inspect_archive
from training.errors import TrainingError


def faces(n=3, side=8):
    rng = np.random.default_rng(0)
    return [encode_png(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)) for _ in range(n)]


def rewritten(src, dst, **replace):
    """A copy of the zip `src` with some members' bytes replaced (as a hand edit or a hostile file would)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, replace.get(info.filename, zin.read(info.filename)))
    return dst


@pytest.fixture
def labelled(tmp_path):
    with ArchiveWriter(tmp_path / "ok.zip") as w:
        for k, png in enumerate(faces()):
            w.add(png, {"k": k}, label=k % 2)
        info = w.finish("# card\n")
    return info.path


@pytest.mark.parametrize("bad", [10**9, MAX_CLASSES, -1])
def test_a_huge_label_is_refused_by_verify_the_reader_and_training(labelled, tmp_path, bad):
    with zipfile.ZipFile(labelled) as z:
        doc = json.loads(z.read(DATASET_JSON))
    doc["labels"][1][1] = bad
    path = rewritten(labelled, tmp_path / "bad.zip", **{DATASET_JSON: json.dumps(doc).encode()})
    rep = verify_archive(path)
    assert not rep.ok and any("class in 0.." in f for f in rep.faults), rep.faults
    with pytest.raises(ArchiveError, match="class|labels"):
        open_archive(path)
    with pytest.raises(TrainingError, match="class|labels"):
        inspect_archive(path)
    assert verify_archive(labelled).ok and inspect_archive(labelled).labels.max() == 1


def _bomb_png(side: int) -> bytes:
    def chunk(tag, body):
        return (
            struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def test_a_png_header_claiming_a_huge_image_is_not_decoded(labelled, tmp_path):
    with zipfile.ZipFile(labelled) as z:
        first = min(n for n in z.namelist() if n.endswith(".png"))
    path = rewritten(labelled, tmp_path / "bomb.zip", **{first: _bomb_png(40000)})
    with open_archive(path) as arc, pytest.raises(ArchiveError, match="40000x40000 pixels"):
        arc.read_image(first)
    assert not verify_archive(path).ok
    with pytest.raises(TrainingError, match="40000x40000"):
        inspect_archive(path)
