import sqlite3

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
