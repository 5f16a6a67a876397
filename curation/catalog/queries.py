"""The catalog's "first row in this order" query, written once: the newest version of an archive, the open
round, a face's decision before a given one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select


def first_row(session, query: Select, *order_by) -> Any | None:
    """The first row `query` gives sorted by `order_by` (e.g. `Model.id.desc()` for the newest), or None.
    LIMIT 1: the database stops at that row instead of sorting out and sending the rest."""
    return session.scalars(query.order_by(*order_by).limit(1)).first()
