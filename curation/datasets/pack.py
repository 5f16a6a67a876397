"""Packing a folder of prepared images into a dataset archive (the job of StyleGAN2-ADA's dataset_tool.py),
and the parallel, order-keeping map that freeze uses too.

Decoding, resizing and PNG encoding run on a thread pool: Pillow releases the GIL while it decodes, resamples
and deflates, so threads use every core without copying pixels between processes. Results come back in input
order, with a bounded number in flight, so the archive is the same whatever the number of workers.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import itertools
import json
import os
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.files import collect_files
from curation.catalog.workers import default_workers
from curation.datasets.card import CardFacts, render_card
from curation.datasets.format import MAX_RESOLUTION, MIN_RESOLUTION, encode_png, is_power_of_two
from curation.datasets.png import has_chunk, png_ihdr, storable_png
from curation.datasets.writer import ArchiveInfo, ArchiveWriter

if TYPE_CHECKING:
    import numpy as np

T = TypeVar("T")
R = TypeVar("R")

GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F"}
_TRANSPOSING = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def ordered_map(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,  # threads; None: one per available core
    chunk: int = 4,  # items per task: amortises scheduling without starving the last worker
    ahead: int = 2,  # tasks queued per worker: bounds memory on huge inputs
) -> Iterator[R]:
    """`map(fn, items)` on a thread pool, yielding results in input order.

    An exception in `fn` is raised here at that item's turn; stopping the iteration cancels queued work.
    """
    workers = default_workers() if workers is None else workers
    if workers <= 1:
        yield from map(fn, items)
        return
    it = iter(items)
    pending: collections.deque[Future] = collections.deque()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ghosts-pack")
    try:
        while True:
            while len(pending) < workers * ahead and (batch := list(itertools.islice(it, chunk))):
                pending.append(pool.submit(_run_batch, fn, batch))
            if not pending:
                break
            yield from pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _run_batch(fn: Callable[[T], R], batch: Sequence[T]) -> list[R]:
    return [fn(x) for x in batch]


# --- pack ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    path: Path
    rel: str  # path relative to the packed folder, with forward slashes
    width: int  # upright (EXIF orientation applied)
    height: int
    mode: str


@dataclass(frozen=True)
class PackPlan:
    """What every image becomes: the output side and mode, and whether to crop or resize."""

    resolution: int
    mode: str  # "RGB" or "L"
    center_crop: bool


@dataclass
class PackResult:
    info: ArchiveInfo
    seconds: float
    workers: int
    resized: int
    cropped: int

    def as_dict(self) -> dict[str, Any]:
        i = self.info
        return {
            "path": str(i.path),
            "sha256": i.sha256,
            "size_bytes": i.size_bytes,
            "count": i.count,
            "resolution": i.resolution,
            "mode": i.mode,
            "labelled": i.labelled,
            "resized": self.resized,
            "cropped": self.cropped,
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
        }


def probe_image(path: Path, root: Path) -> Probe:
    """Size and mode from the file header, without decoding pixels; names the file on any failure."""
    rel = path.relative_to(root).as_posix()
    try:
        with open(path, "rb") as fh:
            # An 8-bit RGB or grey PNG without EXIF (what `ghosts align` writes) is read from its IHDR alone:
            # the size and mode Pillow reports for it, without opening it with Pillow.
            if (found := png_ihdr(fh)) is not None and not has_chunk(fh, b"eXIf"):
                return Probe(path, rel, *found)
        return _probe_with_pillow(path, rel)
    except Exception as e:  # noqa: BLE001 - Pillow's errors for unreadable files vary by format
        raise GhostsError(f"{rel}: cannot read as an image ({e})") from None


def _probe_with_pillow(path: Path, rel: str) -> Probe:
    # Pillow imported here, for start-up cost: a folder of aligned PNGs is probed and packed without it.
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            width, height = im.size
            # Pillow looks for a PNG's EXIF by decoding the whole image (an eXIf chunk may follow the
            # pixels); the chunk headers say whether there is one at all.
            if im.format == "PNG" and not has_chunk(im.fp, b"eXIf"):
                return Probe(path, rel, width, height, im.mode)
            if im.getexif().get(0x0112, 1) in _TRANSPOSING:
                width, height = height, width
            return Probe(path, rel, width, height, im.mode)


def plan_pack(probes: Sequence[Probe], resolution: int | None = None, center_crop: bool = False) -> PackPlan:
    """Check the folder against the format and decide the output; the error names the first offending file."""
    if not probes:
        raise GhostsError("no images to pack (looked for .jpg .png .webp .gif .bmp .tif files)")
    if resolution is not None:
        check_resolution(resolution)
    first = probes[0]
    for p in probes:
        if p.width != p.height and not center_crop:
            raise GhostsError(
                f"{p.rel} is {p.width}x{p.height}, not square: crop the images to squares first, "
                "or pass --center-crop"
            )
        side = min(p.width, p.height)
        if resolution is None:
            if not is_power_of_two(side) or side < MIN_RESOLUTION:
                raise GhostsError(
                    f"{p.rel} is {side}x{side}: the side must be a power of two ({MIN_RESOLUTION}, 8, "
                    "..., 1024); pass --resolution N to resize"
                )
            if side != min(first.width, first.height):
                raise GhostsError(
                    f"{p.rel} is {side}x{side} but {first.rel} is {first.width}x{first.height}: all "
                    "images must be the same size; pass --resolution N to resize"
                )
    mode = "L" if all(p.mode in GREY_MODES for p in probes) else "RGB"
    return PackPlan(resolution or min(first.width, first.height), mode, center_crop)


def check_resolution(resolution: int) -> None:
    if not is_power_of_two(resolution) or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise GhostsError(
            f"resolution {resolution} must be a power of two from {MIN_RESOLUTION} to {MAX_RESOLUTION}"
        )


def prepare_image(rgb: np.ndarray, plan: PackPlan) -> tuple[np.ndarray, bool, bool]:
    """Crop and resize one upright RGB image to the plan; returns (pixels, cropped, resized)."""
    h, w = rgb.shape[:2]
    cropped = resized = False
    if w != h and plan.center_crop:
        side = min(w, h)
        y0, x0 = (h - side) // 2, (w - side) // 2
        rgb = rgb[y0 : y0 + side, x0 : x0 + side]
        cropped = True
    if rgb.shape[0] != plan.resolution:
        # Lanczos keeps detail when shrinking; reducing_gap pre-shrinks big inputs by box filter (fast, exact enough).
        from PIL import Image  # imported here, for start-up cost (see _probe_with_pillow)

        im = Image.fromarray(rgb).resize(
            (plan.resolution, plan.resolution), Image.Resampling.LANCZOS, reducing_gap=3.0
        )
        rgb = _numpy().asarray(im)
        resized = True
    # Grey inputs decode to three equal channels; one of them is the L image.
    return (rgb[..., 0] if plan.mode == "L" else rgb), cropped, resized


# What decode_image reports for the two modes a stored PNG can have (the provenance is the same either way).
_STORED_CONVERSION = {"RGB": None, "L": "L->RGB"}


def _numpy():
    # numpy and the decoder (curation.catalog.imaging) are imported on first use, for start-up cost: a pack of
    # PNGs that are stored as they are (what `ghosts align` writes) never loads them.
    import numpy

    return numpy


def _record(
    probe, digest: str, size, mode: str, conversion: str | None, cropped=False, resized=False
) -> dict:
    """A packed local file's record: where it came from, its digest and what was done to its pixels."""
    return {
        "source_kind": "local",
        "original_path": probe.rel,
        "image_sha256": digest,
        "original_size": list(size),
        "original_mode": mode,
        "conversion": conversion,
        "cropped": cropped,
        "resized": resized,
    }


def _pack_one(args: tuple[Probe, PackPlan]) -> tuple[bytes, str, int, dict[str, Any], bool, bool]:
    """(PNG to store, its sha256 and CRC-32, provenance record, cropped, resized) for one file; runs on a
    worker thread, so the hashing is done here too (hashlib and zlib release the GIL)."""
    probe, plan = args
    data = probe.path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if probe.width == probe.height == plan.resolution and probe.mode == plan.mode:
        # Already what the archive holds (what `ghosts align` writes): stored without a decode and a re-encode
        # once its chunks and image data check out; anything else is decoded below.
        stored = storable_png(data, plan.resolution, plan.mode)
        if stored is not None:
            record = _record(
                probe, digest, (probe.width, probe.height), probe.mode, _STORED_CONVERSION[plan.mode]
            )
            stored_digest = digest if stored is data else hashlib.sha256(stored).hexdigest()
            return stored, stored_digest, zlib.crc32(stored), record, False, False
    # Imported here, for start-up cost (see _numpy).
    from curation.catalog.imaging import ImageRejected, decode_image

    try:
        dec = decode_image(data)
    except ImageRejected as e:
        raise GhostsError(f"{probe.rel}: {e.reason}") from None
    pixels, cropped, resized = prepare_image(dec.rgb, plan)
    record = _record(probe, digest, (dec.width, dec.height), dec.mode, dec.conversion, cropped, resized)
    png = encode_png(pixels)
    return png, hashlib.sha256(png).hexdigest(), zlib.crc32(png), record, cropped, resized


def read_folder_labels(src: Path, probes: Sequence[Probe]) -> list[int] | None:
    """Labels from a dataset.json in the folder (dataset_tool's convention), one per image in probe order."""
    f = src / "dataset.json"
    if not f.is_file():
        return None
    try:
        raw = json.loads(f.read_text()).get("labels")
    except (ValueError, AttributeError) as e:
        raise GhostsError(f"{f}: not a valid dataset.json ({e})") from None
    if raw is None:
        return None
    table = {str(name).replace("\\", "/"): lab for name, lab in raw}
    labels = []
    for p in probes:
        lab = table.get(p.rel)
        if not isinstance(lab, int) or lab < 0:
            raise GhostsError(f"{f}: no class label (an integer >= 0) for {p.rel}")
        labels.append(lab)
    return labels


def pack_folder(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    resolution: int | None = None,  # resize every image to this side; None: they must already agree
    center_crop: bool = False,  # crop non-square images to their central square instead of refusing them
    workers: int | None = None,  # encoding threads; None: one per available core
    overwrite: bool = False,
    progress: bool = True,
) -> PackResult:
    """Pack every image under `src` (sorted by path) into the archive `out`."""
    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise GhostsError(f"no such folder: {src}")
    if out.suffix.lower() != ".zip":
        raise GhostsError(f"the output must be a .zip file, got {out}")
    if out.exists() and not overwrite:
        raise GhostsError(f"{out} exists; choose another name or pass --overwrite")
    files, _ = collect_files([src], recursive=True)
    files = [f for f in files if f.resolve() != out.resolve()]
    probes = [probe_image(f, src) for f in tqdm(files, desc="scan", unit="img", disable=not progress)]
    plan = plan_pack(probes, resolution, center_crop)
    labels = read_folder_labels(src, probes)
    workers = default_workers() if workers is None else max(1, workers)
    n_crop = n_resize = 0
    with ArchiveWriter(out) as writer:
        results = ordered_map(_pack_one, ((p, plan) for p in probes), workers=workers)
        for i, (png, digest, crc, record, cropped, resized) in enumerate(
            tqdm(results, total=len(probes), desc="pack", unit="img", disable=not progress)
        ):
            writer.add(png, record, labels[i] if labels else None, sha256=digest, crc=crc)
            n_crop += cropped
            n_resize += resized
        facts = CardFacts(
            title=out.stem,
            date=dt.date.today().isoformat(),
            count=len(probes),
            resolution=plan.resolution,
            mode=plan.mode,
            class_names=[str(c) for c in range(max(labels) + 1)] if labels else None,
            sources={"local": len(probes)},
            selection=[f"every image file under the folder `{src.name}`, sorted by path"]
            + ([f"{n_crop} cropped to their central square"] if n_crop else [])
            + ([f"{n_resize} resized to {plan.resolution} px (Lanczos)"] if n_resize else []),
        )
        info = writer.finish(render_card(facts))
    return PackResult(info, time.perf_counter() - t0, workers, n_resize, n_crop)
