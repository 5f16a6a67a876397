"""The catalog: what the workspace knows about every image, face, decision, dataset and training run.

SQLAlchemy 2 ORM over SQLite (WAL mode) by default or any SQLAlchemy URL. The schema is versioned with
Alembic (curation/catalog/migrations); `upgrade_catalog` brings any older catalog to the current head.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

IMAGE_STATUSES = ("new", "analyzed", "no_face", "rejected", "excluded", "error")
# The one decision vocabulary (Face.decision), in the order counts and messages list it.
DecisionName = Literal["accepted", "rejected", "skipped", "undecided"]
DECISIONS: tuple[str, ...] = get_args(DecisionName)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)


class Image(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    phash: Mapped[str | None] = mapped_column(String(16), index=True)
    path: Mapped[str | None] = mapped_column(String(255))  # relative to the workspace; None when refused
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    mode: Mapped[str | None] = mapped_column(String(16))  # the original PIL mode
    conversion: Mapped[str | None] = mapped_column(String(255))  # e.g. "CMYK->RGB; EXIF orientation 6"
    size_bytes: Mapped[int | None]
    source_kind: Mapped[str] = mapped_column(String(16), index=True)  # local | instagram | url
    source_ref: Mapped[str | None] = mapped_column(Text)  # original path, post URL or image URL
    query: Mapped[str | None] = mapped_column(String(255), index=True)  # hashtag that found it
    owner: Mapped[str | None] = mapped_column(String(255), index=True)
    shortcode: Mapped[str | None] = mapped_column(String(64), index=True)
    post_url: Mapped[str | None] = mapped_column(Text)
    taken_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    likes: Mapped[int | None]
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    ingested_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="new", index=True)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    analyzed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    faces: Mapped[list[Face]] = relationship(back_populates="image", order_by="Face.index")


class NearDuplicate(Base):
    """A pair of images whose perceptual hashes are within the near-duplicate distance (linked, not dropped)."""

    __tablename__ = "near_duplicates"
    __table_args__ = (UniqueConstraint("image_id", "other_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    other_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    distance: Mapped[int]


class Face(Base):
    __tablename__ = "faces"

    id: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    index: Mapped[int] = mapped_column(Integer, default=0)  # order of the face within its photo
    detector: Mapped[str] = mapped_column(String(16))  # hog | cnn | manual
    det_score: Mapped[float | None] = mapped_column(Float)
    box: Mapped[list[Any] | None] = mapped_column(JSON)  # [x0, y0, x1, y1] in source pixels
    landmarks: Mapped[list[Any] | None] = mapped_column(JSON)  # 68 x [x, y], iBUG 300-W order
    points: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # manual faces: eye/mouth points
    quad: Mapped[list[Any] | None] = mapped_column(JSON)  # 4 x [x, y], the FFHQ crop quad
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    eye_dist: Mapped[float | None] = mapped_column(Float)
    quad_size: Mapped[float | None] = mapped_column(Float)
    padding: Mapped[float | None] = mapped_column(Float)
    blur: Mapped[float | None] = mapped_column(Float)
    roll: Mapped[float | None] = mapped_column(Float)
    yaw: Mapped[float | None] = mapped_column(Float)
    upscaled: Mapped[bool] = mapped_column(Boolean, default=False)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    score: Mapped[float | None] = mapped_column(Float, index=True)
    quality: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    preview_path: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    decision: Mapped[str] = mapped_column(String(16), default="undecided", index=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    reviewer: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(255))
    rating: Mapped[int | None]  # 1-5 stars from review (kept with the decision), None: not rated
    descriptor: Mapped[bytes | None] = mapped_column(
        LargeBinary
    )  # 128 float32 (alignment.identity), None: not yet
    person_id: Mapped[int | None] = mapped_column(
        ForeignKey("people.id"), index=True
    )  # None: not clustered yet

    image: Mapped[Image] = relationship(back_populates="faces")


# The Face columns that copy a face's measured quality (alignment.quality.Quality.as_dict(); the whole dict
# is kept in Face.quality too), so the grid can sort and filter on them.
QUALITY_COLUMNS = ("eye_dist", "quad_size", "padding", "blur", "roll", "yaw", "upscaled", "flagged", "score")


def quality_columns(quality: dict[str, Any]) -> dict[str, Any]:
    """The QUALITY_COLUMNS of a quality dict, as Face(...) keywords."""
    return {k: quality[k] for k in QUALITY_COLUMNS}


class Person(Base):
    """One person the faces were grouped into (curation.analysis.identities). Rows are never deleted: a person
    merged away or taken down keeps its row, so its id is never given to anyone else (People.next_id)."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Decision(Base):
    """Every review decision ever made (the face row holds the current one); undo and audit read this."""

    __tablename__ = "decisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    face_id: Mapped[int] = mapped_column(ForeignKey("faces.id"), index=True)
    decision: Mapped[str] = mapped_column(String(16))
    previous: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(255))
    reviewer: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rating: Mapped[int | None]  # the face's rating after this step
    previous_rating: Mapped[int | None]
    round_id: Mapped[int | None] = mapped_column(
        ForeignKey("review_rounds.id"), index=True
    )  # the round it belongs to


class ReviewRound(Base):
    __tablename__ = "review_rounds"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    target: Mapped[int | None]
    accepted: Mapped[int | None]
    reviewer: Mapped[str | None] = mapped_column(String(64))  # who opened the round
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    closed_by: Mapped[str | None] = mapped_column(String(64))  # who pressed "Selection done"


class WorkspaceSetting(Base):
    """Workspace-wide choices that several commands share (e.g. `target_size`: the dataset side the flags
    refer to, set by `ghosts analyze --target-size` or `ghosts review --target-size`)."""

    __tablename__ = "workspace_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def get_setting(session: Session, key: str, default: Any = None) -> Any:
    row = session.get(WorkspaceSetting, key)
    return default if row is None else row.value


def set_setting(session: Session, key: str, value: Any) -> None:
    """Insert or update `key`. On SQLite one upsert statement, so processes setting the same new key at once
    (parallel analysis batches) never collide on its primary key."""
    if session.get_bind().dialect.name != "sqlite":
        row = session.get(WorkspaceSetting, key)
        if row is None:
            session.add(WorkspaceSetting(key=key, value=value, updated_at=utcnow()))
        else:
            row.value, row.updated_at = value, utcnow()
        return
    stmt = sqlite_insert(WorkspaceSetting).values(key=key, value=value, updated_at=utcnow())
    stmt = stmt.on_conflict_do_update(
        index_elements=[WorkspaceSetting.key],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    )
    session.flush()  # pending ORM changes of this key first, then the statement
    session.execute(stmt)
    loaded = session.identity_map.get(session.identity_key(WorkspaceSetting, key))
    if loaded is not None:
        session.expire(loaded)  # read back what was written, not the object loaded before


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int]
    resolution: Mapped[int]
    path: Mapped[str] = mapped_column(String(255))  # relative to the workspace
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    count: Mapped[int]
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    selection_digest: Mapped[str | None] = mapped_column(String(64))
    labels: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    manifest: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    code_version: Mapped[str | None] = mapped_column(String(64))
    superseded_reason: Mapped[str | None] = mapped_column(Text)


class DatasetItem(Base):
    __tablename__ = "dataset_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    face_id: Mapped[int | None] = mapped_column(ForeignKey("faces.id"), index=True)
    image_id: Mapped[int | None] = mapped_column(ForeignKey("images.id"), index=True)
    archive_name: Mapped[str] = mapped_column(String(64))


class TrainingRun(Base):
    __tablename__ = "training_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_dir: Mapped[str] = mapped_column(Text)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id"))
    dataset_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    cfg: Mapped[str | None] = mapped_column(String(32))
    kimg_target: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_snapshot: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)


class Takedown(Base):
    __tablename__ = "takedowns"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # owner | image | post
    value: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    image_ids: Mapped[list[Any] | None] = mapped_column(JSON)


# --- engine and schema -------------------------------------------------------------------------------------

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str, lock_timeout: float = 30.0, read_only: bool = False) -> Engine:
    """`lock_timeout`: seconds to wait for another process's write before failing with "database is locked".
    `read_only`: the connections change nothing (no journal-mode switch; the URL itself opens SQLite read-only,
    see Workspace.db_url)."""
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Worker threads (the review app, Prefect thread runners) share the engine; SQLite serialises writes.
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": lock_timeout}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", lambda conn, _record: _sqlite_pragmas(conn, lock_timeout, read_only))
    return engine


def _sqlite_pragmas(dbapi_conn, lock_timeout: float = 30.0, read_only: bool = False) -> None:
    cur = dbapi_conn.cursor()
    if not read_only:  # (switching the journal mode is a write)
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; a crash never corrupts it
    cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints, safe with WAL
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={int(lock_timeout * 1000)}")
    cur.close()


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates '%': a quoted path (%C3%A9, %23) must have it doubled.
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def upgrade_catalog(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the catalog schema to `revision` (Alembic)."""
    from alembic import command

    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


# The newest migration's revision: the schema this ghosts writes. A catalog already at it is opened without
# Alembic, whose import costs about 90 ms at the start of every command that opens the workspace; Alembic is
# loaded only to upgrade an older catalog or to tell a newer one apart from a damaged one.
# tests/curation/test_catalog.py holds it to the head of the migrations folder, so a new migration that does
# not move it fails there.
HEAD_REVISION = "0003"
VERSION_TABLE = "alembic_version"  # where Alembic records the catalog's revision (its default name)


def catalog_revision(engine: Engine) -> str | None:
    """The schema revision recorded in the catalog (Alembic's version table); None for an empty database."""
    with engine.connect() as conn:
        if not inspect(conn).has_table(VERSION_TABLE):
            return None
        revs = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    if len(revs) > 1:  # a linear history has one; several would be branches this ghosts never writes
        raise ValueError(f"the catalog records several schema revisions: {', '.join(sorted(revs))}")
    return revs[0] if revs else None


def head_revision() -> str:
    """The schema revision this ghosts writes."""
    return HEAD_REVISION


# --- small queries used across rooms ------------------------------------------------------------------------


def count_by(session: Session, column) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    return {str(k): int(v) for k, v in rows}
