"""The grid: one page of candidate faces for a sort and a set of filters, as one indexed query.

Paging goes through a snapshot: the first page of a sort and filter lists the ids of every matching face, in
order (one indexed query, ~10 ms at 10,000 faces), keeps that list under a random key, and every later page
of it (`snap=KEY` in the URL) is a slice of the list. So deciding faces while paging (which changes what
"undecided" matches) never shifts a later page: every face that matched when the filter was applied is shown
exactly once, with its current state. A face deleted since is left out. A changed filter, or a server restart,
makes a fresh snapshot. Without a snapshot store (plain calls) pages are LIMIT/OFFSET over the same order.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import func, or_, select
from sqlalchemy.orm import load_only

from alignment.quality import FLAGS, face_flags
from curation.catalog.flags import flagged_condition, thresholds_for, upscaled_condition
from curation.catalog.schema import Face, Image
from curation.catalog.thresholds import DEFAULT_THRESHOLDS, Thresholds

Sort = Literal[
    "score",
    "group",
    "sharpness",
    "pose",
    "size",
    "rating",
    "date",
    "owner",
    "person",
    "likes",
    "source",
    "id",
]
DecisionFilter = Literal["all", "undecided", "accepted", "rejected", "skipped"]
FlagFilter = Literal["any", "flagged", "clean", "upscaled", "padded", "blurry", "profile", "manual"]

SORT_LABELS = {
    "score": "quality score",
    "group": "near duplicates together",
    "sharpness": "sharpness",
    "pose": "frontal first",
    "size": "face size",
    "rating": "rating",
    "date": "date",
    "owner": "owner",
    "person": "person",
    "likes": "likes",
    "source": "source",
    "id": "catalog order",
}
# The analysis's own flag names (alignment.quality.FLAGS), plus the review's groupings.
FLAG_LABELS = {
    "any": "all",
    "flagged": "flagged",
    "clean": "not flagged",
    "upscaled": "upscaled (small for the target size)",
    "padded": "heavy padding",
    "blurry": "blurry",
    "profile": "profile (turned away)",
    "manual": "cropped by hand",
}


class GridQuery(BaseModel):
    """What the grid shows; every field arrives in the query string and is validated here."""

    sort: Sort = "score"
    decision: DecisionFilter = "all"
    tag: str | None = Field(None, max_length=255)  # the hashtag (Image.query) that found the photo
    source: str | None = Field(None, max_length=16)  # local | instagram | url
    flag: FlagFilter = "any"
    min_score: float | None = Field(None, ge=0.0, le=1.0)
    max_padding: float | None = Field(None, ge=0.0)
    max_pose: float | None = Field(None, ge=0.0, le=180.0)  # degrees of |yaw| (roll is undone by alignment)
    min_rating: int | None = Field(None, ge=1, le=5)
    person: int | None = Field(None, ge=1, le=2**53)  # one person's faces (curation.analysis.identities)
    page: int = Field(1, ge=1, le=100_000)
    snap: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{8,32}$")  # the id list this paging walks through

    @field_validator(
        "tag", "source", "min_score", "max_padding", "max_pose", "min_rating", "person", "snap", mode="before"
    )
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        # The filter form sends empty fields as `min_score=`: that means "no threshold".
        return None if isinstance(v, str) and not v.strip() else v

    def params(self, **override: Any) -> dict[str, Any]:
        """The non-default fields (with overrides) as query parameters."""
        data = {**self.model_dump(), **override}
        defaults = GridQuery().model_dump()
        return {k: v for k, v in data.items() if v is not None and v != defaults.get(k)}

    def url(self, path: str = "/", **override: Any) -> str:
        qs = urlencode(self.params(**override))
        return f"{path}?{qs}" if qs else path

    def filter_key(self) -> tuple:
        """What decides the id list: everything but the page and the snapshot key."""
        return tuple(sorted((k, v) for k, v in self.model_dump().items() if k not in ("page", "snap")))


class Snapshots:
    """Id lists of recent filters, by random key; small, in memory, thread-safe (a few kB per 1,000 faces)."""

    def __init__(self, capacity: int = 64):
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[tuple, tuple[int, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str | None, filter_key: tuple | None = None) -> tuple[int, ...] | None:
        if not key:
            return None
        with self._lock:
            item = self._items.get(key)
            if item is None or (filter_key is not None and item[0] != filter_key):
                return None
            self._items.move_to_end(key)
            return item[1]

    def put(self, filter_key: tuple, ids: tuple[int, ...]) -> str:
        key = secrets.token_urlsafe(9)
        with self._lock:
            self._items[key] = (filter_key, ids)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return key


@dataclass
class Tile:
    id: int
    image_id: int
    decision: str
    score: float | None
    flagged: bool
    manual: bool
    hints: list[str]
    tag: str | None
    owner: str | None
    likes: int | None
    taken_at: dt.datetime | None
    source: str
    reviewer: str | None
    reason: str | None
    rating: int | None = None

    @property
    def title(self) -> str:
        bits = [f"face {self.id}", f"score {self.score:.2f}" if self.score is not None else "no score"]
        if self.tag:
            bits.append(f"#{self.tag}")
        if self.owner:
            bits.append(f"@{self.owner}")
        if self.likes is not None:
            bits.append(f"{self.likes} likes")
        if self.reviewer and self.decision != "undecided":
            bits.append(f"{self.decision} by {self.reviewer}")
        return " · ".join(bits)


@dataclass
class GridPage:
    query: GridQuery
    tiles: list[Tile]
    total: int
    per_page: int
    pages: int = field(init=False)

    def __post_init__(self) -> None:
        self.pages = max(1, -(-self.total // self.per_page))

    @property
    def offset(self) -> int:
        return (self.query.page - 1) * self.per_page


def face_hints(face: Face, th: Thresholds = DEFAULT_THRESHOLDS) -> list[str]:
    """Short flag names for a tile, from the face's measures under this workspace's thresholds (so they
    follow the target size chosen after the analysis ran); flags outside the vocabulary that the analysis
    stored are kept after them."""
    side = face.quad_size
    hints = face_flags(
        side,
        face.padding,
        face.blur,
        face.yaw,
        target_size=th.target_size,
        blur_flag=th.blur,
        padding_flag=th.padding,
        yaw_flag=th.pose,
    )
    if side is None and face.upscaled:
        hints.insert(0, "upscaled")
    stored = (face.quality or {}).get("flags")
    if isinstance(stored, (list, tuple)):
        hints += [f for f in stored if isinstance(f, str) and f not in FLAGS and f not in hints]
    if face.manual and "manual" not in hints:
        hints.insert(0, "manual")
    return hints


def _filters(q: GridQuery, th: Thresholds) -> list:
    conds = [Face.deleted.is_(False), Image.status != "excluded"]  # taken-down photos are out of review
    if q.decision != "all":
        conds.append(Face.decision == q.decision)
    if q.tag:
        conds.append(Image.query == q.tag)
    if q.source:
        conds.append(Image.source_kind == q.source)
    if q.min_score is not None:
        conds.append(Face.score >= q.min_score)
    if q.max_padding is not None:
        conds.append(or_(Face.padding.is_(None), Face.padding <= q.max_padding))
    if q.max_pose is not None:
        conds.append(func.abs(func.coalesce(Face.yaw, 0.0)) <= q.max_pose)
    if q.min_rating is not None:
        conds.append(Face.rating >= q.min_rating)
    if q.person is not None:
        conds.append(Face.person_id == q.person)
    match q.flag:
        case "flagged":
            conds.append(flagged_condition(th))
        case "clean":
            conds.append(~flagged_condition(th))
        case "upscaled":
            conds.append(upscaled_condition(th))
        case "padded":
            conds.append(Face.padding > th.padding)
        case "blurry":
            conds.append(Face.blur < th.blur)
        case "profile":
            conds.append(func.abs(Face.yaw) > th.pose)
        case "manual":
            conds.append(Face.manual.is_(True))
    return conds


def _order(sort: Sort) -> list:
    match sort:
        case "score":
            return [Face.score.desc().nulls_last(), Face.id]
        case "sharpness":
            return [Face.blur.desc().nulls_last(), Face.id]
        case "pose":
            return [func.abs(func.coalesce(Face.yaw, 90.0)), Face.score.desc().nulls_last(), Face.id]
        case "size":
            return [Face.quad_size.desc().nulls_last(), Face.id]
        case "rating":
            return [Face.rating.desc().nulls_last(), Face.score.desc().nulls_last(), Face.id]
        case "owner":
            return [Image.owner.nulls_last(), Face.score.desc().nulls_last(), Face.id]
        case "person":  # one person's faces together, people by id, faces not grouped yet last
            return [Face.person_id.nulls_last(), Face.score.desc().nulls_last(), Face.id]
        case "date":
            return [
                Image.taken_at.desc().nulls_last(),
                Image.ingested_at.desc(),
                Face.image_id,
                Face.index,
                Face.id,
            ]
        case "likes":
            return [Image.likes.desc().nulls_last(), Face.score.desc().nulls_last(), Face.id]
        case "source":
            return [
                Image.source_kind,
                Image.query.nulls_last(),
                Image.owner.nulls_last(),
                Face.image_id,
                Face.index,
                Face.id,
            ]
        case _:
            return [Face.id]


def _tile(f: Face, tag, owner, likes, taken, kind, th: Thresholds) -> Tile:
    hints = face_hints(f, th)
    return Tile(
        id=f.id,
        image_id=f.image_id,
        decision=f.decision or "undecided",
        score=f.score,
        flagged=any(h in FLAGS for h in hints)
        or (f.quad_size is None and bool(f.flagged)),  # as flagged_condition
        manual=bool(f.manual),
        hints=hints,
        tag=tag,
        owner=owner,
        likes=likes,
        taken_at=taken,
        source=kind,
        reviewer=f.reviewer,
        reason=f.reason,
        rating=f.rating,
    )


TILE_COLUMNS = (Image.query, Image.owner, Image.likes, Image.taken_at, Image.source_kind)
# What a tile reads of its face (face_hints, Tile): not the landmarks, quad, box or points (JSON to decode).
TILE_FACE = load_only(
    Face.id,
    Face.image_id,
    Face.decision,
    Face.score,
    Face.flagged,
    Face.upscaled,
    Face.manual,
    Face.quad_size,
    Face.padding,
    Face.blur,
    Face.yaw,
    Face.quality,
    Face.reviewer,
    Face.reason,
    Face.rating,
)


def _ids(session, stmt) -> tuple[int, ...]:
    """The first column of `stmt` as plain ints, straight from the DBAPI cursor: for 10,000 ids, building
    a Row per id cost more than the query."""
    res = session.connection().execute(stmt)  # Core, in the session's transaction: a CursorResult
    try:
        return tuple(r[0] for r in res.cursor.fetchall())
    finally:
        res.close()


def matching_ids(session, q: GridQuery, th: Thresholds | None = None) -> tuple[int, ...]:
    """Every face matching `q`, in its sort order."""
    th = th or thresholds_for(session)
    if q.sort == "group":
        return _grouped(session, q, th)
    return _ids(
        session,
        select(Face.id)
        .join(Image, Face.image_id == Image.id)
        .where(*_filters(q, th))
        .order_by(*_order(q.sort)),
    )


def _grouped(session, q: GridQuery, th: Thresholds) -> tuple[int, ...]:
    """Faces of near-duplicate photos next to each other: groups (linked photos, transitively) best first,
    best face first inside a group."""
    from curation.catalog.schema import NearDuplicate

    rows = session.execute(
        select(Face.id, Face.image_id, Face.score)
        .join(Image, Face.image_id == Image.id)
        .where(*_filters(q, th))
        .order_by(Face.score.desc().nulls_last(), Face.id)
    ).all()
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.get(x, x) != x:
            parent[x] = parent.get(parent[x], parent[x])
            x = parent[x]
        return x

    for a, b in session.execute(select(NearDuplicate.image_id, NearDuplicate.other_id)).all():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    rank: dict[int, int] = {}
    for k, (_, image_id, _) in enumerate(rows):
        rank.setdefault(root(image_id), k)  # a group sorts where its best face would
    order = sorted(range(len(rows)), key=lambda k: (rank[root(rows[k][1])], k))
    return tuple(rows[k][0] for k in order)


def list_faces(
    session,
    q: GridQuery,
    per_page: int = 120,
    th: Thresholds | None = None,
    snapshots: Snapshots | None = None,
) -> GridPage:
    """One page of faces matching `q`, in its sort order, with the total count for the pager.

    With `snapshots`, the page is a slice of the filter's id list (made now, or the one `q.snap` names), and
    the returned page's query carries the snapshot key for the pager's links. `th` defaults to the
    workspace's thresholds (its target size)."""
    th = th or thresholds_for(session)
    if snapshots is not None:
        fk = q.filter_key()
        ids = snapshots.get(q.snap, fk)
        if ids is None:
            ids = matching_ids(session, q, th)
            q = q.model_copy(update={"snap": snapshots.put(fk, ids)})
        wanted = ids[(q.page - 1) * per_page : q.page * per_page]
        rows = session.execute(
            select(Face, *TILE_COLUMNS)
            .options(TILE_FACE)
            .join(Image, Face.image_id == Image.id)
            .where(Face.id.in_(wanted), Face.deleted.is_(False), Image.status != "excluded")
        ).all()
        by_id = {r[0].id: r for r in rows}
        tiles = [_tile(*by_id[i], th) for i in wanted if i in by_id]
        return GridPage(q, tiles, len(ids), per_page)
    if q.sort == "group":  # ordered in Python: slice a one-off snapshot
        return list_faces(session, q, per_page, th, snapshots=Snapshots())
    conds = _filters(q, th)
    total = (
        session.scalar(select(func.count(Face.id)).join(Image, Face.image_id == Image.id).where(*conds)) or 0
    )
    rows = session.execute(
        select(Face, *TILE_COLUMNS)
        .options(TILE_FACE)
        .join(Image, Face.image_id == Image.id)
        .where(*conds)
        .order_by(*_order(q.sort))
        .limit(per_page)
        .offset((q.page - 1) * per_page)
    ).all()
    return GridPage(q, [_tile(*r, th) for r in rows], int(total), per_page)


def facet_values(session) -> dict[str, list[str]]:
    """The tags and source kinds present, for the filter menus."""
    tags = session.scalars(
        select(Image.query).where(Image.query.is_not(None)).distinct().order_by(Image.query)
    ).all()
    kinds = session.scalars(select(Image.source_kind).distinct().order_by(Image.source_kind)).all()
    return {"tags": [t for t in tags if t], "sources": [k for k in kinds if k]}
