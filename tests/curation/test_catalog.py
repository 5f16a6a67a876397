import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, select

from curation.catalog.runs import claim_training_run
from curation.catalog.schema import (
    Base,
    DatasetVersion,
    TrainingRun,
    catalog_revision,
    head_revision,
    make_engine,
    upgrade_catalog,
)
from curation.catalog.workspace import init_workspace, open_workspace


def test_migrations_build_exactly_the_models(tmp_path):
    # A model change without a migration would make this fail: the schema history is the source of truth.
    engine = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    upgrade_catalog(engine)
    assert catalog_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []
    assert {
        "images",
        "faces",
        "decisions",
        "review_rounds",
        "dataset_versions",
        "dataset_items",
        "training_runs",
        "takedowns",
        "near_duplicates",
    } <= set(inspect(engine).get_table_names())


def test_sqlite_catalog_is_in_wal_mode(workspace):
    with workspace.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_old_catalog_is_upgraded_on_open(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    db = ws.root / "catalog.sqlite"
    ws.close()
    # Pretend the catalog predates the current head: stamp it back to base with no tables.
    con = sqlite3.connect(db)
    for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
        con.execute(f"DROP TABLE {name}")
    con.commit()
    con.close()
    ws2 = open_workspace(tmp_path / "ws")
    assert catalog_revision(ws2.engine) == head_revision()
    assert "images" in inspect(ws2.engine).get_table_names()


def test_db_url_setting_points_the_catalog_elsewhere(tmp_path, monkeypatch):
    from curation.catalog.settings import Settings

    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    monkeypatch.setenv("GHOSTS_DB_URL", url)
    ws = init_workspace(tmp_path / "ws", Settings())
    assert ws.db_url == url and (tmp_path / "elsewhere.sqlite").exists()
    assert not (tmp_path / "ws" / "catalog.sqlite").exists()


def test_training_run_is_tied_to_the_newest_version_of_its_archive(workspace):
    # The same archive frozen twice (a version superseded, then frozen again): the run names the newest row.
    with workspace.session() as s:
        for version in (1, 2):
            s.add(
                DatasetVersion(
                    name="d", version=version, resolution=64, path=f"v{version}", sha256="a" * 64, count=1
                )
            )
        s.add(DatasetVersion(name="other", version=1, resolution=64, path="o", sha256="b" * 64, count=1))
        s.commit()
    unowned = {"cfg": "auto", "kimg": 1, "options": {}, "owner": None, "owner_alive": lambda _: False}
    claims = {  # c: an archive frozen elsewhere
        sha: claim_training_run(workspace, sha256=sha, outdir=workspace.runs_dir / sha[:1], **unowned)
        for sha in ("a" * 64, "c" * 64)
    }
    with workspace.session() as s:
        tied = {sha[:1]: s.get(TrainingRun, c.run_id).dataset_id for sha, c in claims.items()}
        newest = s.scalars(
            select(DatasetVersion.id).where(DatasetVersion.name == "d", DatasetVersion.version == 2)
        ).one()
    assert tied == {"a": newest, "c": None}


def test_head_revision_is_the_migrations_head():
    # HEAD_REVISION lets a current catalog open without Alembic; a new migration must move it.
    from alembic.script import ScriptDirectory

    from curation.catalog.schema import HEAD_REVISION, MIGRATIONS_DIR

    assert ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head() == HEAD_REVISION == head_revision()


def test_a_catalog_one_migration_behind_is_upgraded_on_open(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    engine = make_engine(f"sqlite:///{tmp_path / 'ws' / 'catalog.sqlite'}")
    from alembic import command

    from curation.catalog.schema import _alembic_config

    cfg = _alembic_config(engine)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "-1")
    assert catalog_revision(engine) not in (None, head_revision())
    engine.dispose()
    ws2 = open_workspace(tmp_path / "ws")
    assert catalog_revision(ws2.engine) == head_revision()


def _record_revisions(db, *revs):
    con = sqlite3.connect(db)
    con.execute("DELETE FROM alembic_version")
    con.executemany("INSERT INTO alembic_version (version_num) VALUES (?)", [(r,) for r in revs])
    con.commit()
    con.close()


def test_a_catalog_from_a_newer_ghosts_or_with_two_revisions_is_refused_clearly(tmp_path):
    from curation.catalog.errors import GhostsError

    ws = init_workspace(tmp_path / "ws")
    ws.close()
    _record_revisions(tmp_path / "ws" / "catalog.sqlite", "9999")
    with pytest.raises(GhostsError, match=r"written by a newer ghosts \(schema revision 9999"):
        open_workspace(tmp_path / "ws")
    _record_revisions(tmp_path / "ws" / "catalog.sqlite", "0002", "0003")
    with pytest.raises(
        GhostsError, match="is damaged: the catalog records several schema revisions: 0002, 0003"
    ):
        open_workspace(tmp_path / "ws")


def test_a_current_catalog_opens_without_loading_alembic(tmp_path):
    ws = init_workspace(tmp_path / "ws")
    ws.close()
    code = (
        "import sys\n"
        "from curation.catalog.workspace import open_workspace\n"
        f"open_workspace({str(tmp_path / 'ws')!r}).close()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
