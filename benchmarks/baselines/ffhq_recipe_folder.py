"""The plain FFHQ alignment of a folder, the way the well-known `align_images.py` does it (written from its
documented behaviour): the anchor `ghosts align` is measured against.

For each photo: open with Pillow, RGB; dlib's HOG frontal face detector with one upsample on the full photo;
dlib's 68-point predictor on each box; the FFHQ recipe (tests/alignment/recipe.py: shrink, crop, reflect-pad
with blur and fade, quad transform at 4x, Lanczos down); save `<stem>_01.png`, ... with Pillow.

    python benchmarks/baselines/ffhq_recipe_folder.py SOURCE_FOLDER OUT_FOLDER SIZE

The last line printed is `in-process seconds: S`: the time of the loop alone (imports and model loading
excluded), the figure the benchmark calls "the recipe run in-process".
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import dlib
import numpy as np
from PIL import Image

from tests.alignment.recipe import recipe_align, recipe_quad

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def main(source: Path, out: Path, size: int) -> None:
    models = Path(next(iter(importlib.util.find_spec("face_recognition_models").submodule_search_locations)))
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(models / "models" / "shape_predictor_68_face_landmarks.dat"))
    out.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    written = 0
    for f in sorted(p for p in source.iterdir() if p.suffix.lower() in SUFFIXES):
        try:
            rgb = np.asarray(Image.open(f).convert("RGB"))
        except OSError:
            continue
        for k, rect in enumerate(detector(rgb, 1), start=1):
            shape = predictor(rgb, rect)
            landmarks = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
            quad, _ = recipe_quad(landmarks)
            Image.fromarray(recipe_align(rgb, quad, size)).save(out / f"{f.stem}_{k:02d}.png")
            written += 1
    print(f"{written} faces written to {out}")
    print(f"in-process seconds: {time.perf_counter() - t:.3f}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: ffhq_recipe_folder.py SOURCE_FOLDER OUT_FOLDER SIZE")
    main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]))
