"""Auto-accept: a written rule that takes the place of the human review step, for demos and re-runs.

A rule is a comma-separated list of clauses, e.g. ``"score>=0.6,max=200"``:

- ``MEASURE OP NUMBER`` with OP one of ``>= <= > < ==`` and MEASURE a numeric quality column of a face
  (``score det_score blur roll yaw eye_dist quad_size padding``). A face whose measure is unknown fails the
  clause. All clauses must hold.
- ``max=N``: the selection holds at most N accepted faces in all, counting faces accepted before (by a
  person or an earlier auto-accept), so running the same rule again accepts nothing new. The best faces by
  score are taken first.
- ``max_per_person=N`` / ``max_per_owner=N``: at most N accepted faces of one person (as grouped by
  curation.analysis.identities; faces not grouped yet count as people of their own) or of one account,
  counting faces accepted before, so no one person or account fills the dataset. A cap the rule does not
  name is the workspace's (`ghosts people --max-per-person N`, curation.catalog.people); the rule's wins.
- ``flagged=no`` leaves out faces flagged for a closer look (under the workspace's target size); ``flagged=any``
  (the default) does not look at the flags.

Only live, undecided faces of images still in the catalog's store are candidates: a person's decision is
never overwritten, and faces that fail the rule stay undecided for a later review. The decisions go through
the review's own `decide`, as one batch by the reviewer ``auto-accept``, so they can be audited and undone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select

from curation.catalog.errors import GhostsError
from curation.catalog.flags import flagged_condition, thresholds_for
from curation.catalog.people import get_caps
from curation.catalog.schema import Face, Image
from curation.review.decisions import MAX_BATCH, decide

REVIEWER = "auto-accept"
REASON = "auto-accept"
MEASURES = ("score", "det_score", "blur", "roll", "yaw", "eye_dist", "quad_size", "padding")
OPERATORS = (">=", "<=", "==", ">", "<")  # two-character operators first, so ">=" is not read as ">"
FLAGGED = ("any", "no")
CAPS = ("max_per_person", "max_per_owner")
CLAUSE_RE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|>|<|=)\s*(\S+)\s*$")


class RuleError(GhostsError):
    """An --auto-accept rule that cannot be read."""


@dataclass(frozen=True)
class Condition:
    measure: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.measure}{self.op}{self.value:g}"

    def column_test(self):
        col = getattr(Face, self.measure)
        return {
            ">=": col >= self.value,
            "<=": col <= self.value,
            ">": col > self.value,
            "<": col < self.value,
            "==": col == self.value,
        }[self.op]


@dataclass(frozen=True)
class AcceptRule:
    conditions: tuple[Condition, ...] = ()
    max_faces: int | None = None
    flagged: str = "any"
    max_per_person: int | None = None
    max_per_owner: int | None = None

    def __str__(self) -> str:
        parts = [str(c) for c in self.conditions]
        if self.max_faces is not None:
            parts.append(f"max={self.max_faces}")
        for key in CAPS:
            if getattr(self, key) is not None:
                parts.append(f"{key}={getattr(self, key)}")
        if self.flagged != "any":
            parts.append(f"flagged={self.flagged}")
        return ",".join(parts)


@dataclass
class AutoAcceptResult:
    rule: str
    candidates: int  # undecided live faces that satisfied the conditions
    accepted_before: int  # faces already accepted when the rule ran
    accepted: list[int] = field(default_factory=list)  # face ids accepted now

    @property
    def accepted_total(self) -> int:
        return self.accepted_before + len(self.accepted)

    def as_dict(self) -> dict:
        return {
            "rule": self.rule,
            "candidates": self.candidates,
            "accepted_before": self.accepted_before,
            "accepted_now": len(self.accepted),
            "accepted_total": self.accepted_total,
        }


def parse_rule(text: str) -> AcceptRule:
    """Read a rule like ``"score>=0.6,max=200"``; raises RuleError naming the clause that is wrong."""
    if text is None or not text.strip():
        raise RuleError('--auto-accept needs a rule, e.g. "score>=0.6,max=200"')
    conditions: list[Condition] = []
    max_faces: int | None = None
    flagged: str | None = None
    caps: dict[str, int] = {}
    for raw in text.split(","):
        clause = raw.strip()
        if not clause:
            raise RuleError(
                f"--auto-accept {text!r}: empty clause (two commas in a row, or a trailing comma?)"
            )
        m = CLAUSE_RE.match(clause.lower())
        if not m:
            raise RuleError(
                f"--auto-accept: cannot read {clause!r}; write MEASURE>=NUMBER, max=N or flagged=no"
            )
        key, op, value = m.groups()
        if key == "max":
            if op != "=" or max_faces is not None:
                raise RuleError(f"--auto-accept: {clause!r}: write max=N once (N faces at most)")
            if not value.isdigit() or int(value) < 1:
                raise RuleError(f"--auto-accept: {clause!r}: max must be a whole number of at least 1")
            max_faces = int(value)
        elif key in CAPS:
            if op != "=" or key in caps or not value.isdigit() or int(value) < 1:
                raise RuleError(
                    f"--auto-accept: {clause!r}: write {key}=N once, N a whole number of at least 1"
                )
            caps[key] = int(value)
        elif key == "flagged":
            if op != "=" or flagged is not None or value not in FLAGGED:
                raise RuleError(f"--auto-accept: {clause!r}: write flagged=no or flagged=any, once")
            flagged = value
        elif key in MEASURES:
            if op == "=":
                raise RuleError(
                    f"--auto-accept: {clause!r}: compare with >=, <=, >, < or == ('=' is for max)"
                )
            try:
                number = float(value)
            except ValueError:
                raise RuleError(f"--auto-accept: {clause!r}: {value!r} is not a number") from None
            if not math.isfinite(number):
                raise RuleError(f"--auto-accept: {clause!r}: the number must be finite")
            conditions.append(Condition(key, op, number))
        else:
            raise RuleError(
                f"--auto-accept: unknown measure {key!r} in {clause!r}; use one of "
                f"{', '.join(MEASURES)}, or max=N, max_per_person=N, max_per_owner=N, flagged=no"
            )
    if not conditions and max_faces is None and flagged is None and not caps:
        raise RuleError(f"--auto-accept {text!r}: the rule says nothing")
    return AcceptRule(tuple(conditions), max_faces, flagged or "any", **caps)


def apply_rule(ws, rule: AcceptRule | str) -> AutoAcceptResult:
    """Accept the undecided faces that satisfy `rule` (best score first, up to its max); return what it did."""
    if isinstance(rule, str):
        rule = parse_rule(rule)
    live = (Face.deleted.is_(False), Image.status != "excluded", Image.path.is_not(None))
    with ws.session() as s:
        workspace_caps = get_caps(s)  # the caps the rule leaves out
        rule = replace(
            rule, **{k: v for k, v in workspace_caps.items() if getattr(rule, k) is None and v is not None}
        )
        before = (
            s.scalar(
                select(func.count())
                .select_from(Face)
                .join(Image, Face.image_id == Image.id)
                .where(*live, Face.decision == "accepted")
            )
            or 0
        )
        query = (
            select(Face.id)
            .join(Image, Face.image_id == Image.id)
            .where(*live, Face.decision == "undecided", *(c.column_test() for c in rule.conditions))
        )
        if rule.flagged == "no":
            query = query.where(~flagged_condition(thresholds_for(s)))  # flags at the workspace's target size
        # Best first: score descending with unknown scores last, then the oldest face (a stable order).
        ids = list(s.scalars(query.order_by(Face.score.is_(None), Face.score.desc(), Face.id)))
        if rule.max_per_person is not None or rule.max_per_owner is not None:
            ids = _within_caps(s, ids, rule, live)
    room = len(ids) if rule.max_faces is None else max(rule.max_faces - before, 0)
    chosen = ids[:room]
    result = AutoAcceptResult(str(rule), candidates=len(ids), accepted_before=before)
    for start in range(0, len(chosen), MAX_BATCH):  # decide takes at most MAX_BATCH faces per batch
        batch = decide(ws, chosen[start : start + MAX_BATCH], "accepted", REVIEWER, REASON)
        result.accepted += [c.face_id for c in batch.changes]
    return result


def _within_caps(session, ids: list[int], rule: AcceptRule, live) -> list[int]:
    """The candidates (best first) that keep every person and account within the rule's caps, counting the
    faces accepted before."""

    def keys(face_id, person, owner):
        return (
            ("person", person if person is not None else f"face {face_id}"),
            ("owner", owner.lower() if owner else f"face {face_id}"),
        )

    caps = {"person": rule.max_per_person, "owner": rule.max_per_owner}
    held: dict[tuple[str, object], int] = {}
    for row in session.execute(
        select(Face.id, Face.person_id, Image.owner)
        .join(Image, Face.image_id == Image.id)
        .where(*live, Face.decision == "accepted")
    ):
        for k in keys(*row):
            held[k] = held.get(k, 0) + 1
    info = {}
    for start in range(0, len(ids), 500):
        info |= {
            r[0]: r
            for r in session.execute(
                select(Face.id, Face.person_id, Image.owner)
                .join(Image, Face.image_id == Image.id)
                .where(Face.id.in_(ids[start : start + 500]))
            )
        }
    out = []
    for face_id in ids:
        ks = keys(*info[face_id])
        if all(caps[k[0]] is None or held.get(k, 0) < caps[k[0]] for k in ks):
            out.append(face_id)
            for k in ks:
                held[k] = held.get(k, 0) + 1
    return out
