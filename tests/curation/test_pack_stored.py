"""Packing PNGs that already are what the archive holds: stored byte for byte after their checks, never decoded;
everything else decoded as before, with the same pixels and provenance either way."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from alignment.files import encode_png as align_png
from curation.catalog.errors import GhostsError
from curation.datasets.pack import pack_folder, probe_image
from curation.datasets.png import png_ihdr, storable_png
from curation.datasets.reader import open_archive
from curation.datasets.verify import verify_archive
from tests.curation.test_archive import photo_crops


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(arr, **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", **save)
    return buf.getvalue()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.fixture(scope="module")
def crops(faces_dir):
    return photo_crops(faces_dir, 6)


def test_the_png_align_writes_is_stored_as_it_is(crops):
    data = align_png(crops[0])
    assert storable_png(data, 64, "RGB") is data


def test_text_and_time_chunks_are_dropped_pixels_kept(crops):
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "from a camera app")
    data = _png(crops[0], pnginfo=info, dpi=(72, 72))
    stored = storable_png(data, 64, "RGB")
    assert stored is not None and len(stored) < len(data) and b"tEXt" not in stored and b"pHYs" not in stored
    assert np.array_equal(_pixels(stored), crops[0])


def test_what_is_not_storable_as_it_is(crops):
    rgb = crops[0]
    data = _png(rgb)
    assert storable_png(data, 128, "RGB") is None  # another size
    assert storable_png(data, 64, "L") is None  # another mode
    assert storable_png(_png(rgb, transparency=(0, 0, 0)), 64, "RGB") is None  # tRNS changes pixels
    assert storable_png(data[:-12] + b"junk", 64, "RGB") is None  # no IEND
    assert (
        storable_png(_png(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])), 64, "RGB") is None
    )  # RGBA
    assert storable_png(_png(rgb[..., 0]), 64, "RGB") is None  # grey, where the folder is RGB
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1  # a bit flip inside the image data: its CRC no longer checks
    assert storable_png(bytes(flipped), 64, "RGB") is None
    assert storable_png(data[: len(data) // 2], 64, "RGB") is None  # truncated
    # Valid CRCs around image data that does not inflate to the rows the header promises.
    head = data[:33]
    short = zlib.compress(b"\x00" + bytes(64 * 3))  # one row of 64
    assert storable_png(head + _chunk(b"IDAT", short) + _chunk(b"IEND", b""), 64, "RGB") is None
    bad_filter = zlib.compress((b"\x07" + bytes(64 * 3)) * 64)  # filter type 7 does not exist
    assert storable_png(head + _chunk(b"IDAT", bad_filter) + _chunk(b"IEND", b""), 64, "RGB") is None
    good = zlib.compress((b"\x00" + bytes(64 * 3)) * 64)
    assert storable_png(head + _chunk(b"IDAT", good) + _chunk(b"IEND", b""), 64, "RGB") is not None
    gamma = head + _chunk(b"gAMA", struct.pack(">I", 45455)) + data[33:]
    assert storable_png(gamma, 64, "RGB") is None  # a chunk that may change how pixels are read: decoded


def test_stored_and_decoded_inputs_give_the_same_archive_contents(crops, tmp_path):
    """The same faces as aligned PNGs (stored) and as BMP files (decoded and encoded): the same pixels and the
    same provenance apart from the source file's own hash and name; the stored members are the files."""
    png_dir, bmp_dir = tmp_path / "png", tmp_path / "bmp"
    png_dir.mkdir()
    bmp_dir.mkdir()
    for i, c in enumerate(crops):
        (png_dir / f"f{i}.png").write_bytes(align_png(c))
        Image.fromarray(c).save(bmp_dir / f"f{i}.bmp")
    a = pack_folder(png_dir, tmp_path / "a.zip", progress=False)
    b = pack_folder(bmp_dir, tmp_path / "b.zip", progress=False)
    assert verify_archive(a.info.path).ok and verify_archive(b.info.path).ok
    with open_archive(a.info.path) as za, open_archive(b.info.path) as zb:
        assert za.names == zb.names
        for i, name in enumerate(za.names):
            assert za.read_bytes(name) == (png_dir / f"f{i}.png").read_bytes()
            assert np.array_equal(np.asarray(za.read_image(name)), np.asarray(zb.read_image(name)))
        skip = {"image_sha256", "png_sha256", "original_path"}
        assert [{k: v for k, v in r.items() if k not in skip} for r in za.provenance] == [
            {k: v for k, v in r.items() if k not in skip} for r in zb.provenance
        ]
    again = pack_folder(png_dir, tmp_path / "again" / "a.zip", progress=False, workers=1)
    assert again.info.sha256 == a.info.sha256


def test_grey_pngs_are_stored_too(crops, tmp_path):
    d = tmp_path / "grey"
    d.mkdir()
    for i, c in enumerate(crops[:3]):
        Image.fromarray(c).convert("L").save(d / f"g{i}.png")
    r = pack_folder(d, tmp_path / "g.zip", progress=False)
    assert r.info.mode == "L" and verify_archive(r.info.path).ok
    with open_archive(r.info.path) as z:
        assert z.read_bytes(z.names[0]) == (d / "g0.png").read_bytes()
        assert z.provenance[0]["conversion"] == "L->RGB" and z.provenance[0]["original_mode"] == "L"


def test_a_png_whose_data_is_broken_is_refused_by_name(crops, tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "a.png").write_bytes(align_png(crops[0]))
    head = align_png(crops[1])[:33]
    (d / "b.png").write_bytes(head + _chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + _chunk(b"IEND", b""))
    with pytest.raises(GhostsError, match="b.png"):
        pack_folder(d, tmp_path / "x.zip", progress=False)
    assert not (tmp_path / "x.zip").exists()


def _saved(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def test_the_header_probe_agrees_with_pillow(crops, tmp_path):
    """pack reads the size and mode of 8-bit RGB and grey PNGs from their IHDR, without Pillow: what it reads
    is what Pillow reports, and every other PNG is left to Pillow."""
    rgb = crops[0]
    cases = {
        "rgb": align_png(rgb),
        "grey": _png(rgb[..., 0]),
        "rgba": _png(np.dstack([rgb, np.full(rgb.shape[:2], 200, np.uint8)])),
        "palette": _saved(Image.fromarray(rgb).convert("P")),
        "grey16": _png(np.asarray(rgb[..., 0], np.uint16) * 257),
        "wide": _png(rgb[:32]),
    }
    for name, data in cases.items():
        (tmp_path / f"{name}.png").write_bytes(data)
        with Image.open(io.BytesIO(data)) as im:
            pillow = (*im.size, im.mode)
        with open(tmp_path / f"{name}.png", "rb") as fh:
            found = png_ihdr(fh)
        assert found is None or found == pillow, name
        assert (found is not None) == (name in ("rgb", "grey", "wide")), name
        p = probe_image(tmp_path / f"{name}.png", tmp_path)
        assert (p.width, p.height, p.mode) == pillow, name
    broken = bytearray(cases["rgb"])
    broken[20] ^= 1  # the IHDR's CRC no longer matches: Pillow decides
    with pytest.raises(GhostsError, match="broken.png"):
        (tmp_path / "broken.png").write_bytes(bytes(broken))
        probe_image(tmp_path / "broken.png", tmp_path)
