"""User-facing errors. The CLI prints the message of a GhostsError and exits 1; library code never exits.

`environment_message` turns the faults of the machine a command runs on (a full disk, a read-only folder, a
catalog another process holds locked, a damaged catalog file) into that one line as well, so the CLI's top-level
handler can report them without a traceback. The code that writes keeps the state consistent (atomic renames,
catalog transactions); the message only says what happened and what to do.
"""

from __future__ import annotations

import errno


class GhostsError(Exception):
    """An error whose message tells the user what went wrong and what to do about it."""


_OS_FAULTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "a file grew past the largest size allowed here (the file system's, or `ulimit -f`)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "the file name is too long",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EIO: "an input/output error (a failing disk or a lost network mount)",
    errno.EMFILE: "too many open files",
}

# SQLite's messages (sqlite3.OperationalError / DatabaseError, wrapped by SQLAlchemy) -> what they mean here.
_SQLITE_FAULTS = (
    (
        "database is locked",
        (
            "the catalog is locked by another ghosts process (or a program holding it open); "
            "wait for it to finish, or raise GHOSTS_LOCK_TIMEOUT"
        ),
    ),
    ("database table is locked", ("the catalog is locked by another ghosts process; wait for it to finish")),
    (
        "readonly database",
        ("the catalog is read-only: make the workspace folder and catalog.sqlite writable"),
    ),
    (
        "database or disk is full",
        (
            "the disk holding the catalog is full: free some space and run the command "
            "again (the catalog was left as it was before the command)"
        ),
    ),
    (
        "unable to open database file",
        (
            "the catalog cannot be opened: check that the workspace folder exists "
            "and is writable (SQLite writes its lock files beside the catalog)"
        ),
    ),
    (
        "file is not a database",
        ("the catalog file is damaged (not an SQLite database): restore catalog.sqlite from a backup"),
    ),
    (
        "database disk image is malformed",
        ("the catalog file is damaged: restore catalog.sqlite from a backup"),
    ),
    ("disk i/o error", ("the disk returned an input/output error while the catalog was written")),
)


def environment_message(exc: BaseException) -> str | None:
    """One line for an environment fault (OSError, an SQLite error, or one wrapping them); None otherwise."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _OS_FAULTS:
            where = f": {e.filename}" if e.filename else ""
            return f"{_OS_FAULTS[e.errno]}{where}"
        text = str(getattr(e, "orig", None) or e).lower()
        if type(e).__module__.startswith(("sqlite3", "sqlalchemy")):
            for needle, message in _SQLITE_FAULTS:
                if needle in text:
                    return message
        e = getattr(e, "orig", None) or e.__cause__ or e.__context__
    return None
