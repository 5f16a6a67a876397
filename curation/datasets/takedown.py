"""Takedown: remove a person's or a post's images from the workspace and every dataset, now and later.

The images are marked `excluded` (no freeze selects them again) and the request is recorded before any
archive is touched, so an interrupted takedown still keeps them out of the future; running it again finishes
the job. Every dataset whose latest version holds them gets a new version without them, re-packed from that
archive's own PNGs (no re-alignment, so the other images stay bit-identical). Older versions are marked
superseded, and the training runs that used any affected version are listed so their owners can act.

Then the person is removed from the workspace: the originals in the image store, the face previews, the
personal fields of the catalog rows (owner, caption and every other provenance field, URLs, source paths,
landmarks, identity descriptors) and, with `purge`, the archives of the old versions and the reals grids of
the runs that used them.
What stays is a tombstone per image (its sha256, status `excluded` and the takedown's reason), so the same
bytes are refused if they come back. The takedown record keeps only a hash of the owner or post it names, and
its reason with that name blanked. Finally the SQLite catalog is vacuumed and its write-ahead log truncated,
so the blanked values are not left in free pages or in the log.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DatasetItem, DatasetVersion, Face, Image, Takedown, TrainingRun
from curation.datasets.card import render_card
from curation.datasets.crops import clear_cache
from curation.datasets.freeze import (
    card_facts,
    commit_version,
    dataset_lock,
    latest_version,
    new_version_dir,
    selection_digest,
)
from curation.datasets.reader import open_archive
from curation.datasets.writer import ArchiveWriter

POST_RE = re.compile(r"instagram\.com/(?:[^/?#]+/)?(?:p|reel|reels|tv)/([A-Za-z0-9_-]+)")
# Fields the archive writer adds to each provenance record; a re-pack lets the writer set them afresh.
WRITER_FIELDS = ("archive_name", "png_sha256", "label")


@dataclass
class TakedownResult:
    takedown_id: int
    kind: str
    value: str
    images: list[str]  # sha256 of every image taken down
    new_versions: list[dict[str, Any]] = field(default_factory=list)
    superseded: list[dict[str, Any]] = field(default_factory=list)  # versions that held the images
    emptied: list[str] = field(default_factory=list)  # datasets left with no image (no new version possible)
    training_runs: list[dict[str, Any]] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)  # old archive files deleted (--purge)
    removed_files: list[str] = field(default_factory=list)  # originals, previews, run grids deleted
    scrubbed_rows: int = 0  # catalog rows whose personal fields were blanked
    kept_versions: list[dict[str, Any]] = field(default_factory=list)  # old archives still holding them
    already: bool = False  # every image was taken down before; this run only finished the job
    catalog_scrubbed: bool = True  # False: another process held the catalog, its file could not be vacuumed

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def record_value(kind: str, value: str) -> str:
    """What the takedown record keeps of its selector: a sha256 for an owner or a post (the record must not
    name the person it removes), the image's sha256 (prefix) as given."""
    if kind == "image":
        return value
    if kind == "post":
        m = POST_RE.search(value)
        value = m.group(1) if m else value.split("?")[0].split("#")[0].rstrip("/")
    else:
        value = value.lower()
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def blank_names(text: str, names: set[str]) -> str:
    """`text` with every occurrence of each name (any case, with or without '@') replaced by [removed]."""
    for name in sorted((n for n in names if n), key=len, reverse=True):
        text = re.sub(re.escape(name), "[removed]", text, flags=re.IGNORECASE)
    return text


def find_images(
    session: Session,
    *,
    owner: str | None = None,
    image: str | None = None,
    post: str | None = None,
    face_images: list[str] | None = None,  # sha256s of the images a face matched (`ghosts takedown --face`)
) -> tuple[str, str, list[Image]]:
    """(kind, value, images) for exactly one selector; raises a clear error when it matches nothing.

    Images already taken down no longer carry their owner or post URL; a selector that a previous takedown
    recorded (by hash) finds them again, so a rerun finishes an interrupted takedown."""
    given = [
        (k, v) for k, v in (("owner", owner), ("image", image), ("post", post), ("face", face_images)) if v
    ]
    if len(given) != 1:
        raise GhostsError("name exactly one of --owner NAME, --image SHA256, --post URL or --face PHOTO")
    kind, value = given[0]
    if kind == "face":
        images = list(
            session.scalars(select(Image).where(Image.sha256.in_(sorted(set(value)))).order_by(Image.sha256))
        )
        if not images:
            raise GhostsError("no image in the catalog holds a face like the one given")
        return kind, f"{len(images)} images matched by face", images
    value = value.strip()
    if kind == "owner":
        value = value.lstrip("@")
        stmt = select(Image).where(func.lower(Image.owner) == value.lower())
    elif kind == "image":
        value = value.lower()
        if not re.fullmatch(r"[0-9a-f]{8,64}", value):
            raise GhostsError(f"--image takes a sha256 (or its first 8+ hex digits), got {value!r}")
        stmt = select(Image).where(Image.sha256.startswith(value))
    else:
        m = POST_RE.search(value)
        plain = value.split("?")[0].split("#")[0].rstrip("/")
        conds = [Image.post_url == value, func.rtrim(Image.post_url, "/") == plain]
        if m:
            conds.append(Image.shortcode == m.group(1))
        stmt = select(Image).where(or_(*conds))
    images = list(session.scalars(stmt.order_by(Image.sha256)))
    if kind != "image":
        earlier = session.scalars(
            select(Takedown).where(Takedown.kind == kind, Takedown.value == record_value(kind, value))
        ).all()
        ids = {i for t in earlier for i in (t.image_ids or [])} - {im.id for im in images}
        if ids:
            images += session.scalars(select(Image).where(Image.id.in_(ids))).all()
            images.sort(key=lambda im: im.sha256)
    if not images:
        raise GhostsError(f"no image in the catalog matches --{kind} {value}")
    if kind == "image" and len(value) < 64 and len(images) > 1:
        raise GhostsError(f"--image {value} matches {len(images)} images; give more digits of the sha256")
    return kind, value, images


def takedown(
    ws,
    *,
    owner: str | None = None,
    image: str | None = None,
    post: str | None = None,
    face_images: list[str]
    | None = None,  # sha256s of the images a face matched (curation.analysis.identities)
    reason: str,
    purge: bool = False,  # also delete the archive files of the versions that held the images
    progress: bool = True,
) -> TakedownResult:
    if not reason or not reason.strip():
        raise GhostsError("--reason is required: say who asked and why (it is kept with the takedown record)")
    with ws.session() as s:
        kind, value, images = find_images(s, owner=owner, image=image, post=post, face_images=face_images)
        ids = [im.id for im in images]
        shas = {im.sha256 for im in images}
        # Names the record must not keep: the owners, the posts' shortcodes and URLs, the selector itself.
        names = {im.owner for im in images} | {im.shortcode for im in images} | {im.post_url for im in images}
        names |= {value} if kind not in ("image", "face") else set()
        names = {n for n in names if n and len(n) >= 2}
        clean_reason = blank_names(reason.strip(), names)
        row = Takedown(kind=kind, value=record_value(kind, value), reason=clean_reason, image_ids=ids)
        s.add(row)
        already = all(im.status == "excluded" and im.path is None and not im.owner for im in images)
        for im in images:
            im.status = "excluded"
        s.flush()
        result = TakedownResult(row.id, kind, value, sorted(shas), already=already)
        when = row.created_at

    with ws.session() as s:
        holding = s.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.id.in_(select(DatasetItem.dataset_id).where(DatasetItem.image_id.in_(ids))))
            .order_by(DatasetVersion.name, DatasetVersion.version)
        ).all()
    note = f"takedown #{result.takedown_id}: {clean_reason}"
    for name in sorted({v.name for v in holding}):
        with dataset_lock(ws, name):
            with ws.session() as s:
                latest = latest_version(s, name)
            if latest.id in {v.id for v in holding}:
                made = _repack_without(ws, latest, ids, shas, result.takedown_id, when, progress)
                if made is None:
                    result.emptied.append(name)
                else:
                    result.new_versions.append(made)

    old_ids = [v.id for v in holding]
    with ws.session() as s:
        for v in s.scalars(select(DatasetVersion).where(DatasetVersion.id.in_(old_ids))):
            if note not in (v.superseded_reason or ""):
                v.superseded_reason = "; ".join(filter(None, [v.superseded_reason, note]))
            result.superseded.append(
                {"name": v.name, "version": v.version, "sha256": v.sha256, "path": v.path}
            )
        runs = s.scalars(
            select(TrainingRun)
            .where(
                or_(
                    TrainingRun.dataset_id.in_(old_ids),
                    TrainingRun.dataset_sha256.in_([v.sha256 for v in holding]),
                )
            )
            .order_by(TrainingRun.id)
        ).all()
        result.training_runs = [
            {"id": r.id, "run_dir": r.run_dir, "dataset_sha256": r.dataset_sha256, "status": r.status}
            for r in runs
        ]
    if purge:
        for v in holding:
            path = ws.abspath(v.path)
            if path.exists():
                path.unlink()
                result.purged.append(v.path)
        for r in result.training_runs:
            # The grid of training images a run draws at its start holds the removed faces too.
            grid = ws.abspath(r["run_dir"]) / "reals.png"
            if grid.is_file():
                grid.unlink()
                result.removed_files.append(ws.relpath(grid))
    else:
        result.kept_versions = [
            {"name": v.name, "version": v.version, "path": v.path}
            for v in holding
            if ws.abspath(v.path).exists()
        ]
    _remove_person(ws, ids, result, clean_reason)
    return result


def _unlink(ws, rel: str | None, removed: list[str]) -> None:
    if not rel:
        return
    path = ws.abspath(rel)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        removed.append(rel)


def _remove_person(ws, ids: list[int], result: TakedownResult, reason: str) -> None:
    """Delete the images' files, blank their personal catalog fields, and scrub the catalog's free pages.

    Files go first: a kill between the two leaves rows that still name deleted files (a rerun of the same
    takedown finds the images through the record and finishes), never a blanked row whose files remain."""
    with ws.session() as s:
        images = s.scalars(select(Image).where(Image.id.in_(ids))).all()
        faces = s.scalars(select(Face).where(Face.image_id.in_(ids))).all()
        for im in images:
            _unlink(ws, im.path, result.removed_files)
            # A store file from before the row knew its path (a killed ingest) has the same name stem.
            for stray in ws.images_dir.glob(f"{im.sha256[:2]}/{im.sha256}.*"):
                _unlink(ws, ws.relpath(stray), result.removed_files)
        for f in faces:
            _unlink(ws, f.preview_path, result.removed_files)
        clear_cache(ws.root)  # rendered crops of the faces (curation.datasets.crops)
        tomb = f"taken down (takedown #{result.takedown_id}): {reason}"
        for im in images:
            im.path = None
            im.owner = im.shortcode = im.post_url = im.source_ref = None
            im.taken_at = None
            im.likes = None
            im.provenance = {"takedown": result.takedown_id}
            im.conversion = None
            im.status = "excluded"
            im.reject_reason = tomb
            result.scrubbed_rows += 1
        for f in faces:
            f.preview_path = None
            f.box = f.landmarks = f.points = f.quad = f.quality = None
            f.descriptor = None  # the face's identity vector: biometric, goes with the face
            f.descriptor = None  # the face's biometric descriptor goes with it
            f.deleted = True
            result.scrubbed_rows += 1
    result.catalog_scrubbed = scrub_catalog(ws)


def scrub_catalog(ws) -> bool:
    """Rewrite the SQLite catalog without its free pages and empty its write-ahead log, so values just
    blanked are nowhere in the files. False when another process holds the catalog (a write in progress, or
    a reader keeping the log alive): the blanked rows are committed either way, and running the takedown
    again scrubs the file once the catalog is free."""
    if ws.engine.dialect.name != "sqlite":
        return True
    with ws.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("PRAGMA busy_timeout=2000")  # a busy catalog: say so soon, do not wait 30 s
        try:
            conn.exec_driver_sql("VACUUM")
            busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        except OperationalError:
            busy = True
        finally:  # the connection goes back to the pool: give it back its usual wait
            conn.exec_driver_sql(f"PRAGMA busy_timeout={int(ws.settings.lock_timeout * 1000)}")
    return not busy


def _repack_without(
    ws,
    old: DatasetVersion,
    ids: list[int],
    shas: set[str],
    takedown_id: int,
    when: dt.datetime,
    progress: bool,
) -> dict[str, Any] | None:
    """Write version old+1 of old.name from old's archive minus the images; None when nothing would remain."""
    src = ws.abspath(old.path)
    if not src.is_file():
        raise GhostsError(
            f"{old.name} v{old.version}: its archive {old.path} is missing, so it cannot be re-packed "
            "without the removed images; freeze the dataset again instead"
        )
    with ws.session() as s:
        items = {
            it.archive_name: it
            for it in s.scalars(select(DatasetItem).where(DatasetItem.dataset_id == old.id))
        }
    manifest = old.manifest or {}
    class_names = manifest.get("class_names")
    labels_mode = old.labels or "none"
    with open_archive(src) as arc:
        keep = []
        for name, rec in zip(arc.names, arc.provenance or [{}] * arc.count):
            item = items.get(name)
            gone = (item is not None and item.image_id in ids) or rec.get("image_sha256") in shas
            if not gone:
                keep.append((name, rec, item))
        removed = arc.count - len(keep)
        if not keep:
            return None
        version = old.version + 1
        with new_version_dir(ws, old.name, version) as vdir:
            records = [{k: v for k, v in rec.items() if k not in WRITER_FIELDS} for _, rec, _ in keep]
            history = [
                f"parent: v{old.version} (sha256 {old.sha256[:16]}...)",
                f"removed {removed} faces on request (takedown #{takedown_id}, {when.date().isoformat()})",
            ]
            with ArchiveWriter(vdir / f"{old.name}-v{version}-{old.resolution}.zip") as writer:
                for (name, _, _), rec in tqdm(
                    list(zip(keep, records)),
                    desc=f"re-pack {old.name} v{version}",
                    unit="img",
                    disable=not progress,
                ):
                    writer.add(arc.read_bytes(name), rec, (arc.labels or {}).get(name))
                info = writer.finish(
                    lambda w: render_card(
                        card_facts(
                            records,
                            title=f"{old.name} v{version}",
                            date=when.date().isoformat(),
                            resolution=old.resolution,
                            mode=w.mode,
                            class_names=class_names,
                            history=history,
                            mirror_checked=bool(manifest.get("mirror_check")),
                        )
                    )
                )
            digest = selection_digest(records, old.resolution, labels_mode)
            extra = {"takedown": {"id": takedown_id, "removed": removed}}
            if manifest.get("mirror_check"):
                extra["mirror_check"] = manifest["mirror_check"]
            items = [(it.face_id, it.image_id) if it else (None, None) for _, _, it in keep]
            row = commit_version(
                ws,
                name=old.name,
                version=version,
                info=info,
                labels=labels_mode,
                class_names=class_names,
                parent=old,
                digest=digest,
                items=items,
                extra=extra,
            )
    return {
        "name": old.name,
        "version": version,
        "path": row.path,
        "sha256": info.sha256,
        "count": info.count,
        "removed": removed,
        "parent_version": old.version,
    }
