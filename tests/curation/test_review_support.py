"""Helpers shared by the review tests (no tests in here): real workspaces with candidate faces.

The photos go through the real ingest path; the face rows and their 256-px preview files are written the way
the analysis writes them, so the review app is exercised on a real catalog without running dlib.
"""

from __future__ import annotations

import datetime as dt
import io
import threading
import time

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import insert

from curation.catalog.schema import Face, Image, NearDuplicate
from curation.sources.ingest import ingest_bytes

TAGS = ("portrait", "selfie", "streetphoto")


def photo_bytes(seed: int, w: int = 320, h: int = 240) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, np.full((h, w), rng.integers(0, 255))], -1)
    base = base + rng.normal(0, 20, base.shape)
    buf = io.BytesIO()
    PILImage.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def preview_image(seed: int, size: int = 64) -> PILImage.Image:
    rng = np.random.default_rng(seed)
    colour = rng.integers(40, 255, 3)
    a = np.zeros((size, size, 3), np.uint8) + colour.astype(np.uint8)
    a[size // 3 : size // 3 + 4, size // 4 : 3 * size // 4] = 0  # "eyes"
    return PILImage.fromarray(a)


def landmarks_in(box: list[float]) -> list[list[float]]:
    """68 points spread over a face box (enough for drawing; not a real face)."""
    x0, y0, x1, y1 = box
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2.4, (y1 - y0) / 2.4
    return [[float(cx + rx * np.cos(a)), float(cy + ry * np.sin(a))] for a in t]


def add_face(
    ws,
    image_id: int,
    *,
    index: int = 0,
    score: float = 0.5,
    seed: int = 0,
    box=None,
    flagged=False,
    upscaled=False,
    padding: float = 0.0,
    yaw: float = 0.0,
    blur: float = 120.0,
    preview: bool = True,
    **extra,
) -> int:
    box = box or [40.0 + 10 * index, 30.0, 140.0 + 10 * index, 150.0]
    x0, y0, x1, y1 = box
    with ws.session() as s:
        face = Face(
            image_id=image_id,
            index=index,
            detector="hog",
            det_score=1.0,
            box=box,
            landmarks=landmarks_in(box),
            # Measures that agree with the flags asked for: an upscaled face's crop is smaller than the target.
            quad=[[x0, y0], [x0, y1], [x1, y1], [x1, y0]],
            eye_dist=(x1 - x0) / 3,
            quad_size=(x1 - x0) if upscaled else 2048.0,
            padding=padding,
            blur=blur,
            roll=0.0,
            yaw=yaw,
            upscaled=upscaled,
            flagged=flagged,
            score=score,
            quality={"score": score, "sharpness": 0.8},
            **extra,
        )
        s.add(face)
        s.flush()
        fid = face.id
        if preview:
            rel = f"previews/test/{fid}.png"
            path = ws.abspath(rel)
            path.parent.mkdir(parents=True, exist_ok=True)
            preview_image(seed + fid).save(path)
            face.preview_path = rel
    return fid


def insert_faces(session, image_ids: list[int], n: int, **fields) -> None:
    """`n` detected faces in one bulk insert, spread over `image_ids`, with graded scores; each of `fields` is
    a value, or a function of the face's number giving its value."""
    session.execute(
        insert(Face),
        [
            {
                "image_id": image_ids[i % len(image_ids)],
                "index": i + len(image_ids),
                "detector": "hog",
                "score": (i * 7919 % 1000) / 1000,
                "deleted": False,
                "manual": False,
                "upscaled": False,
                **{k: v(i) if callable(v) else v for k, v in fields.items()},
            }
            for i in range(n)
        ],
    )


def fast_get(client, path: str, limit: float = 1.0):
    """GET `path` (after a warm-up request): answered 200 within `limit` seconds; the response."""
    t0 = time.perf_counter()
    r = client.get(path)
    elapsed = time.perf_counter() - t0
    assert r.status_code == 200, path
    assert elapsed < limit, f"{path} took {elapsed:.2f} s"
    print(f"{path}: {1000 * elapsed:.0f} ms")
    return r


def race(fn, args) -> None:
    """fn(arg) for each of `args`, each in a thread of its own, all at once; back when every one is done."""
    threads = [threading.Thread(target=fn, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def hammer(open_client, faces: list[int], decisions, headers: dict, times: int = 30) -> list[str]:
    """Every one of `decisions` posted `times` times, each from a thread of its own and all at once, over
    `faces` in turn; `open_client()` gives each thread its client (a context manager). The bodies of the
    answers that were not 200."""
    errors = []

    def one(decision: str) -> None:
        with open_client() as c:
            for k in range(times):
                r = c.post(
                    "/api/decisions",
                    json={"face_ids": [faces[k % len(faces)]], "decision": decision},
                    headers=headers,
                )
                if r.status_code != 200:
                    errors.append(r.text)

    race(one, decisions)
    return errors


def make_catalog(ws, photos: int = 6, faces_per_photo: int = 2) -> dict[str, list[int]]:
    """Photos from three hashtags with likes, owners and captions; faces with graded scores."""
    image_ids, face_ids = [], []
    for i in range(photos):
        tag = TAGS[i % len(TAGS)]
        r = ingest_bytes(
            ws,
            photo_bytes(i),
            name=f"post{i}.png",
            source_kind="instagram",
            source_ref=f"https://www.instagram.com/p/SC{i}/",
            query=tag,
            owner=f"user{i}",
            shortcode=f"SC{i}",
            post_url=f"https://www.instagram.com/p/SC{i}/",
            likes=10 * i,
            taken_at=dt.datetime(2024, 1, 1 + i, tzinfo=dt.UTC),
            provenance={"caption": f"photo {i} #{tag} <b>bold</b>", "caption_hashtags": [tag, "friends"]},
        )
        assert r.status == "added", r
        image_ids.append(r.image_id)
        with ws.session() as s:
            s.get(Image, r.image_id).status = "analyzed"
        for k in range(faces_per_photo):
            face_ids.append(
                add_face(
                    ws,
                    r.image_id,
                    index=k,
                    score=round(0.1 + 0.8 * ((i * 7 + k * 3) % 10) / 10, 2),
                    seed=i * 10 + k,
                    flagged=(k == 1),
                    upscaled=(k == 1),
                )
            )
    return {"images": image_ids, "faces": face_ids}


def link_duplicates(ws, a: int, b: int, distance: int = 3) -> None:
    with ws.session() as s:
        s.add(NearDuplicate(image_id=a, other_id=b, distance=distance))
