"""The explore flow's memorisation step on the Prefect test server: after a run, the sheet of closest pairs is
an image artifact and the numbers a table artifact, both the same as the memorization.json beside them; the
training archive is found from the snapshot; a missing one is a clear error, and 0 samples leave it out."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch

from curation.catalog.errors import GhostsError
from tests.flows.conftest import read_artifact
from tests.training.archives import write_archive
from training.checkpoint import save_snapshot
from training.networks import Generator

RES = 32


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory, faces_dir) -> tuple[Path, Path]:
    """An untrained 32-px generator whose snapshot records, as training does, the archive it was trained on:
    FFHQ-aligned crops of the collage's faces."""
    from alignment.align import align_face, ffhq_quad
    from alignment.detect import detect_faces

    root = tmp_path_factory.mktemp("explore")
    rgb = np.asarray(PIL.Image.open(faces_dir / "bald_guys.jpg").convert("RGB"))
    crops = np.stack([align_face(rgb, ffhq_quad(f.landmarks), 64) for f in detect_faces(rgb)])
    archive = write_archive(root / "faces.zip", crops)
    torch.manual_seed(0)
    G = Generator(z_dim=32, w_dim=32, img_resolution=RES, channel_base=256, channel_max=32, mapping_layers=1)
    stem = save_snapshot(root / "run" / "network-snapshot-000000", G=G.eval(), options={"data": str(archive)})
    return stem, archive


def _image(data_url: str) -> np.ndarray:
    head, b64 = data_url.split(",", 1)
    assert head == "data:image/jpeg;base64"
    return np.asarray(PIL.Image.open(io.BytesIO(base64.b64decode(b64))))


def small_explore(stem: Path, outdir: Path, size: int, memorization_samples: int) -> dict:
    """The explore flow on the CPU: `size` grid seeds, a morph of seeds 0 and 1 in `size` frames."""
    from flows.explore import explore

    return explore(
        network=str(stem),
        grid_seeds=size,
        morph_seeds=[0, 1],
        frames=size,
        device="cpu",
        outdir=str(outdir),
        memorization_samples=memorization_samples,
    )


def test_explore_publishes_the_memorization_sheet_and_numbers(prefect_api, snapshot, tmp_path):
    from flows.explore import memorization_rows

    stem, archive = snapshot
    out = tmp_path / "look"
    done = small_explore(stem, out, size=2, memorization_samples=6)
    report = json.loads(Path(done["memorization"]["json"]).read_text())
    assert report["archive"] == str(archive) and report["samples"] == 6
    assert report["training_images"] >= 20  # the collage's faces
    sheet = Path(done["memorization"]["sheet"])
    assert sheet.parent == out and sheet.is_file()

    table = read_artifact("explore-memorization")
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert rows == json.loads(json.dumps(memorization_rows(report)))
    by_name = {r["measure"]: r["value"] for r in rows}
    assert by_name["generated faces"] == 6 and by_name["training faces"] == report["training_images"]
    assert (
        by_name["closer than 0.6 to a training face (same person)"] == f"{report['fraction_same_person']:.1%}"
    )

    picture = read_artifact("explore-memorization-sheet")
    assert picture.type == "image"
    shown = _image(picture.data)
    on_disk = np.asarray(PIL.Image.open(sheet))
    # The sheet itself (one row per pair, three crops a row), shrunk to the artifact's size at most.
    assert (
        shown.shape[2] == 3
        and abs(shown.shape[1] / shown.shape[0] - on_disk.shape[1] / on_disk.shape[0]) < 0.05
    )


def test_explore_without_the_report_and_with_a_missing_archive(prefect_api, snapshot, tmp_path):
    from flows.explore import explore

    stem, _ = snapshot
    done = small_explore(stem, tmp_path, size=1, memorization_samples=0)
    assert done["memorization"] is None and not (tmp_path / "memorization.json").exists()
    with pytest.raises(GhostsError, match="no training archive"):
        explore(network=str(stem), device="cpu", outdir=str(tmp_path), archive=str(tmp_path / "gone.zip"))


def test_ghosts_run_explore_takes_the_archive_and_the_report_size(prefect_api, snapshot, tmp_path):
    import shutil

    from click.testing import CliRunner

    from flows.cli import main

    stem, archive = snapshot
    elsewhere = shutil.copy(archive, tmp_path / "same-faces.zip")  # not the archive the snapshot records
    shown = " ".join(CliRunner().invoke(main, ["run", "explore", "--help"]).output.split())
    assert "--archive ZIP" in shown and "--memorization-samples" in shown and "[default: 64; x>=0]" in shown
    argv = ["run", "explore", "--network", str(stem), "--grid-seeds", "1", "--morph-seeds", "0,1", "--frames"]
    argv += ["1", "--device", "cpu", "--outdir", str(tmp_path / "look"), "--json"]
    res = CliRunner().invoke(main, argv + ["--archive", str(elsewhere), "--memorization-samples", "3"])
    assert res.exit_code == 0, res.output
    report = json.loads(Path(json.loads(res.stdout)["memorization"]["json"]).read_text())
    assert report["archive"] == str(elsewhere) and report["samples"] == 3
    res = CliRunner().invoke(main, argv + ["--memorization-samples", "0"])
    assert res.exit_code == 0 and json.loads(res.stdout)["memorization"] is None, res.output
