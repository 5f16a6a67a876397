"""Benchmark: face descriptors next to detection, the aligned-crop descriptor's agreement, clustering at scale.

- Cost: `alignment.detect.detect_faces` per photo against `alignment.identity.face_descriptors` per face (from
  the landmarks detection found: what analysis adds per face), `crop_descriptor` per aligned crop (256, 128,
  64 px) and `crop_face_score`.
- Agreement: for every face of the shared photos, the distance between the photo's descriptor and the one of
  its FFHQ-aligned crop, for three ways of finding the face in the crop: a fixed box + the 68-point predictor
  (what `crop_descriptor` does), a fixed landmark template (the mean landmarks in crop coordinates, no
  prediction), and detecting the face again in the crop.
- Clustering: `cluster_people` from scratch on N descriptors, and 200 new faces added to N assigned ones
  (descriptors made from the real ones plus noise, so there are people of several faces each).

    python benchmarks/identity_bench.py [--repeat 3] [--json out.json]

Pinned to one core (OpenCV single-threaded). Times are the minimum of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import dlib

from alignment.align import align_face, ffhq_quad
from alignment.detect import detect_faces
from alignment.identity import (
    CROP_FACE_BOX,
    People,
    cluster_people,
    crop_descriptor,
    crop_face_score,
    face_descriptors,
)
from alignment.models import face_recognizer
from benchmarks.timing import best_time, pin_to_one_core
from curation.catalog.imaging import load_rgb

FACES = REPO.parent / "shared" / "testdata" / "faces"
PHOTOS = sorted(p.name for p in FACES.glob("*.jpg") if p.name != "dogs.jpg")


def crop_frame(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2 x 3 affine from photo pixels to the aligned crop's pixels (the FFHQ quad onto size x size)."""
    q = ffhq_quad(landmarks)
    return cv2.getAffineTransform(
        q[[0, 1, 3]].astype(np.float32), np.array([[0, 0], [0, size], [size, 0]], np.float32)
    )


def shape(points: np.ndarray, box) -> dlib.full_object_detection:
    rect = dlib.rectangle(*(round(v) for v in box[:2]), *(round(v) - 1 for v in box[2:]))
    return dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in points])


def stats(values) -> dict:
    v = np.asarray(values)
    return {
        "median": float(np.median(v)),
        "p90": float(np.quantile(v, 0.9)),
        "max": float(v.max()),
        "n": len(v),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pin_to_one_core()
    out: dict = {"photos": {}}

    # --- cost per photo and per face ---
    faces = []  # (photo rgb, detection, photo descriptor)
    face_descriptors(
        load_rgb(FACES / PHOTOS[0]), detect_faces(load_rgb(FACES / PHOTOS[0]))
    )  # load the models
    det_total = desc_total = 0.0
    for name in PHOTOS:
        rgb = load_rgb(FACES / name)
        t_det, dets = best_time(lambda rgb=rgb: detect_faces(rgb), args.repeat)
        t_desc, vecs = best_time(lambda rgb=rgb, dets=dets: face_descriptors(rgb, dets), args.repeat)
        out["photos"][name] = {
            "megapixels": rgb.shape[0] * rgb.shape[1] / 1e6,
            "faces": len(dets),
            "detect_s": t_det,
            "descriptors_s": t_desc,
        }
        det_total += t_det
        desc_total += t_desc
        faces += [(rgb, d, v) for d, v in zip(dets, vecs)]
        print(
            f"{name}: {len(dets)} faces, detection {t_det * 1e3:.0f} ms, descriptors {t_desc * 1e3:.0f} ms "
            f"({t_desc / max(len(dets), 1) * 1e3:.0f} ms/face)"
        )
    out["detect_per_photo_s"] = det_total / len(PHOTOS)
    out["descriptor_per_face_s"] = desc_total / len(faces)
    rgb0, d0, _ = faces[0]
    out["descriptor_single_face_s"] = best_time(lambda: face_descriptors(rgb0, [d0]), args.repeat)[0]
    print(
        f"per photo: detection {out['detect_per_photo_s'] * 1e3:.0f} ms; per face: descriptor "
        f"{out['descriptor_per_face_s'] * 1e3:.0f} ms (batched per photo), "
        f"{out['descriptor_single_face_s'] * 1e3:.0f} ms alone; {len(faces)} faces"
    )

    # --- the aligned-crop descriptor: cost and agreement ---
    rec = face_recognizer()
    template = np.mean(
        [
            (d.landmarks @ crop_frame(d.landmarks, 1)[:, :2].T + crop_frame(d.landmarks, 1)[:, 2])
            for _, d, _ in faces
        ],
        axis=0,
    )
    out["crops"] = {}
    for size in (256, 128, 64):
        crops = [align_face(rgb, ffhq_quad(d.landmarks), size) for rgb, d, _ in faces]
        t_crop = min(best_time(lambda c=c: crop_descriptor(c), args.repeat)[0] for c in crops[:5])
        t_score = min(best_time(lambda c=c: crop_face_score(c), args.repeat)[0] for c in crops[:5])
        box = [v * size for v in CROP_FACE_BOX]
        fixed, tmpl, again, missed = [], [], [], 0
        for c, (_, _, v) in zip(crops, faces):
            fixed.append(np.linalg.norm(crop_descriptor(c) - v))
            tmpl.append(
                np.linalg.norm(np.array(rec.compute_face_descriptor(c, shape(template * size, box))) - v)
            )
            found = detect_faces(c)
            if not found:
                missed += 1
                continue
            f = max(found, key=lambda f: f.box[2] - f.box[0])
            again.append(np.linalg.norm(face_descriptors(c, [f])[0] - v))
        out["crops"][size] = {
            "crop_descriptor_s": t_crop,
            "crop_face_score_s": t_score,
            "fixed_box": stats(fixed),
            "template": stats(tmpl),
            "detect_again": stats(again),
            "detect_again_missed": missed,
        }
        r = out["crops"][size]
        print(
            f"{size} px crops: crop_descriptor {t_crop * 1e3:.0f} ms, face score {t_score * 1e3:.1f} ms; "
            f"distance to the photo's descriptor, median/p90/max: fixed box "
            f"{r['fixed_box']['median']:.3f}/{r['fixed_box']['p90']:.3f}/{r['fixed_box']['max']:.3f}, template "
            f"{r['template']['median']:.3f}/{r['template']['p90']:.3f}/{r['template']['max']:.3f}, detect again "
            f"{r['detect_again']['median']:.3f}/{r['detect_again']['p90']:.3f}/{r['detect_again']['max']:.3f} "
            f"({missed} missed)"
        )

    # --- clustering at scale ---
    base = np.stack([v for _, _, v in faces])
    rng = np.random.default_rng(0)
    out["clustering"] = {}
    for n in (1000, 5000, 10000):
        # people of ~10 faces each: a real descriptor, turned by noise of the size seen between one person's photos
        people_centres = base[rng.integers(len(base), size=n // 10)] + rng.normal(0, 0.03, (n // 10, 128))
        pick = rng.integers(len(people_centres), size=n + 200)
        vectors = people_centres[pick] + rng.normal(0, 0.025, (n + 200, 128))
        descriptors = {i: v.astype(np.float32) for i, v in enumerate(vectors[:n])}
        t_full, people = best_time(lambda d=descriptors: cluster_people(d), 1)
        more = descriptors | {n + i: v.astype(np.float32) for i, v in enumerate(vectors[n:])}
        t_inc, later = best_time(lambda d=more, p=people: cluster_people(d, p), args.repeat)
        assert isinstance(later, People)
        out["clustering"][n] = {"from_scratch_s": t_full, "add_200_s": t_inc, "people": people.count}
        print(
            f"clustering {n} faces from scratch: {t_full:.2f} s ({people.count} people); "
            f"200 new faces onto them: {t_inc:.2f} s"
        )

    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
