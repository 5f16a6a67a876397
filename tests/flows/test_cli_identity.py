"""`ghosts memorization` and `ghosts people` from the command line: real snapshots, archives of real face
crops and a real workspace; the outcome is what the user reads (JSON, the sheet, clear errors)."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

from alignment.align import align_face, ffhq_quad
from alignment.detect import detect_faces
from flows.cli import main
from tests.training.archives import write_archive
from training.checkpoint import save_snapshot
from training.networks import Generator

RES = 64


@pytest.fixture(scope="module")
def archive(tmp_path_factory, faces_dir):
    rgb = np.asarray(PIL.Image.open(faces_dir / "bald_guys.jpg").convert("RGB"))
    crops = np.stack([align_face(rgb, ffhq_quad(f.landmarks), RES) for f in detect_faces(rgb)])
    return write_archive(tmp_path_factory.mktemp("memo") / "faces.zip", crops)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(
        z_dim=64, w_dim=64, img_resolution=RES, channel_base=2048, channel_max=64, mapping_layers=2
    ).eval()
    stem = tmp_path_factory.mktemp("net") / "network-snapshot-000000"
    save_snapshot(stem, G=G, G_ema=G)
    return stem


def memorization(snapshot, archive, *options: str):
    """`ghosts memorization --network SNAPSHOT --archive ARCHIVE OPTIONS... --device cpu`."""
    return CliRunner().invoke(
        main,
        ["memorization", "--network", str(snapshot), "--archive", str(archive), *options, "--device", "cpu"],
    )


def test_memorization_reports_json_and_writes_the_sheet(archive, snapshot, tmp_path):
    sheet = tmp_path / "sheet.png"
    result = memorization(
        snapshot,
        archive,
        "--samples",
        "3",
        "--first-seed",
        "4",
        "--trunc",
        "0.7",
        "--json",
        "--out",
        str(sheet),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert (
        report["seeds"] == [4, 5, 6] and report["truncation_psi"] == 0.7 and report["training_images"] == 24
    )
    assert report["fraction_same_person"] == 0.0  # an untrained network copies nobody
    assert len(report["pairs"]) == 3 and report["sheet"] == str(sheet)
    with PIL.Image.open(sheet) as im:
        assert im.width > im.height / 3  # rows of generated | nearest pairs


def test_memorization_plain_summary_and_a_missing_archive(archive, snapshot, tmp_path):
    ok = memorization(snapshot, archive, "--samples", "2")
    assert ok.exit_code == 0, ok.output
    assert "2 generated faces against 24 training faces: 0.0% look like faces" in ok.output
    missing = memorization(snapshot, tmp_path / "nope.zip")
    assert missing.exit_code == 1 and "not found" in missing.output


def test_people_groups_a_workspace_analysed_without_identities(workspace, faces_dir):
    from curation.analysis.analyze import analyze_workspace
    from curation.sources.ingest import ingest_paths

    ingest_paths(workspace, [faces_dir / "bald_guys.jpg"], progress=False)
    analyze_workspace(workspace, workers=1, progress=False, identities=False)
    runner = CliRunner()
    first = runner.invoke(main, ["people", "--json", "--data", str(workspace.root)])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert (summary["described"], summary["clustered"], summary["people"]) == (24, 24, 4)
    assert summary["largest_share"] == 0.25
    again = runner.invoke(main, ["people", "--data", str(workspace.root)])
    assert again.exit_code == 0 and again.output.startswith(
        "described 0 faces, grouped 0 (0 new people); 4 people"
    )
