"""The archive reader and the global-batch sampler."""

import io
import json
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from tests.training.archives import blob_images, member_name, write_archive
from training.dataset import GlobalBatchSampler, ImageArchive, inspect_archive
from training.errors import TrainingError


def test_reads_images_in_sorted_order_and_ignores_other_members(tmp_path):
    imgs = blob_images(5, 16)
    path = write_archive(tmp_path / "a.zip", imgs, extra={"provenance.jsonl": "{}\n", "DATASET.md": "# hi"})
    ds = ImageArchive(path)
    assert len(ds) == 5 and ds.resolution == 16 and ds.channels == 3 and ds.c_dim == 0
    for i in range(5):
        img, label = ds[i]
        assert img.dtype == np.uint8 and img.shape == (3, 16, 16)
        assert np.array_equal(img, imgs[i].transpose(2, 0, 1))
        assert label.shape == (0,)


def test_mirror_doubles_with_flipped_copies(tmp_path):
    imgs = blob_images(3, 8)
    ds = ImageArchive(write_archive(tmp_path / "a.zip", imgs), mirror=True)
    assert len(ds) == 6
    assert np.array_equal(ds[4][0], ds[1][0][:, :, ::-1])


def test_labels_and_greyscale(tmp_path):
    imgs = blob_images(4, 8, channels=1)
    ds = ImageArchive(write_archive(tmp_path / "g.zip", imgs, labels=[0, 2, 1, 2]), use_labels=True)
    assert ds.channels == 1 and ds[0][0].shape == (1, 8, 8)
    assert ds.c_dim == 3 and ds[1][1].tolist() == [0, 0, 1]


def test_worker_processes_each_open_the_archive(tmp_path):
    ds = ImageArchive(write_archive(tmp_path / "a.zip", blob_images(8, 8)))
    ds[0]  # an open handle in the parent must not break pickling for workers
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=1, multiprocessing_context="spawn")
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (4, 3, 8, 8)
    assert torch.equal(batches[1][0][3], torch.from_numpy(ds[7][0]))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_text("hello"), "not a dataset archive"),
        (lambda p: zipfile.ZipFile(p, "w").writestr("dataset.json", "{}"), "no PNG"),
    ],
)
def test_invalid_archives_are_clear_errors(tmp_path, make, message):
    path = tmp_path / "bad.zip"
    make(path)
    with pytest.raises(TrainingError, match=message):
        ImageArchive(path)


def test_non_square_and_odd_sized_images_are_refused(tmp_path):
    path = tmp_path / "odd.zip"
    with zipfile.ZipFile(path, "w") as zf:
        buf = io.BytesIO()
        PIL.Image.new("RGB", (24, 24)).save(buf, format="PNG")
        zf.writestr(member_name(0), buf.getvalue())
        zf.writestr("dataset.json", json.dumps({"labels": None}))
    with pytest.raises(TrainingError, match="power-of-two"):
        inspect_archive(path)


def test_mismatched_image_size_is_reported_on_read(tmp_path):
    path = write_archive(tmp_path / "a.zip", blob_images(2, 8))
    with zipfile.ZipFile(path, "a") as zf:
        buf = io.BytesIO()
        PIL.Image.new("RGB", (16, 16)).save(buf, format="PNG")
        zf.writestr(member_name(2), buf.getvalue())
    ds = ImageArchive(path)
    with pytest.raises(TrainingError, match="expected 8x8"):
        ds[2]


def test_sampler_ranks_split_the_same_global_batches():
    def take(sampler, k):
        it = iter(sampler)
        return [next(it) for _ in range(k)]

    one = take(GlobalBatchSampler(10, batch=4, seed=3), 12)
    r0 = take(GlobalBatchSampler(10, batch=4, rank=0, world_size=2, seed=3), 6)
    r1 = take(GlobalBatchSampler(10, batch=4, rank=1, world_size=2, seed=3), 6)
    merged = [v for b in range(3) for v in r0[2 * b : 2 * b + 2] + r1[2 * b : 2 * b + 2]]
    assert merged == one
    assert sorted(one[:10]) == list(range(10))  # an epoch is a permutation
    assert take(GlobalBatchSampler(10, batch=4, seed=3, start_batch=2), 4) == one[8:12]  # resume position
