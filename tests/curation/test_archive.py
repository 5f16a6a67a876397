"""The archive format: deterministic writing, reading it back the way StyleGAN2-ADA does, and every fault
`verify_archive` must catch."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from curation.datasets.card import CardFacts, render_card
from curation.datasets.format import ArchiveError, archive_name, encode_png, png_header
from curation.datasets.reader import open_archive, read_manifest
from curation.datasets.verify import verify_archive
from curation.datasets.writer import ArchiveWriter


def photo_crops(faces_dir: Path, n: int, size: int = 64, seed: int = 0) -> list[np.ndarray]:
    """`n` distinct square crops of a real photo, as uint8 RGB arrays."""
    src = Image.open(faces_dir / "bald_guys.jpg").convert("RGB")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        side = int(rng.integers(150, 400))
        x, y = int(rng.integers(0, src.width - side)), int(rng.integers(0, src.height - side))
        out.append(
            np.asarray(src.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BILINEAR))
        )
    return out


def write_archive(path: Path, arrays, labels=None, card="# test\n") -> Path:
    with ArchiveWriter(path) as w:
        for i, a in enumerate(arrays):
            w.add(
                encode_png(a),
                {"source_kind": "local", "original_path": f"src/{i}.png"},
                None if labels is None else labels[i],
            )
        w.finish(card)
    return path


def read_like_stylegan(path: Path):
    """A reader written to the format alone: every .png in the zip sorted by name, labels from dataset.json."""
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.lower().endswith(".png"))
        labels = json.loads(z.read("dataset.json"))["labels"]
        if labels is not None:
            table = dict(labels)
            labels = [table[n] for n in names]
        images = [np.asarray(Image.open(io.BytesIO(z.read(n)))) for n in names]
    return names, images, labels


def rebuild(src: Path, dst: Path, change=None, drop=(), add=()) -> Path:
    """Copy a zip member by member (valid CRCs), changing, dropping or adding members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if info.filename in drop:
                continue
            data = zin.read(info.filename)
            if change and info.filename in change:
                data = change[info.filename](data)
            zout.writestr(info, data)
        for name, data in add:
            zout.writestr(name, data)
    return dst


@pytest.fixture
def good(tmp_path, faces_dir) -> Path:
    return write_archive(tmp_path / "good.zip", photo_crops(faces_dir, 5), labels=[0, 1, 0, 2, 1])


def test_names_follow_the_stylegan_scheme():
    assert archive_name(0) == "00000/img00000000.png"
    assert archive_name(999) == "00000/img00000999.png"
    assert archive_name(1000) == "00001/img00001000.png"
    assert archive_name(123456) == "00123/img00123456.png"


def test_png_has_no_metadata_chunks_and_is_deterministic(faces_dir):
    a = photo_crops(faces_dir, 1)[0]
    data = encode_png(a)
    assert data == encode_png(a.copy())
    chunks, pos = [], 8
    while pos < len(data):
        length, tag = struct.unpack(">I4s", data[pos : pos + 8])
        chunks.append(tag.decode())
        pos += 12 + length
    assert set(chunks) == {"IHDR", "IDAT", "IEND"}
    assert png_header(data) == (64, 64, "RGB")
    assert png_header(encode_png(a[..., 0])) == (64, 64, "L")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), a)


def test_written_archive_reads_back_like_stylegan(good, faces_dir):
    names, images, labels = read_like_stylegan(good)
    assert names == [archive_name(i) for i in range(5)]
    assert labels == [0, 1, 0, 2, 1]
    for got, want in zip(images, photo_crops(faces_dir, 5)):
        np.testing.assert_array_equal(got, want)
    with zipfile.ZipFile(good) as z:
        infos = z.infolist()
        assert [i.filename for i in infos][-3:] == ["dataset.json", "provenance.jsonl", "DATASET.md"]
        assert all(
            i.compress_type == zipfile.ZIP_STORED and i.date_time == (1980, 1, 1, 0, 0, 0) for i in infos
        )


def test_same_inputs_give_identical_bytes(tmp_path, faces_dir):
    arrays = photo_crops(faces_dir, 4)
    a = write_archive(tmp_path / "a" / "x.zip", arrays)
    b = write_archive(tmp_path / "b" / "x.zip", [x.copy() for x in arrays])
    assert a.read_bytes() == b.read_bytes()


def test_reader_api(good, faces_dir):
    with open_archive(good) as arc:
        assert (arc.count, arc.resolution, len(arc)) == (5, 64, 5)
        assert arc.labels[archive_name(3)] == 2
        items = list(arc)
        assert [n for n, _, _ in items] == arc.names
        assert items[3][2] == 2 and items[0][1].size == (64, 64)
        arrays = [a for _, a, _ in arc.iter(as_array=True)]
        np.testing.assert_array_equal(arrays[1], photo_crops(faces_dir, 5)[1])
        prov = arc.provenance
        assert [p["archive_name"] for p in prov] == arc.names
        assert prov[2]["original_path"] == "src/2.png" and prov[2]["label"] == 0
        assert arc.card == "# test\n" and arc.manifest is None


def test_writer_refuses_mixed_sizes_and_leaves_nothing(tmp_path, faces_dir):
    out = tmp_path / "mixed.zip"
    with pytest.raises(ArchiveError, match="differs from the first image"), ArchiveWriter(out) as w:
        w.add(encode_png(photo_crops(faces_dir, 1, size=64)[0]))
        w.add(encode_png(photo_crops(faces_dir, 1, size=32)[0]))
    with pytest.raises(ArchiveError, match="not square"), ArchiveWriter(out) as w:
        w.add(encode_png(np.zeros((32, 64, 3), np.uint8)))
    with pytest.raises(ArchiveError, match="no images"), ArchiveWriter(out) as w:
        w.finish("# empty")
    assert list(tmp_path.iterdir()) == []


def test_verify_accepts_a_good_archive_and_its_manifest(good, tmp_path):
    rep = verify_archive(good)
    assert rep.ok, rep.faults
    assert (rep.count, rep.resolution, rep.mode, rep.labelled) == (5, 64, "RGB", True)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"archive": "good.zip", "sha256": rep.sha256, "count": 5, "resolution": 64})
    )
    rep = verify_archive(good)
    assert rep.ok and rep.manifest == str(tmp_path / "manifest.json")
    assert read_manifest(good)["count"] == 5 and read_manifest(tmp_path)["count"] == 5


def faults_of(path, **kw) -> str:
    rep = verify_archive(path, **kw)
    assert not rep.ok
    return "\n".join(rep.faults)


def test_verify_catches_truncation(good, tmp_path):
    data = good.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in faults_of(cut)
    # The end (central directory) kept, the middle gone: the members point past the end or fail their CRC.
    holed = tmp_path / "holed.zip"
    holed.write_bytes(data[:1000] + data[-3000:])
    assert faults_of(holed)


def test_verify_catches_an_altered_image_even_with_a_valid_crc(good, tmp_path, faces_dir):
    other = encode_png(photo_crops(faces_dir, 1, seed=9)[0])
    bad = rebuild(good, tmp_path / "bad.zip", change={archive_name(2): lambda _: other})
    assert f"{archive_name(2)} was altered" in faults_of(bad)


def test_verify_catches_flipped_bytes_in_place(good, tmp_path):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo(archive_name(1))
    # The member's data starts after its 30-byte local header, name and extra field.
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 200] ^= 0xFF
    flipped = tmp_path / "flipped.zip"
    flipped.write_bytes(bytes(data))
    assert f"{archive_name(1)} cannot be read" in faults_of(flipped)


def test_verify_catches_a_missing_provenance_line(good, tmp_path):
    def drop_line(data: bytes) -> bytes:
        lines = data.decode().splitlines(keepends=True)
        return "".join(lines[:3] + lines[4:]).encode()

    bad = rebuild(good, tmp_path / "bad.zip", change={"provenance.jsonl": drop_line})
    assert f"no line for {archive_name(3)}" in faults_of(bad)
    bad2 = rebuild(good, tmp_path / "bad2.zip", drop=("provenance.jsonl",))
    assert "provenance.jsonl is missing" in faults_of(bad2)


@pytest.mark.parametrize(
    "evil", ["../escape.png", "/etc/evil.png", "00000/../../x.png", "C:/windows/x.png", "a\\..\\b.png"]
)
def test_verify_and_reader_refuse_zip_slip_names(good, tmp_path, evil):
    bad = rebuild(good, tmp_path / "slip.zip", add=[(evil, b"x")])
    assert "zip-slip" in faults_of(bad)
    with pytest.raises(ArchiveError, match="unsafe member name"):
        open_archive(bad)


def test_verify_refuses_archives_beyond_the_size_limit(good):
    assert "beyond the limit" in faults_of(good, max_bytes=10_000)


def test_verify_catches_format_faults(good, tmp_path, faces_dir):
    cases = {
        "deflated.zip": ({}, "compressed"),
        "nojson.zip": ({"drop": ("dataset.json",)}, "dataset.json is missing"),
        "gap.zip": ({"drop": (archive_name(2),)}, "without gaps"),
        "small.zip": (
            {"change": {archive_name(4): lambda _: encode_png(photo_crops(faces_dir, 1, 32)[0])}},
            "unlike the first image",
        ),
        "extra.zip": ({"add": [("notes.txt", b"hi")]}, "unexpected member notes.txt"),
        "nocard.zip": ({"drop": ("DATASET.md",)}, "DATASET.md (the dataset card) is missing"),
        "labels.zip": (
            {
                "change": {
                    "dataset.json": lambda d: json.dumps({"labels": json.loads(d)["labels"][:-1]}).encode()
                }
            },
            f"{archive_name(4)} has no label",
        ),
    }
    for fname, (kw, expected) in cases.items():
        if fname == "deflated.zip":
            with (
                zipfile.ZipFile(good) as zin,
                zipfile.ZipFile(tmp_path / fname, "w", zipfile.ZIP_DEFLATED) as zout,
            ):
                for info in zin.infolist():
                    zout.writestr(info.filename, zin.read(info))
        else:
            rebuild(good, tmp_path / fname, **kw)
        assert expected in faults_of(tmp_path / fname), fname


def test_verify_checks_the_manifest_sha256(good, tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"archive": "good.zip", "sha256": "0" * 64}))
    assert "differs from the manifest" in faults_of(good)
    copy = shutil.copy(good, tmp_path / "elsewhere.zip")
    assert verify_archive(copy).ok  # that manifest names another file
    assert "differs from the manifest" in faults_of(copy, manifest=tmp_path / "manifest.json")


def test_card_says_rights_use_and_removal():
    card = render_card(
        CardFacts(
            title="ghosts v2",
            date="2024-10-31",
            count=12,
            resolution=256,
            mode="RGB",
            class_names=["halloween", "ghost"],
            sources={"instagram": 10, "local": 2},
            tags={"halloween": 7, "ghost": 3},
            owners=4,
            photos=9,
            history=["v1: parent"],
            removal="Run `ghosts takedown`.",
        )
    )
    for text in (
        "# ghosts v2",
        "2024-10-31",
        "12 faces from 9 photos",
        "256 x 256",
        "0 = halloween",
        "#halloween (7)",
        "## Rights",
        "copyright",
        "## Intended use",
        "## Out of scope",
        "## Removal",
        "ghosts takedown",
        "v1: parent",
    ):
        assert text in card


@pytest.mark.parametrize(
    "extra_member, why",
    [
        ("../escape.png", "unsafe member name"),
        ("/etc/escape.png", "unsafe member name"),
    ],
)
def test_training_refuses_what_verify_refuses(tmp_path, extra_member, why):
    from training.dataset import inspect_archive
    from training.errors import TrainingError

    path = tmp_path / "bad.zip"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("00000/img00000000.png", buf.getvalue())
        zf.writestr(extra_member, buf.getvalue())
    from curation.datasets.verify import verify_archive

    assert not verify_archive(path, progress=False).ok
    with pytest.raises(TrainingError, match=why):
        inspect_archive(path)


def test_training_reads_only_the_members_the_format_names(tmp_path):
    from training.dataset import inspect_archive

    path = tmp_path / "named.zip"
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="PNG")
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("00000/img00000000.png", buf.getvalue())
        zf.writestr(
            "extra/picture.png", buf.getvalue()
        )  # not an archive image: verify faults it, training skips it
    assert inspect_archive(path).members == ("00000/img00000000.png",)
