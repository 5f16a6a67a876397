"""Workspace settings, read from the environment with the GHOSTS_ prefix (e.g. GHOSTS_DATA, GHOSTS_DB_URL).

Each setting is one field of `Settings`: its type, default, bounds and meaning. `Settings()` reads the variable
GHOSTS_<FIELD> (in any case) for every field not given as an argument; an empty variable counts as unset for
the optional ones. A value that does not parse, or lies outside its bounds, is one clear error that names the
variable. Plain Python rather than pydantic-settings: every command that opens a workspace starts here, and
pydantic's import alone was about 130 ms of each such command's start-up.
"""

from __future__ import annotations

import dataclasses
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from curation.catalog.errors import GhostsError

CATALOG = "catalog.sqlite"  # the default catalog's file name inside the workspace
PREFIX = "GHOSTS_"

_UNSET: Any = object()  # a field left to the environment (or to its default)


def _setting(default: Any, help: str, *, above: float | None = None, low: float | None = None, high=None):
    """A field read from GHOSTS_<NAME>: `default` when the variable is unset; numbers must be > `above` and
    within [`low`, `high`]."""
    meta = {"default": default, "help": help, "above": above, "low": low, "high": high}
    return dataclasses.field(default=_UNSET, metadata=meta)


@dataclass(frozen=True)
class Settings:
    data: Path = _setting(Path("data"), "Workspace folder (catalog, image store, datasets, runs).")
    db_url: str | None = _setting(None, "SQLAlchemy URL of the catalog; default: SQLite in the workspace.")
    # Decompression-bomb guard: Pillow warns at 89.5 MP; 100 MP covers any real camera or phone photo.
    max_pixels: int = _setting(
        100_000_000, "Images with more pixels than this are refused at ingest.", above=0
    )
    max_file_bytes: int = _setting(2_000_000_000, "Local files larger than this are refused unread.", above=0)
    # pHash Hamming distance (of 64 bits) at or under which two images are linked as near duplicates.
    near_dup_distance: int = _setting(6, "Near-duplicate pHash distance (0-32).", low=0, high=32)
    review_token: str | None = _setting(None, "Token the review app requires on a non-loopback host.")
    inception: Path | None = _setting(None, "Inception TorchScript file for FID/KID.")
    lock_timeout: float = _setting(
        30.0, "Seconds a command waits for another process's write to the catalog.", above=0
    )

    def __post_init__(self) -> None:
        env = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith(PREFIX)}
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is not _UNSET:
                continue
            var = PREFIX + f.name.upper()
            raw = env.get(var)
            value = f.metadata["default"] if raw is None else _parse(var, raw, hints[f.name], f.metadata)
            object.__setattr__(self, f.name, value)

    def resolved_db_url(self, root: Path) -> str:
        # An SQLite URI filename, percent-quoted (SQLite decodes it), so any folder name a user can type
        # (spaces, é, # ? @ %) stays one path; a plain sqlite:///path URL cannot hold '?' or '#'.
        return (
            self.db_url or "sqlite:///file:" + quote(str((root / CATALOG).resolve()), safe="/") + "?uri=true"
        )


_KINDS = {int: "a whole number", float: "a number", Path: "a path", str: "text"}


def _parse(var: str, raw: str, hint: Any, meta: dict) -> Any:
    """The value of environment variable `var` as type `hint` (X or X | None), within the field's bounds."""
    args = typing.get_args(hint)
    optional = type(None) in args
    kind = next(a for a in args if a is not type(None)) if optional else hint
    if optional and raw.strip() == "":
        return None
    try:
        value = kind(raw.strip()) if kind in (int, float) else kind(raw)
    except ValueError:
        raise GhostsError(f"environment variable {var}={raw!r}: expected {_KINDS[kind]}") from None
    if kind in (int, float):
        if not math.isfinite(value):
            raise GhostsError(f"environment variable {var}={raw!r}: expected a finite number")
        above, low, high = meta["above"], meta["low"], meta["high"]
        if above is not None and not value > above:
            raise GhostsError(f"environment variable {var}={raw!r}: must be more than {above}")
        if (low is not None and value < low) or (high is not None and value > high):
            raise GhostsError(f"environment variable {var}={raw!r}: must be from {low} to {high}")
    return value
