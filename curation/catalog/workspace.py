"""A workspace: one folder holding the catalog, the image store, previews, datasets and runs."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, unquote

from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from curation.catalog.errors import GhostsError, environment_message
from curation.catalog.schema import (
    MIGRATIONS_DIR,
    catalog_revision,
    head_revision,
    make_engine,
    upgrade_catalog,
)
from curation.catalog.settings import Settings
from curation.catalog.store import atomic_write_text, sweep_temp_files

MARKER = ".ghosts-workspace"
SUBDIRS = ("images", "previews", "datasets", "runs", "sessions", "scrape", "tmp")


@dataclass
class Workspace:
    root: Path
    settings: Settings = field(default_factory=Settings)
    read_only: bool = False  # opened by open_workspace(read_only=True): the catalog is opened read-only

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()

    images_dir = property(lambda self: self.root / "images")
    previews_dir = property(lambda self: self.root / "previews")
    datasets_dir = property(lambda self: self.root / "datasets")
    runs_dir = property(lambda self: self.root / "runs")
    sessions_dir = property(lambda self: self.root / "sessions")
    scrape_dir = property(lambda self: self.root / "scrape")
    tmp_dir = property(lambda self: self.root / "tmp")

    @property
    def db_url(self) -> str:
        url = self.settings.resolved_db_url(self.root)
        catalog = self.catalog_file_of(url)
        if self.read_only and catalog is not None:
            # Whatever form the SQLite URL had (the default URI, or a GHOSTS_DB_URL path): a read-only URI.
            url = f"sqlite:///file:{quote(str(catalog), safe='/')}?{_read_only_query(catalog)}&uri=true"
        return url

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.db_url, self.settings.lock_timeout, read_only=self.read_only)

    @staticmethod
    def catalog_file_of(url: str) -> Path | None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
            return None
        if parsed.query.get("uri") == "true" and parsed.database.startswith("file:"):
            return Path(unquote(parsed.database[len("file:") :]))
        return Path(parsed.database)

    @property
    def catalog_file(self) -> Path | None:
        """The SQLite file of the catalog, or None when the catalog is not an SQLite file."""
        return self.catalog_file_of(self.settings.resolved_db_url(self.root))

    @cached_property
    def _sessions(self) -> sessionmaker[Session]:
        return sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A catalog session that commits when the block succeeds and rolls back when it raises."""
        with self._sessions() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def abspath(self, rel: str | os.PathLike) -> Path:
        return self.root / rel

    def relpath(self, path: str | os.PathLike) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()


def init_workspace(root: str | os.PathLike | None = None, settings: Settings | None = None) -> Workspace:
    """Create the folders and the catalog (or upgrade an existing one); safe to run again.

    A failed init removes what it created (so nothing half-made is left for later commands to trip on), and
    init never creates an empty catalog beside an image store that already holds images."""
    settings = settings or Settings()
    ws = Workspace(Path(root) if root is not None else settings.data, settings)
    _check_makeable(ws.root)
    if ws.root.is_dir() and not _writable(ws):
        raise GhostsError(_read_only_message(ws))
    made: list[Path] = []
    try:
        for folder in reversed([ws.root, *ws.root.parents]):
            if not folder.exists():
                folder.mkdir()
                made.append(folder)
                break  # mkdir(parents=True) below makes the rest; removing the first one removes them all
        ws.root.mkdir(parents=True, exist_ok=True)
        _refuse_missing_catalog(ws)
        catalog = ws.catalog_file
        if catalog is not None and not catalog.exists():
            made.append(catalog)
        for sub in SUBDIRS:
            if not (ws.root / sub).exists():
                (ws.root / sub).mkdir()
                made.append(ws.root / sub)
        os.chmod(ws.sessions_dir, 0o700)  # Instagram session files live here
        _check_revision(ws)
        upgrade_catalog(ws.engine)
        atomic_write_text(ws.root / MARKER, "ghosts workspace\n")
    except BaseException as e:
        ws.close()
        for path in reversed(made):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                for extra in ("", "-wal", "-shm", "-journal"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{path}{extra}")
        if isinstance(e, GhostsError) or not isinstance(e, Exception):
            raise
        why = environment_message(e)
        if why is None and isinstance(e, OSError):
            why = f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")
        if why is None:
            raise
        raise GhostsError(f"cannot create a workspace at {ws.root}: {why}") from e
    return ws


def _writable(ws: Workspace) -> bool:
    catalog = ws.catalog_file
    return os.access(ws.root, os.W_OK) and not (
        catalog and catalog.exists() and not os.access(catalog, os.W_OK)
    )


def _read_only_message(ws: Workspace) -> str:
    return (
        f"the workspace {ws.root} is read-only and this command writes to it: make it writable, or copy "
        "the workspace somewhere writable (`ghosts status` reads a read-only workspace as it is)"
    )


def _read_only_query(catalog: Path | None) -> str:
    """SQLite URI parameters that open the catalog without writing a byte: `mode=ro`, and `immutable=1` when
    the folder is not writable and no write-ahead log is there (SQLite could neither make its -shm file nor
    need one: everything is in the main file). A log left beside it (a writer killed before its checkpoint)
    is read with mode=ro, so its last transactions are seen."""
    if catalog is None:
        return "mode=ro"
    wal = Path(f"{catalog}-wal")
    if not os.access(catalog.parent, os.W_OK) and not wal.exists():
        return "mode=ro&immutable=1"
    return "mode=ro"


def open_workspace(
    root: str | os.PathLike | None = None, settings: Settings | None = None, *, read_only: bool = False
) -> Workspace:
    """Open an initialised workspace, upgrading an older catalog schema in place.

    Every way the catalog can be unusable is one clear GhostsError: missing beside existing data (never
    recreated empty), damaged, from a newer ghosts, read-only, or locked by another process.

    `read_only` (for commands that only read, such as `ghosts status`): nothing is written, not even SQLite's
    lock files, so a read-only workspace (permissions, a read-only mount, a backup) can be looked at. A
    catalog whose schema is older is upgraded first when the workspace is writable; when it is not, that is a
    clear error. Writing to a read-only Workspace fails with the catalog's "read-only" message."""
    settings = settings or Settings()
    ws = Workspace(Path(root) if root is not None else settings.data, settings)
    if not (ws.root / MARKER).exists():
        raise GhostsError(f"no ghosts workspace at {ws.root}: run `ghosts init --data {ws.root}` first")
    _refuse_missing_catalog(ws)
    writable = _writable(ws)
    if read_only:
        if ws.catalog_file is not None and not ws.catalog_file.exists():
            raise GhostsError(
                f"the catalog {ws.catalog_file} is missing (the workspace holds no images or datasets): "
                f"run `ghosts init --data {ws.root}` to start an empty one"
            )
        ro = Workspace(ws.root, settings, read_only=True)
        rev = _opened(ro, lambda: _check_revision(ro))
        if rev == head_revision():
            return ro
        ro.close()
        if not writable:
            raise GhostsError(
                f"the catalog of the read-only workspace {ws.root} has an older schema (revision {rev}; this "
                f"ghosts needs {head_revision()}) and cannot be upgraded in place: make the workspace writable "
                "once, or copy it somewhere writable"
            )
    if not writable:
        raise GhostsError(_read_only_message(ws))

    def upgrade() -> None:
        if _check_revision(ws) != head_revision():
            upgrade_catalog(ws.engine)

    _opened(ws, upgrade)
    # A killed writer can leave temp files behind (the store, previews, datasets, runs); nothing refers to them.
    sweep_temp_files(ws.root)
    return ws


def _opened(ws: Workspace, fn):
    """fn() on a workspace being opened: an environment fault is a GhostsError, and the engine is closed."""
    try:
        return fn()
    except GhostsError:
        ws.close()
        raise
    except Exception as e:
        ws.close()
        why = environment_message(e)
        if why is None:
            raise
        raise GhostsError(f"cannot open the catalog of {ws.root}: {why}") from e


def _check_makeable(root: Path) -> None:
    """A clear error for a workspace path that cannot be a folder (a file, or a file above it)."""
    for folder in [root, *root.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise GhostsError(
                    f"cannot create a workspace at {root}: {folder} is a file, not a folder; choose another --data"
                )
            return


def _refuse_missing_catalog(ws: Workspace) -> None:
    catalog = ws.catalog_file
    if catalog is None or catalog.exists():
        return
    held = (
        next((p for p in ws.images_dir.rglob("*") if p.is_file()), None) if ws.images_dir.is_dir() else None
    )
    held = (
        held or next((p for p in ws.datasets_dir.rglob("*.zip")), None) if ws.datasets_dir.is_dir() else held
    )
    if held is not None:
        raise GhostsError(
            f"the catalog {catalog} is missing, but the workspace holds data ({ws.relpath(held)}, ...): restore "
            "catalog.sqlite from a backup; ghosts will not start an empty catalog beside existing images "
            "(to start over, move images/ and datasets/ away first)"
        )


def _check_revision(ws: Workspace) -> str | None:
    """The catalog's schema revision; a clear error for a damaged catalog or one from a newer ghosts."""
    try:
        rev = catalog_revision(ws.engine)
    except ValueError as e:
        raise GhostsError(f"the catalog {ws.catalog_file or ws.db_url} is damaged: {e}") from None
    except Exception as e:
        why = environment_message(e)
        if why is None:
            raise
        raise GhostsError(f"cannot open the catalog {ws.catalog_file or ws.db_url}: {why}") from e
    if rev is None or rev == head_revision():
        return rev
    # Imported here for start-up cost: Alembic is needed only for a catalog at another revision than ours.
    from alembic.script import ScriptDirectory
    from alembic.script.revision import RevisionError
    from alembic.util import CommandError

    try:
        ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(rev)
    except (RevisionError, CommandError):
        raise GhostsError(
            f"the catalog {ws.catalog_file or ws.db_url} was written by a newer ghosts (schema revision "
            f"{rev}; this one knows up to {head_revision()}): upgrade ghosts to open it"
        ) from None
    return rev
