"""Instagram sessions: log in once (password and two-factor, or a browser's cookies) and keep the cookies.

A session is the cookie jar of a logged-in Instagram account. It is stored as JSON (never pickle, unlike
instaloader's own session files) under the workspace's `sessions/` folder, which is mode 0700, in a file of
mode 0600. Nothing here ever logs a cookie value or a password.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import instaloader
from instaloader.exceptions import (
    BadCredentialsException,
    ConnectionException,
    LoginException,
    TwoFactorAuthRequiredException,
)

from curation.catalog.errors import GhostsError
from curation.catalog.store import atomic_write_bytes

log = logging.getLogger("ghosts.instagram")

# Instagram usernames: letters, digits, '.' and '_' (this also keeps them safe as file names).
USERNAME_RE = re.compile(r"^[A-Za-z0-9._]{1,30}$")
# Browsers whose cookie stores need the optional browser_cookie3 package (Firefox is read directly).
OTHER_BROWSERS = (
    "brave",
    "chrome",
    "chromium",
    "edge",
    "librewolf",
    "opera",
    "opera_gx",
    "safari",
    "vivaldi",
)
BROWSERS = ("firefox", *OTHER_BROWSERS)


class LoginFailed(GhostsError):
    """Logging in to Instagram did not work; the message says what to try instead."""


def check_username(username: str) -> str:
    name = (username or "").strip().lstrip("@")
    if not USERNAME_RE.match(name) or name.strip(".") == "":
        raise GhostsError(f"not an Instagram username: {username!r} (letters, digits, '.' and '_' only)")
    return name.lower()


def session_path(ws, username: str) -> Path:
    return ws.sessions_dir / f"{check_username(username)}.json"


def saved_sessions(ws) -> list[str]:
    """Usernames with a saved session in this workspace."""
    if not ws.sessions_dir.exists():
        return []
    return sorted(p.stem for p in ws.sessions_dir.glob("*.json") if USERNAME_RE.match(p.stem))


def save_session(ws, loader: instaloader.Instaloader, method: str) -> Path:
    """Write the logged-in loader's cookies to `sessions/<user>.json` (0600, atomically)."""
    username = check_username(loader.context.username or "")
    path = session_path(ws, username)
    ws.sessions_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ws.sessions_dir, 0o700)
    doc = {
        "username": username,
        "method": method,
        "saved_at": dt.datetime.now(dt.UTC).isoformat(),
        "instaloader_version": instaloader.__version__,
        "cookies": loader.save_session(),
    }
    # mkstemp creates the temp file 0600 and os.replace keeps that mode: the cookies are never world-readable,
    # not even for the instant before a chmod.
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode("utf-8"))
    os.chmod(path, 0o600)
    log.info("saved the Instagram session of %s to %s", username, path)
    return path


def load_session(ws, loader: instaloader.Instaloader, username: str) -> None:
    """Put the saved session of `username` into `loader`; a clear error when there is none."""
    path = session_path(ws, username)
    if not path.exists():
        raise GhostsError(
            f"no saved Instagram session for {username} in {ws.sessions_dir}: run `ghosts login {username}` "
            f"(or `ghosts login {username} --cookies firefox` after logging in with Firefox)"
        )
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o600)  # someone loosened it; cookies are as good as a password
    try:
        doc = json.loads(path.read_text("utf-8"))
        cookies = doc["cookies"]
        if not isinstance(cookies, dict) or "csrftoken" not in cookies:
            raise ValueError("no csrftoken cookie")
    except (ValueError, KeyError, TypeError) as e:
        raise GhostsError(
            f"the session file {path} is damaged ({e}): run `ghosts login {username}` again"
        ) from e
    loader.load_session(doc.get("username", check_username(username)), cookies)


def choose_session(ws, username: str | None) -> str | None:
    """The session to scrape with: the one named, else the only one saved, else none (anonymous)."""
    if username:
        return check_username(username)
    saved = saved_sessions(ws)
    if len(saved) == 1:
        return saved[0]
    if len(saved) > 1:
        raise GhostsError(
            f"several Instagram sessions are saved ({', '.join(saved)}): choose one with --session USER"
        )
    return None


# ---------------------------------------------------------------------------------------------- logging in


def login_with_password(
    ws,
    loader: instaloader.Instaloader,
    username: str,
    ask_password: Callable[[], str],
    ask_code: Callable[[], str],
    attempts: int = 3,  # wrong passwords or codes tolerated before giving up, as a person would retry
) -> Path:
    """Log in with a password (and a two-factor code when Instagram asks for one) and save the session."""
    username = check_username(username)
    for attempt in range(1, attempts + 1):
        try:
            loader.login(username, ask_password())
            break
        except BadCredentialsException:
            if attempt == attempts:
                raise LoginFailed(f"Instagram refused the password for {username} {attempts} times") from None
            log.warning("wrong password for %s, try again", username)
        except TwoFactorAuthRequiredException:
            _two_factor(loader, username, ask_code, attempts)
            break
        except LoginException as e:
            raise LoginFailed(_login_advice(username, str(e))) from None
        except ConnectionException as e:
            raise LoginFailed(f"could not reach Instagram to log in {username}: {e}") from None
    return save_session(ws, loader, "password")


def _two_factor(loader, username: str, ask_code: Callable[[], str], attempts: int) -> None:
    for attempt in range(1, attempts + 1):
        try:
            loader.two_factor_login(ask_code().strip())
            return
        except BadCredentialsException as e:
            if attempt == attempts:
                raise LoginFailed(f"Instagram refused the two-factor code for {username}: {e}") from None
            log.warning("two-factor code refused (%s), try again", e)
        except (LoginException, ConnectionException) as e:
            raise LoginFailed(_login_advice(username, str(e))) from None


def _login_advice(username: str, message: str) -> str:
    if "checkpoint" in message.lower() or "challenge" in message.lower():
        return (
            f"Instagram wants a security check for {username} ({message}). Log in with Firefox, complete the "
            f"check there, then run `ghosts login {username} --cookies firefox`."
        )
    return (
        f"Instagram refused the login of {username}: {message}. Logging in from a browser and importing its "
        f"cookies often works better: `ghosts login {username} --cookies firefox`."
    )


def login_with_cookies(
    ws,
    loader: instaloader.Instaloader,
    username: str,
    browser: str = "firefox",
    cookie_file: str | os.PathLike | None = None,
) -> Path:
    """Import the Instagram cookies of a browser where the user is logged in, check them, save the session.

    This is the route instaloader's documentation recommends when a password login hits a checkpoint.
    """
    username = check_username(username)
    cookies = browser_cookies(browser, cookie_file)
    loader.context.update_cookies(cookies)
    who = check_cookie_session(loader, username, browser)
    if who.lower() != username:
        raise LoginFailed(
            f"{browser} is logged in to Instagram as {who}, not {username}: "
            f"run `ghosts login {who.lower()} --cookies {browser}` or log in as {username} there"
        )
    loader.context.username = who.lower()
    return save_session(ws, loader, f"cookies:{browser}")


def check_cookie_session(loader: instaloader.Instaloader, username: str, browser: str) -> str:
    """The account the imported cookies are logged in as, asked of `accounts/current_user` (not instaloader's
    `test_login`, whose legacy query_hash Instagram has answered with 401 "Please wait" for valid sessions).
    Every way this can fail gets its own message."""
    from curation.sources.instagram.diagnosis import current_user, is_network_failure
    from curation.sources.instagram.refusals import REFUSALS, classify

    try:
        who = current_user(loader.context)
    except REFUSALS as e:
        if is_network_failure(e):
            raise LoginFailed(
                f"could not reach Instagram to check the {browser} cookies: check the network "
                f"connection and run this again"
            ) from None
        refusal = classify(e, username)
        if refusal.kind in ("login", "logged_out"):
            who = None
        elif refusal.kind == "checkpoint":
            raise LoginFailed(
                f"the {browser} cookies are logged in, but Instagram holds the account at a security "
                f"check: open instagram.com in {browser}, follow its steps, then run this again"
            ) from None
        elif refusal.kind in ("wait", "rate", "blocked"):
            raise LoginFailed(
                f"Instagram is rate limiting this account or address, so the {browser} cookies could "
                f"not be checked ({refusal.detail.splitlines()[0][:160]}): try again in an hour"
            ) from None
        else:
            raise LoginFailed(
                f"Instagram gave an unexpected answer when checking the {browser} cookies "
                f"({refusal.detail.splitlines()[0][:160]}); `ghosts login --check {username}` after "
                f"saving shows which endpoints answer"
            ) from None
    if not who:
        raise LoginFailed(
            f"{browser} has Instagram cookies, but Instagram says they are logged out (the session expired or "
            f"was logged out elsewhere): open instagram.com in {browser}, log in as {username}, then run this again"
        )
    return who


# ------------------------------------------------------------------------------------------ browser cookies


def browser_cookies(browser: str, cookie_file: str | os.PathLike | None = None) -> dict[str, str]:
    browser = browser.lower()
    if browser not in BROWSERS:
        raise GhostsError(f"unknown browser {browser!r}: choose one of {', '.join(BROWSERS)}")
    if browser == "firefox":
        path = Path(cookie_file) if cookie_file else find_firefox_cookies()
        cookies = read_firefox_cookies(path)
    else:
        cookies = _cookies_with_browser_cookie3(browser, cookie_file)
    if not cookies:
        raise LoginFailed(
            f"{browser}'s cookies (this profile) have no instagram.com cookies at all: open "
            f"instagram.com in {browser} with this profile, log in, then run this again (or pass "
            f"another profile's cookie database with --cookie-file)"
        )
    if not cookies.get("sessionid"):
        raise LoginFailed(
            f"no Instagram login found in {browser}'s cookies: it has instagram.com cookies but no "
            f"session (logged out there); open instagram.com in {browser}, log in, then run this again"
        )
    return cookies


def firefox_profile_globs() -> list[str]:
    home = Path.home()
    pats = [
        home / ".mozilla/firefox/*/cookies.sqlite",
        home / "snap/firefox/common/.mozilla/firefox/*/cookies.sqlite",
        home / ".var/app/org.mozilla.firefox/.mozilla/firefox/*/cookies.sqlite",
        home / "Library/Application Support/Firefox/Profiles/*/cookies.sqlite",
    ]
    if os.getenv("APPDATA"):
        pats.append(Path(os.environ["APPDATA"]) / "Mozilla/Firefox/Profiles/*/cookies.sqlite")
    return [str(p) for p in pats]


def find_firefox_cookies() -> Path:
    """The cookie database of the Firefox profile used most recently."""
    found = [Path(p) for pat in firefox_profile_globs() for p in glob.glob(pat)]
    if not found:
        raise GhostsError("no Firefox profile found: pass its cookies.sqlite with --cookie-file PATH")
    return max(found, key=lambda p: p.stat().st_mtime)


def read_firefox_cookies(path: Path, domain: str = "instagram.com") -> dict[str, str]:
    """Instagram's cookies from a Firefox `cookies.sqlite` (plain SQLite; Firefox does not encrypt them).

    Firefox keeps the database open and locked, with recent changes in the `-wal` file, so we read a copy
    of both.
    """
    path = Path(path)
    if not path.is_file():
        raise GhostsError(f"no Firefox cookie database at {path}")
    with tempfile.TemporaryDirectory(prefix="ghosts-cookies-") as tmp:
        os.chmod(tmp, 0o700)
        copy = Path(tmp) / "cookies.sqlite"
        try:
            shutil.copyfile(path, copy)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    shutil.copyfile(side, copy.with_name(copy.name + suffix))
        except PermissionError as e:
            # Windows: a running Firefox holds its profile's files open without sharing.
            raise LoginFailed(_locked(path, e)) from None
        con = sqlite3.connect(copy, timeout=0.5)
        try:
            rows = con.execute(
                "SELECT name, value FROM moz_cookies WHERE host = ? OR host LIKE ? ORDER BY lastAccessed",
                (domain, "%." + domain),
            ).fetchall()
        except sqlite3.OperationalError as e:
            if "locked" in str(e).lower():
                raise LoginFailed(_locked(path, e)) from None
            raise GhostsError(f"{path} is not a readable Firefox cookie database: {e}") from e
        except sqlite3.DatabaseError as e:
            raise GhostsError(f"{path} is not a readable Firefox cookie database: {e}") from e
        finally:
            con.close()
    return {name: value for name, value in rows}


def _locked(path: Path, err: BaseException) -> str:
    return (
        f"the browser profile at {path.parent} is locked by a running browser ({err}): close the browser "
        f"(all its windows) and run this again"
    )


def _cookies_with_browser_cookie3(browser: str, cookie_file) -> dict[str, str]:
    try:
        import browser_cookie3  # optional: decrypting Chromium-family cookie stores is its whole job
    except ImportError:
        raise GhostsError(
            f"reading {browser}'s cookies needs the browser_cookie3 package (`pip install browser_cookie3`); "
            f"Firefox works without it (`--cookies firefox`)"
        ) from None
    try:
        jar = getattr(browser_cookie3, browser)(
            cookie_file=str(cookie_file) if cookie_file else None, domain_name="instagram.com"
        )
    except (PermissionError, sqlite3.OperationalError) as e:
        if isinstance(e, PermissionError) or "locked" in str(e).lower():
            raise LoginFailed(_locked(Path(cookie_file or browser), e)) from None
        raise
    return {c.name: c.value for c in jar if "instagram.com" in c.domain}
