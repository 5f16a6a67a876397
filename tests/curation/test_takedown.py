"""`ghosts takedown`: images excluded for good, new versions without them, affected runs listed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DatasetVersion, Image, Takedown, TrainingRun
from curation.datasets.freeze import freeze_dataset
from curation.datasets.reader import open_archive, read_manifest
from curation.datasets.takedown import takedown
from curation.datasets.verify import verify_archive
from flows.cli import main
from tests.curation.test_freeze import PASCAL, add_faces

OWNERS = ["alice", "bob", "Alice", "carol"]  # two posts by the same account, spelled in two cases


@pytest.fixture
def scraped(workspace, faces_dir):
    """Four 'scraped' posts with faces, frozen as v1, and a training run on v1."""
    add_faces(workspace, faces_dir, PASCAL)
    with workspace.session() as s:
        for k, im in enumerate(s.scalars(select(Image).order_by(Image.provenance["name"].as_string()))):
            im.source_kind = "instagram"
            im.owner = OWNERS[k]
            im.shortcode = f"C0de{k}"
            im.post_url = f"https://www.instagram.com/p/C0de{k}/"
            im.query = "ghost"
    v1 = freeze_dataset(workspace, "ghosts", resolution=32, progress=False)
    with workspace.session() as s:
        s.add(
            TrainingRun(
                run_dir="runs/00001", dataset_id=v1.dataset_id, dataset_sha256=v1.sha256, status="done"
            )
        )
    return workspace, v1


def shas_of(ws, owner):
    with ws.session() as s:
        return {im.sha256 for im in s.scalars(select(Image).where(Image.owner.in_([owner, owner.title()])))}


def test_takedown_by_owner_writes_a_new_version_without_the_images(scraped):
    ws, v1 = scraped
    gone = shas_of(ws, "alice")
    r = takedown(ws, owner="@ALICE", reason="email from alice, 2024-11-02", progress=False)
    assert set(r.images) == gone and len(gone) == 2
    [new] = r.new_versions
    assert (new["name"], new["version"], new["parent_version"]) == ("ghosts", 2, 1)
    assert r.superseded == [
        {"name": "ghosts", "version": 1, "sha256": v1.sha256, "path": ws.relpath(v1.path)}
    ]
    assert [t["run_dir"] for t in r.training_runs] == ["runs/00001"]
    v2 = ws.abspath(new["path"])
    assert verify_archive(v2).ok
    with open_archive(v1.path) as old, open_archive(v2) as arc:
        assert not gone & {p["image_sha256"] for p in arc.provenance}
        kept = [(n, p) for n, p in zip(old.names, old.provenance) if p["image_sha256"] not in gone]
        assert arc.count == new["count"] == len(kept) == old.count - new["removed"]
        # The remaining faces are the very same PNGs, renumbered without gaps.
        assert [old.read_bytes(n) for n, _ in kept] == [arc.read_bytes(n) for n in arc.names]
        assert [p["owner"] for p in arc.provenance if p["owner"].lower() == "alice"] == []
        assert "removed" in arc.card and "takedown #1" in arc.card
    m = read_manifest(v2)
    assert m["parent"] == {"version": 1, "sha256": v1.sha256} and m["takedown"]["removed"] == new["removed"]
    with ws.session() as s:
        assert {im.status for im in s.scalars(select(Image).where(Image.sha256.in_(gone)))} == {"excluded"}
        row = s.scalars(select(Takedown)).one()
        # The record keeps a hash of the owner, and the reason with the owner's name blanked.
        assert (row.kind, row.reason) == ("owner", "email from [removed], 2024-11-02")
        assert row.value.startswith("sha256:") and "alice" not in row.value.lower()
        assert "takedown #1" in s.get(DatasetVersion, v1.dataset_id).superseded_reason
    assert v1.path.exists()  # kept without --purge
    # The images can never be selected again: a fresh freeze finds the same selection as v2.
    again = freeze_dataset(ws, "ghosts", resolution=32, progress=False)
    assert (again.created, again.version) == (False, 2)


def test_takedown_by_post_and_image_with_purge(scraped):
    ws, v1 = scraped
    r = takedown(ws, post="https://instagram.com/p/C0de1?igsh=abc", reason="dmca", purge=True, progress=False)
    assert len(r.images) == 1 and r.purged == [ws.relpath(v1.path)] and not v1.path.exists()
    assert (v1.path.parent / "manifest.json").exists()
    v2 = r.new_versions[0]
    with ws.session() as s:
        carol = s.scalars(select(Image).where(Image.owner == "carol")).one().sha256
    r2 = takedown(ws, image=carol[:10], reason="asked in person", progress=False)
    assert r2.new_versions[0]["version"] == 3 and r2.new_versions[0]["parent_version"] == 2
    assert {v["version"] for v in r2.superseded} == {1, 2}
    assert verify_archive(ws.abspath(r2.new_versions[0]["path"])).ok
    assert r2.new_versions[0]["count"] < v2["count"]


def test_takedown_errors_and_a_dataset_emptied(scraped):
    ws, _ = scraped
    with pytest.raises(GhostsError, match="no image in the catalog matches --owner nobody"):
        takedown(ws, owner="nobody", reason="x", progress=False)
    with pytest.raises(GhostsError, match="exactly one of"):
        takedown(ws, owner="bob", post="https://instagram.com/p/C0de1/", reason="x", progress=False)
    with pytest.raises(GhostsError, match="--reason is required"):
        takedown(ws, owner="bob", reason=" ", progress=False)
    with pytest.raises(GhostsError, match="sha256"):
        takedown(ws, image="not-hex", reason="x", progress=False)
    for owner in ("alice", "bob"):
        takedown(ws, owner=owner, reason="x", progress=False)
    r = takedown(ws, owner="carol", reason="x", progress=False)
    assert r.emptied == ["ghosts"] and r.new_versions == []
    with pytest.raises(GhostsError, match="no accepted faces"):
        freeze_dataset(ws, "ghosts", resolution=32, progress=False)


def test_cli_takedown(scraped):
    ws, _v1 = scraped
    r = CliRunner().invoke(
        main, ["takedown", "--owner", "bob", "--reason", "request", "--data", str(ws.root)]
    )
    assert r.exit_code == 0, r.output
    assert "takedown #1: 1 images excluded" in r.stdout and "new version ghosts v2" in r.stdout
    assert "run 1 [done] runs/00001" in r.stdout
    assert "the same images are refused if imported again" in r.stdout
    assert "kept ghosts v1" in r.stdout and "--purge" in r.stdout
    r = CliRunner().invoke(
        main, ["takedown", "--owner", "carol", "--reason", "request", "--json", "--data", str(ws.root)]
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["new_versions"][0]["version"] == 3
    r = CliRunner().invoke(main, ["takedown", "--owner", "zed", "--reason", "r", "--data", str(ws.root)])
    assert r.exit_code == 1 and "no image in the catalog matches" in r.output


OWNER = "Zoé_Ghostwriter"  # non-ASCII, mixed case: searched for in every spelling the files could hold


def _needles(data: bytes, n: int = 3, size: int = 48) -> list[bytes]:
    """`n` slices of `data` from its middle part (headers are shared by many files; the middle is not)."""
    step = max(1, (len(data) - size) // (n + 1))
    return [data[step * (k + 1) : step * (k + 1) + size] for k in range(n)]


def _workspace_hits(root, needles: dict[str, list[bytes]]) -> dict[str, list[str]]:
    """Which needles occur in which files of the workspace (the catalog, its WAL and every other file)."""
    hits: dict[str, list[str]] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        low = data.lower()
        for what, group in needles.items():
            if any(x in data or x.lower() in low for x in group):
                hits.setdefault(what, []).append(str(path.relative_to(root)))
    return hits


def test_takedown_purge_leaves_no_byte_of_the_photo_nor_the_owners_name(scraped, faces_dir):
    from alignment.preview import write_preview
    from curation.catalog.imaging import load_rgb
    from curation.sources.ingest import ingest_paths

    ws, _v1 = scraped
    with ws.session() as s:
        im = s.scalars(select(Image).where(Image.owner == "bob")).one()
        im.owner = OWNER
        im.source_ref = f"https://cdn.example/{OWNER}/photo.jpg"
        im.provenance = dict(im.provenance, caption=f"boo! photo by @{OWNER} #ghost", owner=OWNER)
        original = ws.abspath(im.path).read_bytes()
        source_file = faces_dir / im.provenance["name"]
        rgb = load_rgb(ws.abspath(im.path))
        previews = []
        for f in im.faces:
            f.preview_path = write_preview(ws, f.id, rgb, f.quad)
            previews.append(ws.abspath(f.preview_path).read_bytes())
        sha = im.sha256
    # A freeze after the owner's name is in the catalog, so the archive's provenance holds it too.
    v2 = freeze_dataset(ws, "ghosts", resolution=32, labels="source-tag", progress=False)
    assert v2.version == 2
    with open_archive(v2.path) as arc:
        crops = [arc.read_bytes(n) for n, p in zip(arc.names, arc.provenance) if p["image_sha256"] == sha]
    run = ws.runs_dir / "00002"
    run.mkdir()
    (run / "reals.png").write_bytes(crops[0])  # stands in for a run's grid of training images
    with ws.session() as s:
        s.add(TrainingRun(run_dir="runs/00002", dataset_id=v2.dataset_id, dataset_sha256=v2.sha256))

    needles = {
        "owner": [OWNER.encode(), OWNER.lower().encode(), json.dumps(OWNER).encode()[1:-1]],
        "photo": _needles(original),
        "preview": [x for p in previews for x in _needles(p)],
        "crop": [x for c in crops for x in _needles(c)],
    }
    before = _workspace_hits(ws.root, needles)
    assert set(before) == {"owner", "photo", "preview", "crop"}, before  # the search can find them
    assert "catalog.sqlite" in " ".join(before["owner"])

    r = takedown(ws, owner=OWNER.lower(), reason=f"{OWNER} wrote to us", purge=True, progress=False)
    assert r.images == [sha] and r.purged and r.new_versions[0]["version"] == 3
    assert {ws.relpath(ws.abspath(p)) for p in r.removed_files} >= {"runs/00002/reals.png"}
    assert any(p.startswith("images/") for p in r.removed_files)
    assert sum(p.startswith("previews/") for p in r.removed_files) == len(previews)
    assert {t["run_dir"] for t in r.training_runs} == {"runs/00001", "runs/00002"}
    ws.close()
    assert _workspace_hits(ws.root, needles) == {}

    # The tombstone: the same bytes are refused on re-import, with the takedown's reason.
    summary = ingest_paths(ws, [source_file], progress=False)
    assert summary.added == 0 and len(summary.rejected) == 1
    assert "taken down (takedown #1): [removed] wrote to us" in summary.rejected[0]["reason"]
    out = CliRunner().invoke(main, ["import", str(source_file), "--data", str(ws.root)])
    assert out.exit_code == 0 and "taken down (takedown #1)" in out.stdout
    # A rerun of the same takedown finds the images through the record and finishes (nothing left to do).
    again = takedown(ws, owner=OWNER, reason="again", progress=False)
    assert again.images == [sha] and again.already and again.new_versions == []
    ws.close()
    assert _workspace_hits(ws.root, needles) == {}


def test_takedown_without_purge_says_which_old_archives_still_hold_the_faces(scraped):
    ws, v1 = scraped
    r = takedown(ws, owner="bob", reason="asked", progress=False)
    assert r.kept_versions == [{"name": "ghosts", "version": 1, "path": ws.relpath(v1.path)}]
    assert v1.path.exists() and r.removed_files  # the originals and previews go in any case
    with ws.session() as s:
        row = s.scalars(select(Image).where(Image.sha256 == r.images[0])).one()
        assert (row.path, row.owner, row.post_url, row.shortcode, row.source_ref) == (None,) * 5
        assert row.provenance == {"takedown": r.takedown_id}
        for f in row.faces:
            assert (f.landmarks, f.quad, f.box, f.descriptor, f.preview_path, f.deleted) == (None,) * 5 + (
                True,
            )


def test_takedown_while_another_process_reads_the_catalog_says_the_file_is_not_scrubbed_yet(scraped):
    import sqlite3

    ws, _ = scraped
    reader = sqlite3.connect(ws.catalog_file, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute(
        "SELECT count(*) FROM images"
    ).fetchone()  # holds a read snapshot: the log cannot be emptied
    try:
        r = takedown(ws, owner="bob", reason="asked", progress=False)
    finally:
        reader.rollback()
        reader.close()
    assert not r.catalog_scrubbed and r.scrubbed_rows  # the rows are blanked all the same
    again = takedown(ws, owner="bob", reason="asked", progress=False)  # once the catalog is free
    assert again.already and again.catalog_scrubbed
