"""Everything the detail view shows about one photo: its faces, their measures, provenance, near duplicates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import or_, select

from alignment.quality import FLAGS
from curation.catalog.flags import thresholds_for
from curation.catalog.schema import Face, Image, NearDuplicate
from curation.catalog.thresholds import DEFAULT_THRESHOLDS, Thresholds
from curation.review.grid import face_hints

MEASURES = ("score", "det_score", "eye_dist", "quad_size", "padding", "blur", "roll", "yaw")


@dataclass
class FaceInfo:
    id: int
    number: int  # 1-based position in its photo: the label drawn beside its box
    index: int
    detector: str
    manual: bool
    decision: str
    reviewer: str | None
    reason: str | None
    decided_at: dt.datetime | None
    box: list[float] | None
    landmarks: list[list[float]]
    points: dict[str, Any] | None
    quad: list[list[float]] | None
    has_preview: bool
    hints: list[str]
    measures: list[tuple[str, str]]  # (name, formatted value), columns first then the quality JSON

    @property
    def quad_points(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.quad) if self.quad else ""


@dataclass
class Neighbour:
    image_id: int
    distance: int
    faces: list[FaceInfo]
    has_photo: bool


@dataclass
class PhotoDetail:
    image_id: int
    width: int
    height: int
    status: str
    has_photo: bool
    faces: list[FaceInfo]
    focus: int | None
    provenance: list[tuple[str, str]]
    post_url: str | None
    caption: str | None
    tags: list[str]
    neighbours: list[Neighbour] = field(default_factory=list)
    deleted: list[FaceInfo] = field(default_factory=list)  # faces deleted from this photo (restorable)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}={_fmt(x)}" for k, x in v.items())
    return str(v)


def face_info(face: Face, number: int = 1, th: Thresholds = DEFAULT_THRESHOLDS) -> FaceInfo:
    measures = [(m, _fmt(getattr(face, m))) for m in MEASURES if getattr(face, m) is not None]
    hints = face_hints(face, th)  # under this workspace's target size, not the one the analysis ran with
    measures += [
        ("workspace target_size", str(th.target_size)),
        ("upscaled", _fmt("upscaled" in hints)),
        ("flagged", _fmt(any(h in FLAGS for h in hints) or (face.quad_size is None and bool(face.flagged)))),
    ]
    shown = {m for m, _ in measures}
    for k, v in sorted((face.quality or {}).items()):
        if k not in shown:
            measures.append((k, _fmt(v)))
    lm = face.landmarks if isinstance(face.landmarks, list) else []
    return FaceInfo(
        id=face.id,
        number=number,
        index=face.index,
        detector=face.detector,
        manual=bool(face.manual),
        decision=face.decision or "undecided",
        reviewer=face.reviewer,
        reason=face.reason,
        decided_at=face.decided_at,
        box=face.box,
        landmarks=[p for p in lm if isinstance(p, (list, tuple)) and len(p) == 2],
        points=face.points,
        quad=face.quad,
        has_preview=bool(face.preview_path),
        hints=hints,
        measures=measures,
    )


def safe_url(url: str | None) -> str | None:
    """Only http(s) links are rendered (a catalog value must never become a javascript: link)."""
    if not url:
        return None
    return url if urlsplit(url).scheme in ("http", "https") else None


def _live_faces(session, image_id: int) -> list[Face]:
    return list(
        session.scalars(
            select(Face)
            .where(Face.image_id == image_id, Face.deleted.is_(False))
            .order_by(Face.index, Face.id)
        )
    )


def photo_detail(ws, image_id: int, focus: int | None = None, max_neighbours: int = 12) -> PhotoDetail | None:
    """The detail of photo `image_id` (None when unknown); `focus` names the face the user came from."""
    with ws.session() as s:
        img = s.get(Image, image_id)
        if img is None or img.status == "excluded":  # taken down: not shown any more
            return None
        prov = dict(img.provenance or {})
        rows = [
            ("source", img.source_kind),
            ("hashtag", f"#{img.query}" if img.query else None),
            ("owner", f"@{img.owner}" if img.owner else prov.get("owner_username")),
            ("taken", img.taken_at.isoformat(sep=" ", timespec="minutes") if img.taken_at else None),
            ("likes", img.likes),
            ("file", prov.get("name")),
            ("original", img.source_ref if img.source_kind != "instagram" else None),
            ("size", f"{img.width} x {img.height} {img.format or ''}".strip() if img.width else None),
            ("converted", img.conversion),
            ("ingested", img.ingested_at.isoformat(sep=" ", timespec="minutes") if img.ingested_at else None),
            ("status", img.status + (f" ({img.reject_reason})" if img.reject_reason else "")),
        ]
        tags = list(prov.get("caption_hashtags") or [])
        if img.query and img.query not in tags:
            tags.insert(0, img.query)
        th = thresholds_for(s)
        faces = [face_info(f, n, th) for n, f in enumerate(_live_faces(s, image_id), 1)]
        faces.sort(key=lambda f: f.id != focus)  # the face the reviewer came from first
        links = s.execute(
            select(NearDuplicate.image_id, NearDuplicate.other_id, NearDuplicate.distance)
            .where(or_(NearDuplicate.image_id == image_id, NearDuplicate.other_id == image_id))
            .order_by(NearDuplicate.distance)
            .limit(max_neighbours)
        ).all()
        neighbours = []
        for a, b, dist in links:
            other = b if a == image_id else a
            oimg = s.get(Image, other)
            if oimg is None or oimg.status == "excluded":
                continue
            neighbours.append(
                Neighbour(
                    other,
                    int(dist),
                    [face_info(f, n, th) for n, f in enumerate(_live_faces(s, other), 1)],
                    bool(oimg.path),
                )
            )
        gone = s.scalars(
            select(Face).where(Face.image_id == image_id, Face.deleted.is_(True)).order_by(Face.id)
        )
        deleted = [face_info(f, 0, th) for f in gone]
        return PhotoDetail(
            deleted=deleted,
            image_id=img.id,
            width=img.width or 0,
            height=img.height or 0,
            status=img.status,
            has_photo=bool(img.path),
            faces=faces,
            focus=focus,
            provenance=[(k, str(v)) for k, v in rows if v not in (None, "")],
            post_url=safe_url(img.post_url or prov.get("post_url")),
            caption=prov.get("caption"),
            tags=tags,
            neighbours=neighbours,
        )
