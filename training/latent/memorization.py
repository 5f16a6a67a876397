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
from training.latent.generate import generate_images
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
    fraction_same_person: float  # samples that look like a face and are closer than `threshold` to a training one
    descriptor_quantiles: dict[str, float | None]  # nearest training distance of the face-like samples
    pixel_quantiles: dict[str, float | None]  # nearest training RMS of every sample
    training_descriptor_quantiles: dict[str, float | None]  # each training face to its nearest other one (yardstick)
    pairs: list[NearestPair] = field(default_factory=list)  # one per sample: face-like ones closest first, then the rest
    sheet: str | None = None  # PNG of the closest pairs: generated | nearest by descriptor | nearest by pixels

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

        return (f"{self.samples} generated faces against {self.training_images} training faces: "
                f"{self.fraction_face_like:.1%} look like faces, {self.fraction_same_person:.1%} closer than "
                f"{self.threshold:g} to a training face (descriptor distance median {f(q['p50'])}, min {f(q['p0'])}; "
                f"training faces to each other: median {f(t['p50'])}); "
                f"pixel RMS median {f(p['p50'])}, min {f(p['p0'])}")


def quantiles(values) -> dict[str, float | None]:
    """p0 (min), p5, p25, p50 (median), p75, p95, p100 (max); None for each when there are no values."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {f"p{round(q * 100)}": None for q in QUANTILES}
    return {f"p{round(q * 100)}": float(np.quantile(v, q)) for q in QUANTILES}


def _small(img: np.ndarray, size: int) -> np.ndarray:
    """An HxWxC uint8 crop -> size x size x 3 float32 in [0, 1]."""
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.shape[0] != size:
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
        img = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp)
    return img.astype(np.float32) / 255.0


def _nearest_rms(queries: np.ndarray, pool: np.ndarray, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Index and RMS distance of each query's nearest pool image (flattened float arrays)."""
    qn, pn = (queries**2).sum(1), (pool**2).sum(1)
    idx, dist = np.empty(len(queries), np.int64), np.empty(len(queries))
    for s in range(0, len(queries), block):
        d2 = qn[s:s + block, None] + pn[None, :] - 2.0 * queries[s:s + block] @ pool.T
        i = d2.argmin(axis=1)
        idx[s:s + block] = i
        dist[s:s + block] = np.sqrt(np.maximum(d2[np.arange(len(i)), i], 0.0) / queries.shape[1])
    return idx, dist


def _nearest_other(vectors: np.ndarray, block: int = 1024) -> np.ndarray:
    """Each descriptor's distance to its nearest other one."""
    out = np.empty(len(vectors))
    for s in range(0, len(vectors), block):
        d = distances(vectors[s:s + block], vectors)
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        out[s:s + block] = d.min(axis=1)
    return out


def read_training_faces(archive: Path | str, *, limit: int | None = None) -> tuple[list[str], list[np.ndarray]]:
    """Member names and HxWxC uint8 images of a dataset archive (the one archive reader)."""
    data = ImageArchive(Path(archive), max_size=limit)
    try:
        return list(data.members), [data.read_image(i).transpose(1, 2, 0) for i in range(len(data.members))]
    finally:
        data.close()


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img.copy())
    scale = out.shape[0] / 256
    cv2.rectangle(out, (0, 0), (out.shape[1], round(22 * scale) + 4), (0, 0, 0), -1)
    cv2.putText(out, text, (3, round(18 * scale) + 1), cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255),
                max(1, round(1.5 * scale)), cv2.LINE_AA)
    return out


def write_sheet(path: Path | str, rows: list[tuple[np.ndarray, np.ndarray, np.ndarray, NearestPair]], *,
                size: int = 192) -> Path:
    """PNG with one row per pair: generated | nearest by descriptor | nearest by pixels, distances written on."""
    cells = []
    for gen, by_desc, by_pix, pair in rows:
        g, d, p = (_small(x, size) for x in (gen, by_desc, by_pix))
        cells += [_label((g * 255).round().astype(np.uint8), f"seed {pair.seed}"),
                  _label((d * 255).round().astype(np.uint8),
                         f"id {pair.descriptor_distance:.3f}" if pair.face_like else "id: not a face"),
                  _label((p * 255).round().astype(np.uint8), f"px {pair.pixel_distance:.3f}")]
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
    training_descriptors: np.ndarray | None = None,  # [N, 128] of the archive, if already known (the catalog's)
    network_name: str = "",
    progress: bool = False,
) -> MemorizationReport:
    """Generate a face per seed and report how close each comes to the archive's faces."""
    if not seeds:
        raise TrainingError("no samples to generate: give at least one seed")
    if not threshold > 0:
        raise TrainingError(f"the same-person threshold must be positive, got {threshold}")
    members, real = read_training_faces(archive)
    if training_descriptors is None:
        training_descriptors = np.stack([crop_descriptor(im) for im in tqdm(
            real, desc="describing training faces", unit="face", disable=not progress, leave=False)])
    training_descriptors = np.asarray(training_descriptors, dtype=np.float32)
    if training_descriptors.shape != (len(real), 128):
        raise TrainingError(f"expected {len(real)} training descriptors of 128 values, got {training_descriptors.shape}")

    generated = generate_images(G, list(seeds), truncation_psi, noise_mode, class_idx=class_idx, progress=progress)
    gen_desc = np.stack([crop_descriptor(im) for im in tqdm(
        generated, desc="describing generated faces", unit="face", disable=not progress, leave=False)])

    d = distances(gen_desc, training_descriptors)
    d_idx = d.argmin(axis=1)
    d_min = d[np.arange(len(d)), d_idx]

    pool = np.stack([_small(im, pixel_size) for im in real])
    pool = np.concatenate([pool, pool[:, :, ::-1]]).reshape(2 * len(real), -1)
    queries = np.stack([_small(im, pixel_size) for im in generated]).reshape(len(generated), -1)
    p_idx, p_min = _nearest_rms(queries, pool)

    scores = np.array([crop_face_score(im) for im in generated])
    face_like = scores >= min_face_score if min_face_score is not None else np.ones(len(scores), bool)

    pairs = [NearestPair(seed=int(s), descriptor_distance=float(d_min[i]), descriptor_member=members[d_idx[i]],
                         pixel_distance=float(p_min[i]), pixel_member=members[p_idx[i] % len(real)],
                         pixel_mirrored=bool(p_idx[i] >= len(real)), face_score=float(scores[i]),
                         face_like=bool(face_like[i])) for i, s in enumerate(seeds)]
    # Face-like samples first, closest by descriptor first; then the rest by pixels.
    order = sorted(range(len(pairs)), key=lambda i: (not face_like[i], pairs[i].descriptor_distance
                                                     if face_like[i] else pairs[i].pixel_distance))

    sheet_path = None
    if sheet is not None and sheet_pairs > 0:
        rows = []
        for i in order[:sheet_pairs]:
            by_pix = real[p_idx[i] % len(real)]
            rows.append((generated[i], real[d_idx[i]], by_pix[:, ::-1] if pairs[i].pixel_mirrored else by_pix,
                         pairs[i]))
        sheet_path = str(write_sheet(sheet, rows))

    baseline = _nearest_other(training_descriptors) if len(real) > 1 else np.array([])
    return MemorizationReport(
        network=network_name, archive=str(archive), training_images=len(real), samples=len(seeds),
        seeds=[int(s) for s in seeds], truncation_psi=float(truncation_psi), threshold=float(threshold),
        pixel_size=int(pixel_size), min_face_score=None if min_face_score is None else float(min_face_score),
        fraction_face_like=float(face_like.mean()), fraction_same_person=float((face_like & (d_min < threshold)).mean()),
        descriptor_quantiles=quantiles(d_min[face_like]), pixel_quantiles=quantiles(p_min),
        training_descriptor_quantiles=quantiles(baseline), pairs=[pairs[i] for i in order], sheet=sheet_path)


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
    return measure_memorization(G, archive, list(range(first_seed, first_seed + samples)),
                                network_name=str(network), **kwargs)
