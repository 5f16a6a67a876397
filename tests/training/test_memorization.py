"""The memorisation report on real face crops: a "network" that returns its training faces is flagged, an
untrained generator passes, and the report, sheet and JSON say so."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch

from alignment.align import align_face, ffhq_quad
from alignment.detect import detect_faces
from tests.training.archives import member_name, write_archive
from training.checkpoint import save_snapshot
from training.errors import TrainingError
from training.latent.memorization import MemorizationReport, measure_memorization, memorization, scan_archive
from training.networks import Generator

RES = 64
PHOTOS = [
    "bald_guys.jpg",
    "Tom_Cruise_avp_2014_4.jpg",
    "2008_001009.jpg",
    "2008_001322.jpg",
    "2009_004587.jpg",
]


@pytest.fixture(scope="module")
def faces(faces_dir) -> np.ndarray:
    """FFHQ-aligned 64-px crops of every face in a few shared photos, aligned by alignment.align."""
    crops = []
    for name in PHOTOS:
        rgb = np.asarray(PIL.Image.open(faces_dir / name).convert("RGB"))
        crops += [align_face(rgb, ffhq_quad(f.landmarks), RES) for f in detect_faces(rgb)]
    assert len(crops) >= 30
    return np.stack(crops)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, faces):
    return write_archive(tmp_path_factory.mktemp("memo") / "faces.zip", faces)


@pytest.fixture(scope="module")
def known(archive) -> np.ndarray:
    """The archive's descriptors, described once (as the catalog would hand them over)."""
    return scan_archive(archive)[2]


class CopyingNetwork(torch.nn.Module):
    """A generator-shaped stand-in that memorised its data: each seed's z picks a training image, returned
    (mirrored for odd picks, with slight grain) as the generator's [-1, 1] output."""

    def __init__(self, images: np.ndarray):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = 8, 0, 1, 1
        self.images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the latent tools find the device from a parameter

    def mapping(self, z, c, truncation_psi=1.0, truncation_cutoff=None):
        pick = (z[:, :1].abs() * 1e4).floor() % len(self.images)
        return pick.reshape(-1, 1, 1)

    def synthesis(self, ws, noise_mode="const"):
        i = int(ws[0, 0, 0])
        img = self.images[i : i + 1]
        if i % 2:
            img = img.flip(-1)
        grain = torch.from_numpy(np.random.RandomState(i).randn(*img.shape)).float() * 0.02
        return (img + grain).clamp(-1, 1)


def untrained(res: int = RES) -> Generator:
    torch.manual_seed(0)
    return Generator(
        z_dim=64, w_dim=64, img_resolution=res, channel_base=2048, channel_max=64, mapping_layers=2
    ).eval()


def test_a_copying_network_is_flagged(faces, archive, known, tmp_path):
    report = measure_memorization(
        CopyingNetwork(faces), archive, list(range(12)), sheet=tmp_path / "sheet.png", sheet_pairs=5
    )  # describes the archive itself
    assert report == measure_memorization(
        CopyingNetwork(faces),
        archive,
        list(range(12)),
        sheet=tmp_path / "sheet.png",
        sheet_pairs=5,
        training_descriptors=known,
    )
    assert report.fraction_same_person == 1.0 and report.fraction_face_like == 1.0
    assert report.descriptor_quantiles["p100"] < 0.3 and report.pixel_quantiles["p100"] < 0.05
    assert any(p.pixel_mirrored for p in report.pairs)
    members = [member_name(i) for i in range(len(faces))]
    for p in report.pairs:  # the copy is found by pixels, as the very image (mirrored or not)
        z = np.random.RandomState(p.seed).randn(1, 8)
        pick = int(np.floor(abs(z[0, 0]) * 1e4) % len(faces))
        assert p.pixel_member == members[pick] and p.pixel_mirrored == bool(pick % 2)
    sheet = np.asarray(PIL.Image.open(report.sheet))
    assert sheet.shape[1] == 3 * 192 + 2 * 4 and sheet.shape[0] == 5 * 192 + 4 * 4


def test_an_untrained_network_passes(faces, archive, known, tmp_path):
    report = measure_memorization(
        untrained(), archive, list(range(12)), truncation_psi=0.7, training_descriptors=known
    )
    assert report.fraction_same_person == 0.0 and report.fraction_face_like == 0.0
    assert set(report.descriptor_quantiles.values()) == {None}  # no face, no identity to compare
    assert report.pixel_quantiles["p0"] > 0.05
    # counted as faces regardless, its blobs are still mostly further than the same-person distance
    anyway = measure_memorization(
        untrained(),
        archive,
        list(range(12)),
        truncation_psi=0.7,
        min_face_score=None,
        training_descriptors=known,
    )
    assert anyway.fraction_face_like == 1.0 and anyway.fraction_same_person < 0.2
    assert anyway.descriptor_quantiles["p50"] > 0.6
    # the yardstick: the collage repeats four people, so some training faces sit close to another
    assert report.training_descriptor_quantiles["p0"] < 0.6
    assert report.sheet is None
    pairs = [p.pixel_distance for p in report.pairs]
    assert pairs == sorted(pairs) and sorted(p.seed for p in report.pairs) == list(range(12))
    pairs = [p.descriptor_distance for p in anyway.pairs]
    assert pairs == sorted(pairs)


def test_snapshot_report_round_trips_as_json(faces, archive, known, tmp_path):
    G = untrained()
    save_snapshot(tmp_path / "network-snapshot-000000", G=G, G_ema=G)
    report = memorization(
        tmp_path / "network-snapshot-000000",
        archive,
        samples=3,
        first_seed=5,
        sheet=tmp_path / "s.png",
        training_descriptors=known,
    )
    again = memorization(
        tmp_path / "network-snapshot-000000", archive, samples=3, first_seed=5, training_descriptors=known
    )
    assert report.seeds == [5, 6, 7] and report.samples == 3 and report.training_images == len(faces)
    assert [p.descriptor_distance for p in report.pairs] == [p.descriptor_distance for p in again.pairs]
    data = json.loads(report.to_json())
    assert MemorizationReport.from_dict(data) == report
    assert set(data["descriptor_quantiles"]) == {"p0", "p5", "p25", "p50", "p75", "p95", "p100"}
    assert "3 generated faces" in report.summary() and "0.0% look like faces" in report.summary()


def test_bad_requests_fail_clearly(faces, archive, tmp_path):
    with pytest.raises(TrainingError, match="at least one seed"):
        measure_memorization(untrained(), archive, [])
    with pytest.raises(TrainingError, match="not found"):
        measure_memorization(untrained(), tmp_path / "missing.zip", [0])
    with pytest.raises(TrainingError, match="training descriptors"):
        measure_memorization(untrained(), archive, [0], training_descriptors=np.zeros((2, 128)))
