"""`ghosts takedown`: images excluded for good, new versions without them, affected runs listed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DatasetVersion, Image, Takedown, TrainingRun
from curation.datasets.archive import open_archive, read_manifest, verify_archive
from curation.datasets.freeze import freeze_dataset
from curation.datasets.takedown import takedown
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
        assert (row.kind, row.value, row.reason) == ("owner", "ALICE", "email from alice, 2024-11-02")
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
    r = CliRunner().invoke(
        main, ["takedown", "--owner", "carol", "--reason", "request", "--json", "--data", str(ws.root)]
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["new_versions"][0]["version"] == 3
    r = CliRunner().invoke(main, ["takedown", "--owner", "zed", "--reason", "r", "--data", str(ws.root)])
    assert r.exit_code == 1 and "no image in the catalog matches" in r.output
