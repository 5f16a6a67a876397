"""Is the generator copying its training faces? Generate faces, find each one's nearest training faces, report.

Two distances per generated face, both against every image of the archive the network was trained on:
- by identity: dlib's 128-D face descriptor (`alignment.identity.crop_descriptor`, on the aligned crop; the
  archive holds FFHQ-aligned crops and the generator makes them). Below `threshold` (0.6, dlib's same-person
  distance) the generated face would be taken for that training person.
- by pixels: root-mean-square difference of the two crops at `pixel_size` (values 0-1), against each training
  image and its mirror (training may have used --mirror). Aligned crops make a plain distance meaningful: a
  near copy is close in pixels even where a descriptor is unsure.

A descriptor of something that is not a face means nothing (an untrained generator's blobs land within
0.6 of some face now and then), so each generated picture is first asked whether it looks like a face at all
(`crop_face_score`, dlib's HOG frontal filters); only face-like pictures can count as the same person.

The report also gives, as a yardstick, each training face's nearest *other* training face by descriptor: a
dataset that holds one person many times shows small distances there, and a model that learnt that person
will come close to them without copying any one photo. docs/responsible-use.md says what the numbers mean.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from alignment.identity import SAME_PERSON, crop_descriptor, crop_face_score, distances
from training.checkpoint import load_generator
from training.dataset import ImageArchive
from training.errors import TrainingError
from training.latent.generate import Drawing, generate_images
from training.latent.picture import make_grid, save_png

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


@dataclass
class NearestPair:
    seed: int
    descriptor_distance: float  # to the nearest training face by descriptor
    descriptor_member: str  # that training image (archive member name)
    pixel_distance: float  # RMS (0-1) to the nearest training image or its mirror
    pixel_member: str
    pixel_mirrored: bool  # the nearest by pixels was the mirrored image
    face_score: float  # crop_face_score of the generated picture (> min_face_score: it looks like a face)
    face_like: bool


@dataclass
class MemorizationReport:
    network: str
    archive: str
    training_images: int
    samples: int
    seeds: list[int]
    truncation_psi: float
    threshold: float  # same-person descriptor distance
    pixel_size: int  # side of the crops compared by pixels
    min_face_score: float | None  # pictures scoring below this are not faces (None: every one counts)
    fraction_face_like: float  # samples that look like a face at all
    fraction_same_person: (
        float  # samples that look like a face and are closer than `threshold` to a training one
    )
    descriptor_quantiles: dict[str, float | None]  # nearest training distance of the face-like samples
    pixel_quantiles: dict[str, float | None]  # nearest training RMS of every sample
    training_descriptor_quantiles: dict[
        str, float | None
    ]  # each training face to its nearest other one (yardstick)
    pairs: list[NearestPair] = field(
        default_factory=list
    )  # one per sample: face-like ones closest first, then the rest
    sheet: str | None = (
        None  # PNG of the closest pairs: generated | nearest by descriptor | nearest by pixels
    )

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> MemorizationReport:
        d = dict(d)
        d["pairs"] = [NearestPair(**p) for p in d.get("pairs", [])]
        return cls(**d)

    def summary(self) -> str:
        q, p, t = self.descriptor_quantiles, self.pixel_quantiles, self.training_descriptor_quantiles

        def f(x):
            return "-" if x is None else f"{x:.3f}"

        return (
            f"{self.samples} generated faces against {self.training_images} training faces: "
            f"{self.fraction_face_like:.1%} look like faces, {self.fraction_same_person:.1%} closer than "
            f"{self.threshold:g} to a training face (descriptor distance median {f(q['p50'])}, min {f(q['p0'])}; "
            f"training faces to each other: median {f(t['p50'])}); "
            f"pixel RMS median {f(p['p50'])}, min {f(p['p0'])}"
        )


def quantiles(values) -> dict[str, float | None]:
    """p0 (min), p5, p25, p50 (median), p75, p95, p100 (max); None for each when there are no values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {f"p{round(q * 100)}": None for q in QUANTILES}
    return {f"p{round(q * 100)}": float(np.quantile(v, q)) for q in QUANTILES}


def _small(img: np.ndarray, size: int) -> np.ndarray:
    """An HxWxC uint8 crop -> size x size x 3 uint8."""
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.shape[0] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp)
    return np.ascontiguousarray(img)


def _nearest_rms(queries: np.ndarray, pool: np.ndarray, block: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Index and RMS distance (0-1) of each query's nearest pool image; uint8 [N, s, s, 3] in, the pool
    converted a block at a time (memory: the uint8 pool plus one float block)."""
    q = queries.reshape(len(queries), -1).astype(np.float32) / 255.0
    qn = (q**2).sum(1)
    best = np.full(len(q), np.inf)
    idx = np.zeros(len(q), np.int64)
    for s in range(0, len(pool), block):
        p = pool[s : s + block].reshape(-1, q.shape[1]).astype(np.float32) / 255.0
        d2 = qn[:, None] + (p**2).sum(1)[None, :] - 2.0 * q @ p.T
        i = d2.argmin(axis=1)
        v = d2[np.arange(len(q)), i]
        better = v < best
        best[better], idx[better] = v[better], i[better] + s
    return idx, np.sqrt(np.maximum(best, 0.0) / q.shape[1])


def _nearest_other(vectors: np.ndarray, block: int = 1024) -> np.ndarray:
    """Each descriptor's distance to its nearest other one."""
    out = np.empty(len(vectors))
    for s in range(0, len(vectors), block):
        d = distances(vectors[s : s + block], vectors)
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        out[s : s + block] = d.min(axis=1)
    return out


def scan_archive(
    archive: Path | str, *, pixel_size: int = 64, descriptors: bool = True, progress: bool = False
) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """One pass over a dataset archive (the one archive reader): member names, every image at pixel_size
    (uint8 [N, s, s, 3]) and, when asked, their crop descriptors [N, 128]. Only the small copies are kept."""
    data = ImageArchive(Path(archive))
    small, vectors = [], []
    try:
        for i in tqdm(
            range(len(data.members)),
            desc="reading training faces",
            unit="face",
            disable=not progress,
            leave=False,
        ):
            img = data.read_image(i).transpose(1, 2, 0)
            small.append(_small(img, pixel_size))
            if descriptors:
                vectors.append(crop_descriptor(img))
    finally:
        data.close()
    return list(data.members), np.stack(small), (np.stack(vectors) if descriptors else None)


def read_training_face(archive: Path | str, index: int) -> np.ndarray:
    """One archive image, HxWxC uint8."""
    data = ImageArchive(Path(archive))
    try:
        return data.read_image(index).transpose(1, 2, 0)
    finally:
        data.close()


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img.copy())
    scale = out.shape[0] / 256
    cv2.rectangle(out, (0, 0), (out.shape[1], round(22 * scale) + 4), (0, 0, 0), -1)
    cv2.putText(
        out,
        text,
        (3, round(18 * scale) + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.6 * scale,
        (255, 255, 255),
        max(1, round(1.5 * scale)),
        cv2.LINE_AA,
    )
    return out


def write_sheet(
    path: Path | str, rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, NearestPair]], *, size: int = 192
) -> Path:
    """PNG with one row per pair: generated | nearest by descriptor | nearest by pixels, distances written on."""
    cells = []
    for gen, by_desc, by_pix, pair in rows:
        g, d, p = (_small(x, size) for x in (gen, by_desc, by_pix))
        cells += [
            _label(g, f"seed {pair.seed}"),
            _label(d, f"id {pair.descriptor_distance:.3f}" if pair.face_like else "id: not a face"),
            _label(p, f"px {pair.pixel_distance:.3f}"),
        ]
    if not cells:
        raise TrainingError("no pairs to put on the sheet")
    return save_png(make_grid(cells, cols=3, pad=4, background=255), path)


def measure_memorization(
    G,
    archive: Path | str,
    seeds: list[int],  # generated faces, one per seed (deterministic: seed -> z as in every latent tool)
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    class_idx: int | None = None,
    threshold: float = SAME_PERSON,  # same-person descriptor distance
    pixel_size: int = 64,  # crops are compared by pixels at this size
    min_face_score: float | None = 0.0,  # a picture must score this (crop_face_score) to count as a face
    sheet: Path | str | None = None,  # write the PNG sheet of the closest pairs here
    sheet_pairs: int = 16,  # rows on the sheet
    training_descriptors: np.ndarray
    | None = None,  # [N, 128] of the archive, if already known (the catalog's)
    network_name: str = "",
    progress: bool = False,
) -> MemorizationReport:
    """Generate a face per seed and report how close each comes to the archive's faces."""
    if not seeds:
        raise TrainingError("no samples to generate: give at least one seed")
    if not threshold > 0:
        raise TrainingError(f"the same-person threshold must be positive, got {threshold}")
    drawing = Drawing(truncation_psi, noise_mode=noise_mode, class_idx=class_idx)  # a bad mode fails here
    members, pool, found = scan_archive(
        archive, pixel_size=pixel_size, descriptors=training_descriptors is None, progress=progress
    )
    training_descriptors = np.asarray(
        found if training_descriptors is None else training_descriptors, np.float32
    )
    if training_descriptors.shape != (len(members), 128):
        raise TrainingError(
            f"expected {len(members)} training descriptors of 128 values, "
            f"got an array of shape {training_descriptors.shape}"
        )

    # One picture at a time (generate_images gives the same picture for a seed alone or in a batch): only its
    # descriptor, face score and small copy are kept; the sheet's few are generated again at the end.
    seeds = [int(s) for s in seeds]
    gen_desc, scores, gen_small = [], [], []
    for s in tqdm(seeds, desc="generating and describing", unit="face", disable=not progress, leave=False):
        img = generate_images(G, [s], drawing)[0]
        gen_desc.append(crop_descriptor(img))
        scores.append(crop_face_score(img))
        gen_small.append(_small(img, pixel_size))
    scores = np.array(scores)
    face_like = scores >= min_face_score if min_face_score is not None else np.ones(len(scores), bool)

    d = distances(np.stack(gen_desc), training_descriptors)
    d_idx = d.argmin(axis=1)
    d_min = d[np.arange(len(d)), d_idx]
    # Mirrors: the distance of a picture to a mirrored training image is that of its own mirror to the image.
    gen_small = np.stack(gen_small)
    p_idx, p_min = _nearest_rms(np.concatenate([gen_small, gen_small[:, :, ::-1]]), pool)
    n = len(seeds)
    mirrored = p_min[n:] < p_min[:n]
    p_idx = np.where(mirrored, p_idx[n:], p_idx[:n])
    p_min = np.where(mirrored, p_min[n:], p_min[:n])

    pairs = [
        NearestPair(
            seed=s,
            descriptor_distance=float(d_min[i]),
            descriptor_member=members[d_idx[i]],
            pixel_distance=float(p_min[i]),
            pixel_member=members[p_idx[i]],
            pixel_mirrored=bool(mirrored[i]),
            face_score=float(scores[i]),
            face_like=bool(face_like[i]),
        )
        for i, s in enumerate(seeds)
    ]
    # Face-like samples first, closest by descriptor first; then the rest by pixels.
    order = sorted(
        range(n),
        key=lambda i: (
            not face_like[i],
            pairs[i].descriptor_distance if face_like[i] else pairs[i].pixel_distance,
        ),
    )

    sheet_path = None
    if sheet is not None and sheet_pairs > 0:
        rows = []
        for i in order[:sheet_pairs]:
            by_pix = read_training_face(archive, int(p_idx[i]))
            rows.append(
                (
                    generate_images(G, [seeds[i]], drawing)[0],
                    read_training_face(archive, int(d_idx[i])),
                    by_pix[:, ::-1] if mirrored[i] else by_pix,
                    pairs[i],
                )
            )
        sheet_path = str(write_sheet(sheet, rows))

    baseline = _nearest_other(training_descriptors) if len(members) > 1 else np.array([])
    return MemorizationReport(
        network=network_name,
        archive=str(archive),
        training_images=len(members),
        samples=len(seeds),
        seeds=seeds,
        truncation_psi=float(truncation_psi),
        threshold=float(threshold),
        pixel_size=int(pixel_size),
        min_face_score=None if min_face_score is None else float(min_face_score),
        fraction_face_like=float(face_like.mean()),
        fraction_same_person=float((face_like & (d_min < threshold)).mean()),
        descriptor_quantiles=quantiles(d_min[face_like]),
        pixel_quantiles=quantiles(p_min),
        training_descriptor_quantiles=quantiles(baseline),
        pairs=[pairs[i] for i in order],
        sheet=sheet_path,
    )


def memorization(
    network: Path | str,  # a snapshot (stem, .json or .safetensors)
    archive: Path | str,
    *,
    samples: int = 64,
    first_seed: int = 0,  # seeds first_seed .. first_seed + samples - 1
    device: str | torch.device = "cpu",
    **kwargs,
) -> MemorizationReport:
    """`measure_memorization` for a snapshot file: what `ghosts memorization --network --archive` runs."""
    if samples < 1:
        raise TrainingError(f"--samples must be at least 1, got {samples}")
    G = load_generator(network, device=device)
    return measure_memorization(
        G, archive, list(range(first_seed, first_seed + samples)), network_name=str(network), **kwargs
    )
