"""The Alembic history builds, step by step up and down, exactly the SQLite schema it built when
catalog_schema.json was recorded: a change to how the migration scripts are written (shared column and
index helpers) must not change a single table, index or constraint they create or drop.

Regenerate the record only for a deliberate schema change (a new revision):
    RECORD_CATALOG_SCHEMA=1 .venv/bin/python -m pytest -q tests/curation/test_migration_schema.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from alembic import command

from curation.catalog.schema import _alembic_config, make_engine

RECORD = Path(__file__).parent / "data" / "catalog_schema.json"

# Each step: (alembic command, target revision); the schema is read after every one.
STEPS = [
    ("upgrade", "0001"),
    ("upgrade", "0002"),
    ("upgrade", "0003"),
    ("downgrade", "0002"),
    ("downgrade", "0001"),
    ("downgrade", "base"),
]


def _schema(engine) -> list[list[str]]:
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT type, name, tbl_name, sql FROM sqlite_master "
            "WHERE tbl_name != 'alembic_version' ORDER BY type, name"
        ).all()
    return [[t, n, tbl, sql or ""] for t, n, tbl, sql in rows]


def _walk(tmp_path) -> dict[str, list[list[str]]]:
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    cfg = _alembic_config(engine)
    seen = {}
    for verb, rev in STEPS:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, verb)(cfg, rev)
        seen[f"{verb} {rev}"] = _schema(engine)
    engine.dispose()
    return seen


def test_migrations_build_the_recorded_schema_at_every_step(tmp_path):
    seen = _walk(tmp_path)
    if os.environ.get("RECORD_CATALOG_SCHEMA"):
        RECORD.write_text(json.dumps(seen, indent=1) + "\n")
    recorded = json.loads(RECORD.read_text())
    assert list(seen) == list(recorded)
    for step in recorded:
        assert seen[step] == recorded[step], step
    assert seen["upgrade 0003"] and seen["downgrade base"] == []
