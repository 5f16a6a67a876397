"""The archive writer writes the zip itself: the same bytes as `zipfile` for the same members, zip64 records
where zipfile would put them, and the archive's sha256 taken as it is written."""

from __future__ import annotations

import hashlib
import io
import zipfile
import zlib

import numpy as np
import pytest

from curation.datasets import writer as writer_module
from curation.datasets.format import CARD, DATASET_JSON, PROVENANCE, archive_name, encode_png, zipinfo
from curation.datasets.writer import ArchiveWriter


def _pngs(n: int, side: int = 8) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [encode_png(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(n)]


def _write(path, pngs, card="# card\n", crc=False):
    with ArchiveWriter(path) as w:
        for i, png in enumerate(pngs):
            w.add(png, {"i": i}, crc=zlib.crc32(png) if crc else None)
        return w.finish(card)


def _zipfile_bytes(path) -> bytes:
    """What zipfile.writestr makes of the same members, in the same order."""
    with zipfile.ZipFile(path) as z:
        members = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for name, data in members:
            z.writestr(zipinfo(name), data)
    return buf.getvalue()


def test_the_bytes_are_zipfiles_and_the_digest_is_the_files(tmp_path):
    pngs = _pngs(5)
    info = _write(tmp_path / "a.zip", pngs, card="# карточка\n")
    data = (tmp_path / "a.zip").read_bytes()
    assert data == _zipfile_bytes(tmp_path / "a.zip")
    assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size_bytes == len(data)
    with zipfile.ZipFile(tmp_path / "a.zip") as z:
        assert z.testzip() is None
        assert z.namelist() == [archive_name(i) for i in range(5)] + [DATASET_JSON, PROVENANCE, CARD]
        assert [z.read(archive_name(i)) for i in range(5)] == pngs
    # A CRC handed in by the caller gives the same archive.
    assert _write(tmp_path / "b.zip", pngs, card="# карточка\n", crc=True).sha256 == info.sha256


@pytest.mark.parametrize("limit,count_limit", [(600, 1 << 16), (1 << 31, 3)])
def test_zip64_records_where_zipfile_puts_them(tmp_path, monkeypatch, limit, count_limit):
    # With the limits lowered, small members and offsets cross them: sizes past the limit, offsets past it,
    # and a member count past the count limit each take zipfile's zip64 layout.
    monkeypatch.setattr(writer_module, "ZIP64_LIMIT", limit)
    monkeypatch.setattr(writer_module, "ZIP_FILECOUNT_LIMIT", count_limit)
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", limit)
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", count_limit)
    pngs = _pngs(6, side=16)
    assert any(len(p) > limit for p in pngs) or count_limit < 6
    _write(tmp_path / "z.zip", pngs, card="x" * 700)
    data = (tmp_path / "z.zip").read_bytes()
    assert data == _zipfile_bytes(tmp_path / "z.zip")
    assert (b"PK\x06\x06" in data) == (count_limit < 6 or len(data) > limit)
    with zipfile.ZipFile(tmp_path / "z.zip") as z:
        assert z.testzip() is None and [z.read(archive_name(i)) for i in range(6)] == pngs
