import io

import numpy as np
import pytest
from PIL import Image as PILImage
from sqlalchemy import select

from curation.catalog.imaging import ImageRejected, decode_image, load_rgb
from curation.catalog.schema import Image, NearDuplicate
from curation.catalog.store import sha256_bytes
from curation.sources.ingest import ingest_bytes, ingest_paths


def test_import_testdata_twice(workspace, faces_dir):
    first = ingest_paths(workspace, [faces_dir], progress=False)
    assert first.added == 12 and first.duplicates == 0 and not first.rejected
    assert first.skipped == 4  # the XML ground-truth files are not images
    again = ingest_paths(workspace, [faces_dir], progress=False)
    assert again.added == 0 and again.duplicates == 12
    with workspace.session() as s:
        rows = s.scalars(select(Image)).all()
    assert len(rows) == 12
    for row in rows:
        stored = workspace.abspath(row.path)
        assert stored.read_bytes() == (faces_dir / row.provenance["name"]).read_bytes()
        assert row.path == f"images/{row.sha256[:2]}/{row.sha256}.jpg"
        assert row.status == "new" and row.phash and row.width and row.height
        assert row.source_kind == "local" and row.source_ref.endswith(row.provenance["name"])
    # what `ghosts import --json` prints: every count in this order, and not the ids
    fields = "added duplicates near_duplicates converted skipped rejected failed_before failed"
    assert " ".join(again.as_dict()) == fields
    assert again.as_dict()["duplicates"] == 12


def test_degenerate_inputs(workspace, degenerate_dir):
    summary = ingest_paths(workspace, [degenerate_dir], progress=False)
    reasons = {r["path"].rsplit("/", 1)[-1]: r["reason"] for r in summary.rejected}
    assert set(reasons) == {"truncated.jpg", "notes.jpg", "bomb.png"}
    assert "truncated" in reasons["truncated.jpg"]
    assert "not an image" in reasons["notes.jpg"]
    assert "too large: 900 MP exceeds the 100 MP limit" in reasons["bomb.png"]
    assert summary.added == 7

    with workspace.session() as s:
        rows = {r.provenance["name"]: r for r in s.scalars(select(Image))}
    # Refused files have a catalog row with the reason and no stored file.
    for name in reasons:
        assert rows[name].status == "rejected" and rows[name].path is None and rows[name].reject_reason
    # Every accepted file keeps its original bytes and decodes to upright 8-bit RGB.
    for name in ("cmyk.jpg", "palette.png", "rgba.png", "gray16.png", "gray.png", "la.png", "rotated.jpg"):
        row = rows[name]
        assert workspace.abspath(row.path).read_bytes() == (degenerate_dir / name).read_bytes()
        rgb = load_rgb(workspace.abspath(row.path))
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
        assert (row.width, row.height) == (rgb.shape[1], rgb.shape[0])
    assert "CMYK->RGB" in rows["cmyk.jpg"].conversion
    assert rows["palette.png"].conversion.startswith("P->RGB")
    assert "alpha composited on white" in rows["rgba.png"].conversion
    assert "16-bit scaled" in rows["gray16.png"].conversion
    assert "EXIF orientation 6" in rows["rotated.jpg"].conversion
    assert (rows["rotated.jpg"].width, rows["rotated.jpg"].height) == (120, 160)
    assert rows["gray.png"].conversion == "L->RGB"
    assert rows["cmyk.jpg"].mode == "CMYK" and rows["cmyk.jpg"].format == "JPEG"
    assert rows["palette.png"].mode == "P" and rows["palette.png"].format == "PNG"


def test_16bit_and_alpha_pixels(degenerate_dir):
    g = decode_image(degenerate_dir / "gray16.png").rgb
    assert g[0, 0, 0] == 0 and g[-1, -1, 0] == 255  # full range kept, not clipped at 255/65535
    assert (g[..., 0] == g[..., 1]).all()
    rgba = decode_image(degenerate_dir / "rgba.png").rgb
    assert (rgba[:, :40] == 255).all()  # the transparent strip became white


def test_rejected_again_is_reported_with_its_reason(workspace, degenerate_dir):
    ingest_paths(workspace, [degenerate_dir / "notes.jpg"], progress=False)
    again = ingest_paths(workspace, [degenerate_dir / "notes.jpg"], progress=False)
    assert again.added == 0 and again.rejected[0]["reason"].startswith("not an image")


def test_near_duplicates_are_linked_not_dropped(workspace, faces_dir):
    original = (faces_dir / "Tom_Cruise_avp_2014_4.jpg").read_bytes()
    im = PILImage.open(io.BytesIO(original))
    buf = io.BytesIO()
    im.resize((im.width // 2, im.height // 2)).save(buf, "JPEG", quality=70)
    a = ingest_bytes(workspace, original, name="a.jpg", source_kind="local", source_ref="a.jpg")
    b = ingest_bytes(workspace, buf.getvalue(), name="b.jpg", source_kind="local", source_ref="b.jpg")
    assert a.status == b.status == "added"
    assert b.near_duplicates == [a.image_id]
    c = ingest_bytes(
        workspace,
        (faces_dir / "dogs.jpg").read_bytes(),
        name="c.jpg",
        source_kind="local",
        source_ref="c.jpg",
    )
    assert c.near_duplicates == []
    with workspace.session() as s:
        links = s.scalars(select(NearDuplicate)).all()
    assert [(l.image_id, l.other_id) for l in links] == [(b.image_id, a.image_id)]
    assert links[0].distance <= workspace.settings.near_dup_distance


def test_provenance_fields_are_stored(workspace, faces_dir):
    data = (faces_dir / "bald_guys.jpg").read_bytes()
    source = {"source_kind": "instagram", "source_ref": "https://www.instagram.com/p/ABC/"}
    post = {"query": "halloween", "owner": "someone", "shortcode": "ABC", "likes": 7}
    r = ingest_bytes(
        workspace, data, name="x.jpg", provenance={"caption": "boo #halloween"}, **source, **post
    )
    with workspace.session() as s:
        row = s.get(Image, r.image_id)
    assert row.sha256 == sha256_bytes(data)
    given = source | post
    assert {column: getattr(row, column) for column in given} == given
    assert row.provenance["caption"] == "boo #halloween"


def test_decode_rejects_unsupported_format(tmp_path):
    p = tmp_path / "x.ico"
    PILImage.new("RGB", (16, 16)).save(p, "ICO")
    with pytest.raises(ImageRejected, match="unsupported format"):
        decode_image(p)


def test_header_over_our_limit_but_under_pillows(tmp_path):
    from tests.curation.conftest import _png_with_header

    p = tmp_path / "big.png"
    p.write_bytes(_png_with_header(12000, 12000))  # 144 MP: over our 100 MP, under Pillow's own refusal
    with pytest.raises(ImageRejected, match=r"too large: 12000x12000 = 144 MP exceeds the 100 MP limit"):
        decode_image(p)
