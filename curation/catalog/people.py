"""People as the review sees them: a reviewer's merges and splits, the per-person and per-owner caps, and
how many faces each person has and how many are accepted.

The grouping itself is analysis's (curation.analysis.identities clusters the faces); this module holds what
both analysis and the review page read and write in the catalog, so neither imports the other:

- merges and splits: a merge moves every face of some people to another, a split moves some faces of one
  person to a new one. They are authoritative: clustering never moves a face that has a person
  (identities.save_people writes only faces without one), new faces join whoever their neighbours belong
  to now, and a person merged away stays merged (its id is kept in the `people.merged` workspace setting,
  so a new face the clustering put with it while the merge was made goes to the person it was merged into).
- caps: `max_per_person` and `max_per_owner`, workspace settings (`ghosts people --max-per-person N`, or
  the review page), the numbers an auto-accept rule's `max_per_person=N` / `max_per_owner=N` stand for;
  the review counter shows the accepted faces of the largest person and account against them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.exc import IntegrityError

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Face, Image, Person, get_setting, set_setting, utcnow

log = logging.getLogger(__name__)

MERGED_SETTING = "people.merged"  # {"source person id": target person id}
CAP_SETTINGS = ("max_per_person", "max_per_owner")  # accepted faces at most per person / per account


class PeopleEditError(GhostsError):
    """A merge or split that cannot be done (an unknown person, faces of several people, ...)."""


def merged_into(session) -> dict[int, int]:
    """Every person merged away by a reviewer -> the person it was merged into."""
    raw = get_setting(session, MERGED_SETTING, {}) or {}
    return {int(k): int(v) for k, v in raw.items()} if isinstance(raw, dict) else {}


def resolve_person(merged: dict[int, int], person: int) -> int:
    """The person `person` now is: followed through merges (a chain ends within len(merged) steps)."""
    for _ in range(len(merged) + 1):
        if person not in merged:
            return person
        person = merged[person]
    return person


def _live_people(session, persons: Iterable[int]) -> dict[int, int]:
    """Live faces of each of these people (people with none are left out)."""
    return dict(
        session.execute(
            select(Face.person_id, func.count())
            .where(Face.person_id.in_(list(persons)), Face.deleted.is_(False))
            .group_by(Face.person_id)
        ).all()
    )


def merge_person(ws, sources: Iterable[int], target: int) -> int:
    """Every face of the `sources` people becomes person `target`'s; the sources are retired (their ids are
    never given again). Returns the faces moved."""
    sources = sorted({int(p) for p in sources} - {int(target)})
    if not sources:
        raise PeopleEditError("merge: name at least one other person to merge into this one")
    with ws.session() as s:
        live = _live_people(s, [*sources, target])
        missing = [p for p in (target, *sources) if p not in live]
        if missing:
            raise PeopleEditError(f"merge: no person {missing[0]} with faces in review")
        moved = s.execute(update(Face).where(Face.person_id.in_(sources)).values(person_id=target)).rowcount
        merged = {k: (target if v in sources else v) for k, v in merged_into(s).items()}
        merged.pop(target, None)
        merged |= {p: target for p in sources}
        set_setting(s, MERGED_SETTING, {str(k): v for k, v in sorted(merged.items())})
    log.info("merged people %s into %s (%d faces)", sources, target, moved)
    return moved


def split_person(ws, face_ids: Iterable[int]) -> tuple[int, int]:
    """Move these faces (live, all of one person, not all of its faces) out into a new person; returns
    (the new person's id, the person they left)."""
    wanted = sorted({int(f) for f in face_ids})
    if not wanted:
        raise PeopleEditError("split: select the faces to move out into a new person")
    tries = 5
    while True:
        tries -= 1
        try:
            with ws.session() as s:
                rows = s.execute(
                    select(Face.id, Face.person_id).where(Face.id.in_(wanted), Face.deleted.is_(False))
                ).all()
                if len(rows) != len(wanted):
                    gone = sorted(set(wanted) - {r.id for r in rows})
                    raise PeopleEditError(f"split: no face {gone[0]} in review")
                owners = {r.person_id for r in rows}
                if None in owners:
                    raise PeopleEditError("split: some of these faces are not grouped yet (ghosts people)")
                if len(owners) > 1:
                    raise PeopleEditError(
                        f"split: the faces belong to {len(owners)} people ({', '.join(map(str, sorted(owners)))}); "
                        "split one person at a time"
                    )
                old = owners.pop()
                if _live_people(s, [old]).get(old, 0) == len(wanted):
                    raise PeopleEditError(
                        f"split: these are all the faces of person {old}; leave some behind"
                    )
                new = (s.scalar(select(func.max(Person.id))) or 0) + 1
                s.add(Person(id=new, created_at=utcnow()))
                s.flush()
                s.execute(update(Face).where(Face.id.in_(wanted)).values(person_id=new))
            log.info("split %d faces off person %s into person %s", len(wanted), old, new)
            return new, old
        except IntegrityError:  # a clustering run took the same new id at the same moment: pick again
            if not tries:
                raise


# --- counts ----------------------------------------------------------------------------------------------

# A face in review: not deleted, its photo neither taken down nor gone (the faces auto-accept counts).
LIVE = (Face.deleted.is_(False), Image.status != "excluded", Image.path.is_not(None))


@dataclass
class PersonCounts:
    id: int
    faces: int
    accepted: int
    rejected: int
    skipped: int
    undecided: int
    owners: int  # accounts whose photos show this person
    cover: int  # the best-scoring face, shown for the person

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def people_counts(session, persons: Iterable[int] | None = None) -> list[PersonCounts]:
    """Faces in review of each person (all people, or these), and how many of them are accepted; the people
    with the most faces first."""
    decision = {
        d: func.sum(case((Face.decision == d, 1), else_=0)) for d in ("accepted", "rejected", "skipped")
    }
    q = (
        select(
            Face.person_id,
            func.count(Face.id),
            *decision.values(),
            func.count(func.distinct(func.lower(Image.owner))),
        )
        .join(Image, Image.id == Face.image_id)
        .where(*LIVE, Face.person_id.is_not(None))
        .group_by(Face.person_id)
    )
    covers = select(Face.person_id, Face.id).join(Image, Image.id == Face.image_id).where(*LIVE)
    if persons is not None:
        wanted = sorted({int(p) for p in persons})
        q = q.where(Face.person_id.in_(wanted))
        covers = covers.where(Face.person_id.in_(wanted))
    else:
        covers = covers.where(Face.person_id.is_not(None))
    cover: dict[int, int] = {}
    for pid, fid in session.execute(covers.order_by(Face.score.desc().nulls_last(), Face.id)):
        cover.setdefault(pid, fid)
    out = [
        PersonCounts(
            id=pid,
            faces=n,
            accepted=int(a or 0),
            rejected=int(r or 0),
            skipped=int(k or 0),
            undecided=n - int(a or 0) - int(r or 0) - int(k or 0),
            owners=int(o or 0),
            cover=cover[pid],
        )
        for pid, n, a, r, k, o in session.execute(q)
    ]
    return sorted(out, key=lambda p: (-p.faces, p.id))


def ungrouped_faces(session) -> int:
    """Faces in review that have no person yet (no descriptor, or not clustered yet)."""
    return (
        session.scalar(
            select(func.count(Face.id))
            .join(Image, Image.id == Face.image_id)
            .where(*LIVE, Face.person_id.is_(None))
        )
        or 0
    )


# --- caps ------------------------------------------------------------------------------------------------


def get_caps(session) -> dict[str, int | None]:
    """The workspace's caps (None: no cap)."""
    out: dict[str, int | None] = {}
    for key in CAP_SETTINGS:
        v = get_setting(session, key)
        out[key] = v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None
    return out


def set_caps(session, **caps: int | None) -> dict[str, int | None]:
    """Set some caps (None clears one); a cap is a whole number of at least 1."""
    for key, value in caps.items():
        if key not in CAP_SETTINGS:
            raise GhostsError(f"unknown cap {key!r}: use {', '.join(CAP_SETTINGS)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise GhostsError(f"{key} must be a whole number of at least 1 (or none), got {value!r}")
        set_setting(session, key, value)
    return get_caps(session)


def caps_status(session, top: int = 3) -> dict[str, Any]:
    """Accepted faces of the largest people and accounts against the caps, and every one above its cap.
    Owners are counted case-blind; faces without a person or owner are nobody's (they count toward no cap,
    as auto-accept counts each of them as its own)."""
    caps = get_caps(session)
    rows = session.execute(
        select(Face.person_id, func.lower(Image.owner))
        .join(Image, Image.id == Face.image_id)
        .where(*LIVE, Face.decision == "accepted")
    ).all()
    per: dict[str, dict] = {"person": {}, "owner": {}}
    for pid, owner in rows:
        if pid is not None:
            per["person"][pid] = per["person"].get(pid, 0) + 1
        if owner:
            per["owner"][owner] = per["owner"].get(owner, 0) + 1
    out: dict[str, Any] = {"accepted": len(rows), **caps}
    for kind, cap in (("person", caps["max_per_person"]), ("owner", caps["max_per_owner"])):
        ranked = sorted(per[kind].items(), key=lambda kv: (-kv[1], kv[0]))  # ids or names: one type a kind
        out[f"top_{kind}s"] = [[k, n] for k, n in ranked[:top]]
        out[f"over_{kind}"] = [[k, n] for k, n in ranked if cap is not None and n > cap]
    return out
