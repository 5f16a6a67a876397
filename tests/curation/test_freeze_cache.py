"""Crops rendered ahead of freeze (curation.datasets.crops, .prerender): the same archive bytes as a freeze
from the photos, stale or damaged crops never used, takedowns honoured."""

from __future__ import annotations

import os
import shutil
import time

import pytest
from sqlalchemy import select

import curation.datasets.crops as crops_mod
import curation.datasets.freeze as freeze_mod
from curation.catalog.schema import Face, Image
from curation.catalog.workspace import open_workspace
from curation.datasets.crops import CROPS_DIR
from curation.datasets.freeze import freeze_dataset
from curation.datasets.prerender import CropRenderer, prerender
from curation.datasets.takedown import takedown
from curation.datasets.verify import verify_archive
from curation.review.decisions import ON_ACCEPTED, decide
from flows.cli_archive import _prefect_api_may_be_set
from tests.curation.test_freeze import PASCAL, add_faces

SIZE = 64


@pytest.fixture
def twins(workspace, faces_dir, tmp_path):
    """Two copies of one catalog with accepted faces: `warm` gets the crop cache, `cold` never does."""
    add_faces(workspace, faces_dir, PASCAL)
    workspace.close()
    shutil.copytree(workspace.root, tmp_path / "cold")
    cold = open_workspace(tmp_path / "cold")
    yield workspace, cold
    cold.close()


def count_decodes(monkeypatch, module) -> list[str]:
    """The photos `module` decodes from now on (its load_rgb's calls), by path."""
    seen: list[str] = []
    real = module.load_rgb

    def counting(path, *a, **k):
        seen.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(module, "load_rgb", counting)
    return seen


@pytest.fixture
def decodes(monkeypatch):
    """The photos freeze decodes, by path."""
    return count_decodes(monkeypatch, freeze_mod)


def cached_files(ws) -> list:
    return sorted((ws.root / CROPS_DIR).rglob("*.png"))


def test_cached_crops_give_the_archive_a_render_gives(twins, decodes):
    warm, cold = twins
    (line,) = prerender(warm, [SIZE])
    n_faces = len(cached_files(warm))
    assert line == {"size": SIZE, "rendered": n_faces, "present": 0, "failed": 0} and n_faces > len(PASCAL)
    assert prerender(warm, [SIZE])[0]["present"] == n_faces  # a second pass renders nothing
    hit = freeze_dataset(warm, "ghosts", resolution=SIZE, progress=False)
    assert decodes == []  # every crop came from the cache: no photo was decoded
    miss = freeze_dataset(cold, "ghosts", resolution=SIZE, progress=False, use_cache=False)
    assert len(decodes) == len(PASCAL)
    assert hit.sha256 == miss.sha256 and hit.path.read_bytes() == miss.path.read_bytes()
    assert verify_archive(hit.path).ok
    # The mirror check hashes the cached crops' pixels as it hashes rendered ones.
    a = freeze_dataset(warm, "mirror", resolution=SIZE, progress=False, mirror_check=True)
    b = freeze_dataset(cold, "mirror", resolution=SIZE, progress=False, mirror_check=True, use_cache=False)
    assert a.path.read_bytes() == b.path.read_bytes()


def test_prerender_at_two_sizes_decodes_each_photo_once(twins, monkeypatch):
    warm, cold = twins
    seen = count_decodes(monkeypatch, crops_mod)
    lines = prerender(warm, [SIZE, 2 * SIZE])
    assert [line["size"] for line in lines] == [SIZE, 2 * SIZE]
    assert lines[0]["rendered"] == lines[1]["rendered"] == len(cached_files(warm)) // 2 > 0
    assert sorted(seen) == sorted(set(seen)) and len(seen) == len(PASCAL)  # one decode per photo
    for size in (SIZE, 2 * SIZE):  # each size's crops are the ones a freeze at that size takes
        hit = freeze_dataset(warm, f"at{size}", resolution=size, progress=False)
        miss = freeze_dataset(cold, f"at{size}", resolution=size, progress=False, use_cache=False)
        assert hit.path.read_bytes() == miss.path.read_bytes()


def test_damaged_or_stale_crops_are_rendered_again(twins, decodes):
    warm, cold = twins
    prerender(warm, [SIZE])
    files = cached_files(warm)
    flipped = bytearray(files[0].read_bytes())
    flipped[len(flipped) // 2] ^= 0x01  # inside the image data: a chunk CRC no longer matches
    files[0].write_bytes(bytes(flipped))
    files[1].write_bytes(files[1].read_bytes()[:-20])  # truncated
    files[2].write_bytes(files[3].read_bytes() + b"trailing")  # valid PNG, but not the bytes a render gives
    # Re-review: one face re-cropped by hand (its quad moved) in both copies: its key changes.
    for ws in (warm, cold):
        with ws.session() as s:
            face = s.scalars(select(Face).order_by(Face.id)).first()
            face.quad = [[x + 1.5, y - 0.5] for x, y in face.quad]
    hit = freeze_dataset(warm, "ghosts", resolution=SIZE, progress=False)
    assert 1 <= len(decodes) <= 4  # only the photos with a damaged or stale crop were decoded
    miss = freeze_dataset(cold, "ghosts", resolution=SIZE, progress=False, use_cache=False)
    assert hit.path.read_bytes() == miss.path.read_bytes()


def test_freeze_after_a_takedown_matches_and_the_cache_is_cleared(twins):
    warm, cold = twins
    prerender(warm, [SIZE])
    freeze_dataset(warm, "ghosts", resolution=SIZE, progress=False)
    freeze_dataset(cold, "ghosts", resolution=SIZE, progress=False, use_cache=False)
    with warm.session() as s:
        sha = s.scalars(select(Image.sha256).order_by(Image.sha256)).first()
    for ws in (warm, cold):
        takedown(ws, image=sha, reason="the person asked", purge=True, progress=False)
    assert cached_files(warm) == []  # crops are images of faces: a takedown leaves none behind
    prerender(warm, [SIZE])  # the rest is rendered again; the taken-down photo is not selected
    hit = freeze_dataset(warm, "ghosts", resolution=SIZE, progress=False)
    miss = freeze_dataset(cold, "ghosts", resolution=SIZE, progress=False, use_cache=False)
    assert hit.version == miss.version and hit.path.read_bytes() == miss.path.read_bytes()
    assert sha not in hit.path.read_bytes().decode("latin-1")


def test_prerender_survives_a_bad_photo(twins):
    warm, _ = twins
    with warm.session() as s:
        path = warm.abspath(s.scalars(select(Image.path).order_by(Image.sha256)).first())
    path.write_bytes(b"not a photo any more")
    (line,) = prerender(warm, [SIZE])
    assert line["failed"] == 1 and line["rendered"] == len(cached_files(warm)) > 0


def test_accepting_faces_in_review_renders_their_crops_in_the_background(workspace, faces_dir):
    ids = add_faces(workspace, faces_dir, PASCAL[:2], decision="undecided")
    renderer = CropRenderer(workspace.root, delay=0.0)
    ON_ACCEPTED.append(renderer.poke)
    try:
        started = time.perf_counter()
        decide(workspace, ids[:1], "rejected", "tester")  # a rejection asks for no render
        assert renderer.runs == 0 and not renderer._wake.is_set()
        decide(workspace, ids[1:], "accepted", "tester")
        assert time.perf_counter() - started < 2.0  # the decision does not wait for the render
        deadline = time.monotonic() + 120
        while renderer.runs < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        ON_ACCEPTED.remove(renderer.poke)
    assert renderer.runs >= 1
    # The workspace's target size (512 by default) was rendered: one crop per face still accepted.
    assert len(cached_files(workspace)) == len(ids) - 1


def test_prefect_is_imported_only_where_an_api_may_be_configured(monkeypatch, tmp_path):
    for k in [k for k in os.environ if k.startswith("PREFECT_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert _prefect_api_may_be_set() is False
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://127.0.0.1:4200/api"\n')
    assert _prefect_api_may_be_set() is True
    (tmp_path / "prefect.toml").unlink()
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert _prefect_api_may_be_set() is True


def test_the_prerender_waits_for_a_pause_in_catalog_writes(workspace):
    from curation.datasets.prerender import wait_for_quiet

    os.utime(workspace.catalog_file)  # a decision just committed
    started = time.monotonic()
    wait_for_quiet(workspace, 0.6, poll_s=0.05)
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    wait_for_quiet(workspace, 0.05, poll_s=0.05)  # quiet long enough already: no wait
    assert time.monotonic() - started < 0.3
