import sqlite3

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from curation.catalog.schema import Base, catalog_revision, head_revision, make_engine, upgrade_catalog
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
