"""Benchmark: FFHQ alignment against the plain recipe, and face detection per photo and per megapixel.

Alignment: per face, `alignment.align.align_face` and the plain recipe (tests/alignment/recipe.py: full-image
padding blur, quad transform at 4x the output size, Lanczos down) on the same landmarks, at 1024 px (and
256), with the PSNR between them. Cases: a padded portrait, a collage face inside the photo and one at its
edge, a small PASCAL face (a large upscale), and the worst case for the recipe's padding blur: a padded face
whose quad is just under 4x the output size. For the worst case each side runs in a fresh child process:
its peak resident set size (imports and the 41 MB photo included) and the peak of the call's own traced
allocations (tracemalloc: numpy and OpenCV arrays, not Pillow's internal buffers).

Detection: `alignment.detect.detect_faces` (scale chosen from the photo size, grey, landmarks at full
resolution, rotated retries when nothing is found) against dlib's HOG detector with one upsample on the full
photo (no landmarks): recall on the 43 hand-checked PASCAL boxes, and seconds per photo at 0.2 to 12 MP.

    python benchmarks/align_bench.py [--repeat 3] [--no-worst-recipe] [--json out.json]

Everything runs pinned to one core (OpenCV single-threaded). Times are the minimum of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import time
import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alignment.align import align_face, ffhq_quad, quad_side, recipe_geometry
from alignment.detect import detect_faces
from alignment.models import face_detector
from alignment.quality import padding_fraction
from benchmarks.timing import best_time, pin_to_one_core
from curation.catalog.imaging import load_rgb
from tests.alignment.recipe import psnr, recipe_align

FACES = REPO.parent / "shared" / "testdata" / "faces"


# --- alignment ---------------------------------------------------------------------------------------------------


def alignment_cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, photo, landmarks) for each case."""
    cruise = load_rgb(FACES / "Tom_Cruise_avp_2014_4.jpg")
    bald = load_rgb(FACES / "bald_guys.jpg")
    pascal = load_rgb(FACES / "2008_002506.jpg")
    (c,) = detect_faces(cruise)
    inside = edge = None
    for f in detect_faces(bald):
        q = ffhq_quad(f.landmarks)
        if (
            inside is None
            and recipe_geometry(bald.shape[1], bald.shape[0], q, 1024).pad is None
            and quad_side(q) > 250
        ):
            inside = f.landmarks
        if edge is None and padding_fraction(q, bald.shape[1], bald.shape[0]) > 0.02:
            edge = f.landmarks
    small = detect_faces(pascal)[0].landmarks
    return [
        ("portrait 565x800, padded", cruise, c.landmarks),
        ("collage face inside the photo", bald, inside),
        ("collage face at the edge, padded", bald, edge),
        ("PASCAL face, 7x upscale", pascal, small),
    ]


def worst_case(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The portrait enlarged 5.5x: padded, quad ~3900 px, just under 4x 1024 (the recipe does not shrink)."""
    cruise = load_rgb(FACES / "Tom_Cruise_avp_2014_4.jpg")
    big = cv2.resize(cruise, None, fx=5.5, fy=5.5, interpolation=cv2.INTER_LINEAR)
    return big, ffhq_quad((landmarks + 0.5) * 5.5 - 0.5)


def _child_align(which: str, size: int, landmarks: np.ndarray, queue) -> None:
    # A fresh process, so that its peak resident size is this one call's (plus the photo, counted in base).
    pin_to_one_core()
    big, quad = worst_case(landmarks)
    fn = align_face if which == "ours" else recipe_align
    t = time.perf_counter()
    out = fn(big, quad, size)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Python-side allocations of the call alone (numpy arrays, OpenCV outputs; not Pillow's own buffers).
    tracemalloc.start()
    fn(big, quad, size)
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.save(Path(os.environ["ALIGN_BENCH_TMP"]) / f"{which}.npy", out)
    queue.put({"seconds": seconds, "peak_mb": peak / 1024, "traced_mb": traced / 1e6})


def run_worst(which: str, size: int, landmarks: np.ndarray, tmp: Path) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    os.environ["ALIGN_BENCH_TMP"] = str(tmp)
    p = ctx.Process(target=_child_align, args=(which, size, landmarks, queue))
    p.start()
    result = queue.get()
    p.join()
    return result


def bench_alignment(repeat: int, worst_recipe: bool) -> list[dict]:
    import tempfile

    rows = []
    cases = alignment_cases()
    for label, rgb, lm in cases:
        quad = ffhq_quad(lm)
        for size in (1024, 256):
            ours_s, ours = best_time(
                lambda rgb=rgb, quad=quad, size=size: align_face(rgb, quad, size), repeat
            )
            ref_s, ref = best_time(
                lambda rgb=rgb, quad=quad, size=size: recipe_align(rgb, quad, size), max(1, repeat - 1)
            )
            rows.append(
                {
                    "case": label,
                    "size": size,
                    "quad_px": round(quad_side(quad)),
                    "ours_ms": ours_s * 1e3,
                    "recipe_ms": ref_s * 1e3,
                    "speedup": ref_s / ours_s,
                    "psnr_db": psnr(ours, ref),
                }
            )
            print(
                f"  {label:36s} {size:5d}  ours {ours_s * 1e3:7.1f} ms  recipe {ref_s * 1e3:8.1f} ms  "
                f"x{ref_s / ours_s:5.1f}  {rows[-1]['psnr_db']:.1f} dB",
                flush=True,
            )
    with tempfile.TemporaryDirectory() as tmp:
        cruise_landmarks = cases[0][2]
        ours = run_worst("ours", 1024, cruise_landmarks, Path(tmp))
        row = {
            "case": "worst case: padded, quad 3917 px (5.5x portrait)",
            "size": 1024,
            "quad_px": 3917,
            "ours_ms": ours["seconds"] * 1e3,
            "ours_peak_rss_mb": ours["peak_mb"],
            "ours_traced_mb": ours["traced_mb"],
        }
        if worst_recipe:
            ref = run_worst("recipe", 1024, cruise_landmarks, Path(tmp))
            row |= {
                "recipe_ms": ref["seconds"] * 1e3,
                "recipe_peak_rss_mb": ref["peak_mb"],
                "recipe_traced_mb": ref["traced_mb"],
                "speedup": ref["seconds"] / ours["seconds"],
                "psnr_db": psnr(np.load(Path(tmp) / "ours.npy"), np.load(Path(tmp) / "recipe.npy")),
            }
        rows.append(row)
        print(
            f"  worst case: ours {ours['seconds']:.2f} s, peak RSS {ours['peak_mb']:.0f} MB, traced "
            f"{ours['traced_mb']:.0f} MB"
            + (
                f"; recipe {row['recipe_ms'] / 1e3:.1f} s, peak RSS "
                f"{row['recipe_peak_rss_mb']:.0f} MB, traced {row['recipe_traced_mb']:.0f} MB, "
                f"{row['psnr_db']:.1f} dB"
                if worst_recipe
                else ""
            ),
            flush=True,
        )
    return rows


# --- detection ---------------------------------------------------------------------------------------------------


def truth_boxes() -> dict[str, list[list[float]]]:
    out: dict[str, list[list[float]]] = {}
    for xml in ("training.xml", "testing.xml"):
        for image in ET.parse(FACES / xml).getroot().iter("image"):
            for b in image.iter("box"):
                x0, y0 = float(b.get("left")), float(b.get("top"))
                out.setdefault(image.get("file"), []).append(
                    [x0, y0, x0 + float(b.get("width")), y0 + float(b.get("height"))]
                )
    return out


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def baseline(rgb: np.ndarray) -> list[list[float]]:
    """dlib's HOG detector with one upsample on the full photo (what align_images.py does), no landmarks."""
    return [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in face_detector("hog")(rgb, 1)]


def bench_detection(repeat: int) -> dict:
    truth = truth_boxes()
    photos = {name: load_rgb(FACES / name) for name in truth}
    detect_faces(photos[next(iter(photos))])  # load the models outside the timings
    result: dict = {"recall": {}, "per_photo": []}
    for label, fn in (("ours", lambda im: [d.box for d in detect_faces(im)]), ("hog_up1", baseline)):
        found = {n: fn(im) for n, im in photos.items()}
        hits = sum(any(iou(t, b) >= 0.4 for b in found[n]) for n, ts in truth.items() for t in ts)
        extra = sum(not any(iou(t, b) >= 0.4 for t in truth[n]) for n, bs in found.items() for b in bs)
        result["recall"][label] = {"found": hits, "of": sum(map(len, truth.values())), "false_alarms": extra}
        print(f"  recall {label:8s} {hits}/{sum(map(len, truth.values()))}, false alarms {extra}", flush=True)

    cruise = load_rgb(FACES / "Tom_Cruise_avp_2014_4.jpg")
    bald = load_rgb(FACES / "bald_guys.jpg")
    dogs = load_rgb(FACES / "dogs.jpg")
    sets = [
        ("PASCAL photos (9, 0.17-0.19 MP, 1-7 small faces)", list(photos.values())),
        ("portrait, 0.45 MP", [cruise]),
        ("portrait enlarged to 1.8 MP", [cv2.resize(cruise, None, fx=2, fy=2)]),
        ("collage, 3.1 MP, 24 faces", [bald]),
        ("portrait enlarged to 4 MP", [cv2.resize(cruise, None, fx=3, fy=3)]),
        ("portrait enlarged to 12 MP", [cv2.resize(cruise, None, fx=5.2, fy=5.2)]),
        ("dogs, 0.82 MP, no face (rotated retries run)", [dogs]),
        ("dogs enlarged to 3.3 MP, no face", [cv2.resize(dogs, None, fx=2, fy=2)]),
    ]
    for label, ims in sets:
        mp = sum(im.shape[0] * im.shape[1] for im in ims) / 1e6
        ours_s, faces = best_time(lambda ims=ims: sum(len(detect_faces(im)) for im in ims), repeat)
        base_s, base_faces = best_time(
            lambda ims=ims: sum(len(baseline(im)) for im in ims), max(1, repeat - 1)
        )
        row = {
            "photos": label,
            "megapixels": mp / len(ims),
            "faces": faces,
            "baseline_faces": base_faces,
            "ours_s_per_photo": ours_s / len(ims),
            "ours_s_per_mp": ours_s / mp,
            "baseline_s_per_photo": base_s / len(ims),
            "baseline_s_per_mp": base_s / mp,
        }
        result["per_photo"].append(row)
        print(
            f"  {label:48s} ours {row['ours_s_per_photo']:.3f} s/photo ({faces} faces)  "
            f"HOG+1 {row['baseline_s_per_photo']:.3f} s/photo ({base_faces} faces)",
            flush=True,
        )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (the minimum is kept)")
    ap.add_argument(
        "--no-worst-recipe",
        action="store_true",
        help="skip the recipe on the worst case (about a minute and 2 GB)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    if not (FACES / "Tom_Cruise_avp_2014_4.jpg").exists():
        sys.exit(
            f"test photos missing: expected ../shared/testdata/faces beside the repo (looked in {FACES})"
        )
    pin_to_one_core()
    print("alignment (one core):", flush=True)
    align_rows = bench_alignment(args.repeat, not args.no_worst_recipe)
    print("detection (one core):", flush=True)
    det = bench_detection(args.repeat)
    if args.json:
        args.json.write_text(json.dumps({"alignment": align_rows, "detection": det}, indent=2))


if __name__ == "__main__":
    main()
