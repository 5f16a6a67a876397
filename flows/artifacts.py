"""Pictures and tables for Prefect artifacts: what the Prefect UI shows beside each flow run."""

from __future__ import annotations

import base64
import io
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from curation.catalog.errors import GhostsError
from curation.catalog.imaging import load_rgb

# An image artifact is a URL the UI puts in an <img>. A data: URL needs no file server and no shared disk,
# so the picture shows on any machine that can open the Prefect UI; JPEG keeps it small.
MAX_DATA_URI_BYTES = 400_000


def artifact_key(*parts: object) -> str:
    """A valid artifact key (lowercase letters, digits and dashes) from free-form parts."""
    key = re.sub(r"[^a-z0-9]+", "-", "-".join(str(p) for p in parts).lower()).strip("-")
    return key or "ghosts"


def data_uri(image: np.ndarray | Path, max_side: int = 1024, quality: int = 85) -> str:
    """The picture as a `data:image/jpeg;base64,...` URL, shrunk to `max_side` px and under the size cap."""
    rgb = load_rgb(image) if isinstance(image, Path) else np.asarray(image)
    im = PILImage.fromarray(rgb.astype(np.uint8)).convert("RGB")
    im.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    while True:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality, optimize=True)
        if buf.tell() <= MAX_DATA_URI_BYTES * 3 // 4 or min(im.size) <= 64:
            break
        im = im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)), PILImage.Resampling.LANCZOS)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def contact_sheet(paths: Iterable[Path], tile: int = 96, cols: int = 8, pad: int = 2) -> np.ndarray | None:
    """Thumbnails in a grid on a dark background (None when there is nothing to show)."""
    thumbs = []
    for p in paths:
        try:
            im = PILImage.fromarray(load_rgb(p))
        except (GhostsError, OSError):  # a missing or broken preview must not fail the run's report
            continue
        im.thumbnail((tile, tile), PILImage.Resampling.LANCZOS)
        thumbs.append(im)
    if not thumbs:
        return None
    cols = min(cols, len(thumbs))
    rows = -(-len(thumbs) // cols)
    sheet = PILImage.new("RGB", (cols * (tile + pad) + pad, rows * (tile + pad) + pad), (24, 24, 24))
    for i, im in enumerate(thumbs):
        r, c = divmod(i, cols)
        x = pad + c * (tile + pad) + (tile - im.width) // 2
        y = pad + r * (tile + pad) + (tile - im.height) // 2
        sheet.paste(im, (x, y))
    return np.asarray(sheet)


def markdown_table(rows: list[tuple[str, object]], header: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | ---: |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)
