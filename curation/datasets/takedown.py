"""Takedown: remove a person's or a post's images from every dataset, now and later.

The images are marked `excluded` (no freeze selects them again) and the request is recorded before any
archive is touched, so an interrupted takedown still keeps them out of the future; running it again finishes
the job. Every dataset whose latest version holds them gets a new version without them, re-packed from that
archive's own PNGs (no re-alignment, so the other images stay bit-identical). Older versions are marked
superseded, and the training runs that used any affected version are listed so their owners can act.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.schema import DatasetItem, DatasetVersion, Image, Takedown, TrainingRun
from curation.datasets.archive import ArchiveWriter, open_archive, render_card
from curation.datasets.freeze import (
    card_facts,
    commit_version,
    dataset_lock,
    latest_version,
    new_version_dir,
    selection_digest,
)

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

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def find_images(
    session: Session, *, owner: str | None = None, image: str | None = None, post: str | None = None
) -> tuple[str, str, list[Image]]:
    """(kind, value, images) for exactly one selector; raises a clear error when it matches nothing."""
    given = [(k, v) for k, v in (("owner", owner), ("image", image), ("post", post)) if v]
    if len(given) != 1:
        raise GhostsError("name exactly one of --owner NAME, --image SHA256 or --post URL")
    kind, value = given[0]
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
    reason: str,
    purge: bool = False,  # also delete the archive files of the versions that held the images
    progress: bool = True,
) -> TakedownResult:
    if not reason or not reason.strip():
        raise GhostsError("--reason is required: say who asked and why (it is kept with the takedown record)")
    with ws.session() as s:
        kind, value, images = find_images(s, owner=owner, image=image, post=post)
        ids = [im.id for im in images]
        shas = {im.sha256 for im in images}
        row = Takedown(kind=kind, value=value, reason=reason.strip(), image_ids=ids)
        s.add(row)
        for im in images:
            im.status = "excluded"
        s.flush()
        result = TakedownResult(row.id, kind, value, sorted(shas))
        when = row.created_at

    with ws.session() as s:
        holding = s.scalars(
            select(DatasetVersion)
            .where(DatasetVersion.id.in_(select(DatasetItem.dataset_id).where(DatasetItem.image_id.in_(ids))))
            .order_by(DatasetVersion.name, DatasetVersion.version)
        ).all()
    note = f"takedown #{result.takedown_id}: {reason.strip()}"
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
    return result


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
