"""Workspace settings, read from the environment with the GHOSTS_ prefix (e.g. GHOSTS_DATA, GHOSTS_DB_URL)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CATALOG = "catalog.sqlite"  # the default catalog's file name inside the workspace


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GHOSTS_", extra="ignore")

    data: Path = Field(Path("data"), description="Workspace folder (catalog, image store, datasets, runs).")
    db_url: str | None = Field(
        None, description="SQLAlchemy URL of the catalog; default: SQLite in the workspace."
    )
    # Decompression-bomb guard: Pillow warns at 89.5 MP; 100 MP covers any real camera or phone photo.
    max_pixels: int = Field(
        100_000_000, description="Images with more pixels than this are refused at ingest."
    )
    max_file_bytes: int = Field(
        2_000_000_000, gt=0, description="Local files larger than this are refused unread."
    )
    # pHash Hamming distance (of 64 bits) at or under which two images are linked as near duplicates.
    near_dup_distance: int = Field(6, ge=0, le=32)
    review_token: str | None = Field(
        None, description="Token the review app requires on a non-loopback host."
    )
    inception: Path | None = Field(None, description="Inception TorchScript file for FID/KID.")
    lock_timeout: float = Field(
        30.0, gt=0, description="Seconds a command waits for another process's write to the catalog."
    )

    def resolved_db_url(self, root: Path) -> str:
        # An SQLite URI filename, percent-quoted (SQLite decodes it), so any folder name a user can type
        # (spaces, é, # ? @ %) stays one path; a plain sqlite:///path URL cannot hold '?' or '#'.
        return (
            self.db_url or "sqlite:///file:" + quote(str((root / CATALOG).resolve()), safe="/") + "?uri=true"
        )
