"""A packer that behaves like StyleGAN2-ADA's `dataset_tool.py` on a folder of images (written from its
documented behaviour, no code taken from it): the anchor `ghosts pack` is measured against.

One process, one pass: for each image file of the folder (sorted), open it with Pillow, convert it to RGB,
re-encode it as PNG with zlib compression level 0, and write it into an uncompressed (stored) zip under
`00000/img00000000.png`, ...; then write `dataset.json` with `{"labels": null}`.

    python benchmarks/baselines/dataset_tool_like.py SOURCE_FOLDER DEST.zip
"""

from __future__ import annotations

import io
import json
import sys
import zipfile
from pathlib import Path

from PIL import Image

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def pack(source: Path, dest: Path) -> int:
    files = sorted(p for p in Path(source).rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as z:
        for i, f in enumerate(files):
            img = Image.open(f).convert("RGB")
            buf = io.BytesIO()
            img.save(buf, format="png", compress_level=0, optimize=False)
            z.writestr(f"{i // 1000:05d}/img{i:08d}.png", buf.getvalue())
        z.writestr("dataset.json", json.dumps({"labels": None}))
    return len(files)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: dataset_tool_like.py SOURCE_FOLDER DEST.zip")
    n = pack(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"{n} images packed into {sys.argv[2]}")
