"""Reader for a frozen dataset archive: an uncompressed zip of same-size square PNGs plus `dataset.json`.

The archive is read on its own (no catalog needed). Images are served as uint8 CHW arrays in sorted member
order; `mirror=True` appends a horizontally flipped copy of every image. The zip handle is opened lazily per
process, so DataLoader worker processes each get their own.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from curation.datasets.format import ArchiveError, png_header
from curation.datasets.reader import open_archive
from training.errors import TrainingError


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    name: str  # archive file stem, used in run folder names
    members: tuple[str, ...]
    resolution: int
    channels: int
    labels: np.ndarray | None  # int64 class index per member, or None


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def inspect_archive(path: Path) -> ArchiveInfo:
    """Open and validate an archive; every problem becomes a TrainingError naming the file."""
    path = Path(path)
    if not path.exists():
        raise TrainingError(f"dataset archive not found: {path}")
    if not zipfile.is_zipfile(path):
        raise TrainingError(f"{path} is not a dataset archive (expected a .zip written by `ghosts freeze`)")
    try:
        # The one reader (curation.datasets.reader): training accepts exactly the member names, labels and
        # manifest that `ghosts verify` accepts.
        with open_archive(path) as archive:
            members = tuple(archive.names)
            table = archive.labels
            first = archive.read_image(members[0])
    except ArchiveError as e:
        raise TrainingError(str(e)) from None
    except (OSError, PIL.UnidentifiedImageError) as e:
        raise TrainingError(f"cannot read dataset archive {path}: {e}") from e
    w, h = first.size
    if w != h or w < 4 or w & (w - 1):
        raise TrainingError(f"{path}: images must be square with a power-of-two size, found {w}x{h}")
    if first.mode not in ("RGB", "L"):
        raise TrainingError(f"{path}: images must be RGB or greyscale, found mode {first.mode}")
    labels = None
    if table:
        missing = [m for m in members if m not in table]
        if missing:
            raise TrainingError(
                f"{path}: dataset.json has no label for {missing[0]} ({len(missing)} missing)"
            )
        labels = np.array([int(table[m]) for m in members], dtype=np.int64)
    return ArchiveInfo(
        path=path,
        name=path.stem,
        members=members,
        resolution=w,
        channels=3 if first.mode == "RGB" else 1,
        labels=labels,
    )


class ImageArchive(torch.utils.data.Dataset):
    """Map-style dataset over an archive. Item: (uint8 array [C, H, W], one-hot label float32 [c_dim])."""

    def __init__(
        self, path: Path, *, mirror: bool = False, use_labels: bool = False, max_size: int | None = None
    ):
        self.info = inspect_archive(path)
        self.path = self.info.path
        self.mirror = mirror
        self.members = self.info.members[:max_size] if max_size else self.info.members
        self.resolution, self.channels = self.info.resolution, self.info.channels
        if use_labels and self.info.labels is None:
            raise TrainingError(f"{path}: --cond needs labels in dataset.json, but it has none")
        self.labels = self.info.labels[: len(self.members)] if use_labels else None
        self.c_dim = int(self.info.labels.max()) + 1 if use_labels else 0
        self._zip: zipfile.ZipFile | None = None

    def __len__(self) -> int:
        return len(self.members) * (2 if self.mirror else 1)

    def __getstate__(self):  # zip handles cannot cross process boundaries; reopen in each worker
        state = self.__dict__.copy()
        state["_zip"] = None
        return state

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def read_image(self, raw_idx: int) -> np.ndarray:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        name = self.members[raw_idx]
        try:
            with self._zip.open(name) as fh:  # the header's size first: nothing is decoded for a wrong one
                width, height, _ = png_header(fh.read(33))
        except ValueError:  # png_header's "not a PNG file"
            raise TrainingError(f"{self.path}: {name} is not a PNG file") from None
        except (OSError, zipfile.BadZipFile) as e:
            raise TrainingError(f"{self.path}: cannot read {name}: {e}") from e
        if (width, height) != (self.resolution, self.resolution):
            raise TrainingError(
                f"{self.path}: {name} claims {width}x{height} pixels, "
                f"expected {self.resolution}x{self.resolution} like the rest"
            )
        try:
            with PIL.Image.open(io.BytesIO(self._zip.read(name))) as im:
                arr = np.asarray(im.convert("RGB" if self.channels == 3 else "L"))
        except (OSError, PIL.UnidentifiedImageError, zipfile.BadZipFile) as e:  # BadZipFile: a bad CRC
            raise TrainingError(f"{self.path}: cannot decode {name}: {e}") from e
        if arr.shape[0] != self.resolution or arr.shape[1] != self.resolution:
            raise TrainingError(
                f"{self.path}: {name} is {arr.shape[1]}x{arr.shape[0]}, "
                f"expected {self.resolution}x{self.resolution} like the rest"
            )
        arr = arr[:, :, None] if arr.ndim == 2 else arr
        return arr.transpose(2, 0, 1)

    def label(self, raw_idx: int) -> np.ndarray:
        onehot = np.zeros(self.c_dim, dtype=np.float32)
        if self.labels is not None:
            onehot[self.labels[raw_idx]] = 1
        return onehot

    def __getitem__(self, idx: int):
        n = len(self.members)
        raw, flip = idx % n, idx >= n
        img = self.read_image(raw)
        if flip:
            img = img[:, :, ::-1]
        return np.ascontiguousarray(img), self.label(raw)


class GlobalBatchSampler(torch.utils.data.Sampler):
    """Endless stream of indices from a seeded shuffle, cut into global batches of `batch` images of which
    this rank takes its contiguous share. Every rank walks the same order, so N processes see exactly the
    images one process would, and `start_batch` resumes the stream where a checkpoint left it."""

    def __init__(
        self,
        size: int,
        *,
        batch: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        start_batch: int = 0,
    ):
        self.size, self.batch, self.rank, self.world_size = size, batch, rank, world_size
        self.seed, self.shuffle, self.start_batch = seed, shuffle, start_batch
        self.per_rank = batch // world_size

    def _epoch_order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self):
        pos = self.start_batch * self.batch  # position in the endless concatenation of epoch orders
        epoch, order = -1, None
        while True:
            for j in range(self.rank * self.per_rank, (self.rank + 1) * self.per_rank):
                e, i = divmod(pos + j, self.size)
                if e != epoch:
                    epoch, order = e, self._epoch_order(e)
                yield int(order[i])
            pos += self.batch
