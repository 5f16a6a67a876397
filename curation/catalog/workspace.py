"""A workspace: one folder holding the catalog, the image store, previews, datasets and runs."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from curation.catalog.errors import GhostsError
from curation.catalog.schema import catalog_revision, head_revision, make_engine, upgrade_catalog
from curation.catalog.settings import Settings
from curation.catalog.store import sweep_temp_files

MARKER = ".ghosts-workspace"
SUBDIRS = ("images", "previews", "datasets", "runs", "sessions", "scrape", "tmp")


@dataclass
class Workspace:
    root: Path
    settings: Settings = field(default_factory=Settings)

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
        return self.settings.resolved_db_url(self.root)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.db_url)

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
    """Create the folders and the catalog (or upgrade an existing one); safe to run again."""
    settings = settings or Settings()
    ws = Workspace(Path(root) if root is not None else settings.data, settings)
    ws.root.mkdir(parents=True, exist_ok=True)
    for sub in SUBDIRS:
        (ws.root / sub).mkdir(exist_ok=True)
    os.chmod(ws.sessions_dir, 0o700)  # Instagram session files live here
    upgrade_catalog(ws.engine)
    (ws.root / MARKER).write_text("ghosts workspace\n")
    return ws


def open_workspace(root: str | os.PathLike | None = None, settings: Settings | None = None) -> Workspace:
    """Open an initialised workspace, upgrading an older catalog schema in place."""
    settings = settings or Settings()
    ws = Workspace(Path(root) if root is not None else settings.data, settings)
    if not (ws.root / MARKER).exists():
        raise GhostsError(f"no ghosts workspace at {ws.root}: run `ghosts init --data {ws.root}` first")
    if catalog_revision(ws.engine) != head_revision():
        upgrade_catalog(ws.engine)
    # A killed writer can leave temp files behind; nothing refers to them.
    sweep_temp_files(ws.tmp_dir)
    sweep_temp_files(ws.images_dir)
    return ws
