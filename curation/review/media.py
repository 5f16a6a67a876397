"""Pictures for the review page, found by catalog id only: a client never names a file.

Previews are served as the files the analysis wrote (after checking they lie inside the workspace's previews
folder). Photos are decoded the one pipeline way (`load_rgb`: EXIF-upright RGB, whatever the stored format) and
re-encoded as a JPEG of bounded size, so box and landmark coordinates, which are in decoded pixels, line up.
"""

from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from pathlib import Path

from markupsafe import Markup
from PIL import Image as PILImage
from sqlalchemy import select

from curation.catalog.imaging import ImageRejected, load_rgb
from curation.catalog.schema import Face, Image

PHOTO_MAX_SIDE = 1600  # detail view: sharp on a laptop screen, a few hundred kB
THUMB_MAX_SIDE = 256  # photo tiles (the photos-without-faces view, near-duplicate strips)
JPEG_QUALITY = 88


class NotFound(LookupError):
    """Nothing servable for this id (unknown, refused at ingest, file gone or outside the workspace)."""


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _servable(ws, rel: str | None, folder: Path, no_file: str, missing: str) -> Path:
    """The workspace file `rel` names, when it is a regular file inside `folder`; NotFound(no_file) when there
    is no name, NotFound(missing) when the file is gone or lies outside `folder`."""
    if not rel:
        raise NotFound(no_file)
    path = ws.abspath(rel)
    if not _inside(path, folder) or not path.is_file():
        raise NotFound(missing)
    return path


def preview_file(ws, face_id: int) -> Path:
    """The preview file of a face, which must be a regular file inside the previews folder."""
    with ws.session() as s:
        face = s.get(Face, face_id)
        rel = face.preview_path if face is not None and face.image.status != "excluded" else None
    return _servable(
        ws, rel, ws.previews_dir, f"face {face_id} has no preview", f"preview of face {face_id} is missing"
    )


def preview_data_uris(ws, face_ids: list[int], max_bytes: int = 64_000) -> dict[int, Markup]:
    """Previews as data: URIs, to go inside the page itself (the first row paints with the page, no request
    after it): one query for all, then the same file checks as the preview route; faces without a servable
    preview, or with one over `max_bytes`, are left out (their tiles load the route as usual)."""
    with ws.session() as s:
        rows = s.execute(
            select(Face.id, Face.preview_path)
            .join(Image, Face.image_id == Image.id)
            .where(Face.id.in_(face_ids), Image.status != "excluded")
        ).all()
    out: dict[int, Markup] = {}
    for face_id, rel in rows:
        try:
            path = _servable(ws, rel, ws.previews_dir, "", "")
            data = path.read_bytes()
        except (NotFound, OSError):
            continue
        if len(data) <= max_bytes:
            media = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
            # base64 and a fixed prefix: nothing to escape, and escaping 100 kB per page is not free.
            out[face_id] = Markup(f"data:{media};base64,{base64.b64encode(data).decode('ascii')}")
    return out


class PhotoCache:
    """Recently rendered photo JPEGs, keyed by (image id, size); small, in memory, thread-safe."""

    def __init__(self, capacity: int = 64):  # ~64 x 300 kB: a reviewer flipping back and forth
        self.capacity = capacity
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ws, image_id: int, max_side: int) -> bytes:
        key = (image_id, max_side)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        data = render_photo(ws, image_id, max_side)
        with self._lock:
            self._items[key] = data
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return data


def photo_file(ws, image_id: int) -> Path:
    """The stored photo of an image, which must be a regular file inside the store (every route that reads a
    photo goes through here: the photo route and both manual-crop routes)."""
    with ws.session() as s:
        img = s.get(Image, image_id)
        rel = img.path if img is not None and img.status != "excluded" else None
    return _servable(
        ws,
        rel,
        ws.images_dir,
        f"image {image_id} is not in the store (or was taken down)",
        f"file of image {image_id} is missing",
    )


def render_photo(ws, image_id: int, max_side: int = PHOTO_MAX_SIDE) -> bytes:
    path = photo_file(ws, image_id)
    try:
        rgb = load_rgb(path, ws.settings.max_pixels)
    except ImageRejected as e:
        raise NotFound(f"image {image_id} cannot be decoded: {e.reason}") from None
    im = PILImage.fromarray(rgb)
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), PILImage.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()
