"""`ghosts login`: password and two-factor through instaloader's real login code, and a Firefox cookie import."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import sqlite3
import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner

from curation.sources.instagram.scraper import make_loader
from curation.sources.instagram.session import find_firefox_cookies, load_session, read_firefox_cookies
from flows.cli import main

USER = "ghostuser"
PASSWORD = "correct horse battery staple"
SESSIONID = "4242%3AsEcReTsEsSiOn%3A27"
LOGIN = "https://www.instagram.com/api/v1/web/accounts/login/ajax/"
TWO_FACTOR = "https://www.instagram.com/accounts/login/ajax/two_factor/"
GRAPHQL = "https://www.instagram.com/graphql/query"
SESSION_COOKIES = [
    ("Set-Cookie", "csrftoken=loggedin; Domain=.instagram.com; Path=/"),
    ("Set-Cookie", f"sessionid={SESSIONID}; Domain=.instagram.com; Path=/; HttpOnly"),
    ("Set-Cookie", "ds_user_id=4242; Domain=.instagram.com; Path=/"),
]


def answers(*bodies):
    """A responses callback giving these (body, headers) answers in turn."""
    queue = list(bodies)

    def callback(request):
        body, headers = queue.pop(0)
        return 200, [("Content-Type", "application/json"), *headers], json.dumps(body)

    return callback


@pytest.fixture(autouse=True)
def _no_polite_pauses(monkeypatch):
    # instaloader pauses a random ~1.7 s before requests, to look like a person; not in tests.
    import instaloader

    monkeypatch.setattr(instaloader.InstaloaderContext, "do_sleep", lambda self: None)


@pytest.fixture
def ig():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(
            responses.GET,
            "https://www.instagram.com/",
            headers={"Set-Cookie": "csrftoken=anon; Domain=.instagram.com; Path=/"},
            body="<html></html>",
        )
        yield rsps


def whoami(rsps, username=USER, seen=None):
    def callback(request):
        if seen is not None:
            seen.append(request.headers.get("Cookie", ""))
        q = parse_qs(urlsplit(request.url).query)
        assert q["query_hash"] == ["d6f4427fbe92d846298cf93df0b937d3"]
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"data": {"user": {"username": username} if username else None}, "status": "ok"}),
        )

    rsps.add_callback(responses.GET, GRAPHQL, callback=callback)


CURRENT_USER = "https://i.instagram.com/api/v1/accounts/current_user/"


def current_user(rsps, username=USER, seen=None, answer=None):
    """The endpoint the cookie check asks; `seen` collects the session each request carried (the mobile API
    sends the cookies as a bearer token)."""

    def callback(request):
        if seen is not None:
            auth = request.headers.get("authorization", "")
            token = auth.rsplit(":", 1)[-1]
            seen.append(base64.b64decode(token).decode() if token else request.headers.get("Cookie", ""))
        if answer is not None:
            return answer
        user = {"pk": "4242", "username": username, "full_name": "Ghost"} if username else None
        return 200, {"Content-Type": "application/json"}, json.dumps({"user": user, "status": "ok"})

    rsps.add_callback(responses.GET, CURRENT_USER, callback=callback)


def login_cli(ws, *args, input=None):
    return CliRunner().invoke(main, ["login", *args, "--data", str(ws.root)], input=input)


def test_password_and_two_factor_login_saves_a_private_session(workspace, ig, caplog):
    ig.add_callback(
        responses.POST,
        LOGIN,
        callback=answers(
            ({"authenticated": False, "user": True, "status": "ok"}, []),  # wrong password first
            (
                {
                    "two_factor_required": True,
                    "two_factor_info": {"two_factor_identifier": "2fa-77"},
                    "status": "fail",
                },
                [],
            ),
        ),
    )
    ig.add_callback(
        responses.POST,
        TWO_FACTOR,
        callback=answers(
            ({"message": "Please check the security code and try again.", "status": "fail"}, []),
            ({"authenticated": True, "userId": "4242", "status": "ok"}, SESSION_COOKIES),
        ),
    )
    with caplog.at_level(logging.DEBUG):
        r = login_cli(workspace, USER, input=f"wrong\n{PASSWORD}\n000000\n123456\n")
    assert r.exit_code == 0, r.output
    assert f"logged in as {USER}" in r.stdout
    path = workspace.sessions_dir / f"{USER}.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(workspace.sessions_dir.stat().st_mode) == 0o700
    doc = json.loads(path.read_text())
    assert (
        doc["username"] == USER and doc["method"] == "password" and doc["cookies"]["sessionid"] == SESSIONID
    )
    # The two-factor code went to Instagram with the identifier from the first step.
    form = parse_qs(ig.calls[-1].request.body)
    assert form["identifier"] == ["2fa-77"] and form["verificationCode"] == ["123456"]
    # Neither the password nor the session ever reaches the screen or the log.
    text = r.output + "\n".join(rec.getMessage() for rec in caplog.records)
    assert PASSWORD not in text and "sEcReT" not in text and PASSWORD not in path.read_text()


def test_checkpoint_at_login_points_to_the_cookie_import(workspace, ig):
    ig.add_callback(
        responses.POST,
        LOGIN,
        callback=answers(
            (
                {
                    "message": "checkpoint_required",
                    "checkpoint_url": "/challenge/AXG/",
                    "lock": False,
                    "status": "fail",
                },
                [],
            ),
        ),
    )
    r = login_cli(workspace, USER, input=f"{PASSWORD}\n")
    assert r.exit_code == 1
    assert "security check" in r.stderr and f"ghosts login {USER} --cookies firefox" in r.stderr
    assert not (workspace.sessions_dir / f"{USER}.json").exists()


def test_three_wrong_passwords_give_up_cleanly(workspace, ig):
    ig.add_callback(
        responses.POST,
        LOGIN,
        callback=answers(*[({"authenticated": False, "user": True, "status": "ok"}, [])] * 3),
    )
    r = login_cli(workspace, USER, input="a\nb\nc\n")
    assert r.exit_code == 1 and "refused the password" in r.stderr


def firefox_db(path: Path, cookies: dict[str, str], host=".instagram.com") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE moz_cookies (id INTEGER PRIMARY KEY, originAttributes TEXT NOT NULL DEFAULT '', "
        "name TEXT, value TEXT, host TEXT, path TEXT, expiry INTEGER, lastAccessed INTEGER, "
        "creationTime INTEGER, isSecure INTEGER, isHttpOnly INTEGER)"
    )
    rows = [
        (n, v, host, "/", 2_000_000_000, 1_700_000_000_000_000 + i)
        for i, (n, v) in enumerate(cookies.items())
    ]
    rows.append(("sessionid", "not-instagram", ".example.com", "/", 2_000_000_000, 1))
    con.executemany(
        "INSERT INTO moz_cookies (name, value, host, path, expiry, lastAccessed) VALUES (?,?,?,?,?,?)", rows
    )
    con.commit()
    con.close()
    return path


FIREFOX_COOKIES = {"csrftoken": "ffcsrf", "sessionid": SESSIONID, "ds_user_id": "4242", "mid": "ZZmid"}


def test_cookie_import_from_firefox(workspace, ig, tmp_path):
    db = firefox_db(tmp_path / "profile" / "cookies.sqlite", FIREFOX_COOKIES)
    seen: list[str] = []
    current_user(ig, seen=seen)
    # instaloader's test_login query_hash answers 401 "Please wait" for this valid session: not asked.
    ig.add(
        responses.GET,
        GRAPHQL,
        status=401,
        json={"message": "Please wait a few minutes before you try again.", "status": "fail"},
    )
    r = login_cli(workspace, USER, "--cookies", "firefox", "--cookie-file", str(db))
    assert r.exit_code == 0, r.output
    assert SESSIONID in seen[0]  # the check ran with the browser's cookies
    ig.remove(responses.GET, GRAPHQL)
    seen.clear()
    whoami(ig, seen=seen)
    doc = json.loads((workspace.sessions_dir / f"{USER}.json").read_text())
    assert doc["method"] == "cookies:firefox"
    assert {k: doc["cookies"][k] for k in FIREFOX_COOKIES} == FIREFOX_COOKIES
    assert stat.S_IMODE((workspace.sessions_dir / f"{USER}.json").stat().st_mode) == 0o600

    # The saved session logs a fresh loader in, cookies and CSRF header included.
    loader = make_loader(pause_between_requests=False)
    load_session(workspace, loader, USER)
    assert loader.context.is_logged_in and loader.context.username == USER
    assert loader.test_login() == USER and "sessionid=" + SESSIONID in seen[-1]


def test_cookie_import_refuses_a_browser_logged_in_as_someone_else(workspace, ig, tmp_path):
    db = firefox_db(tmp_path / "cookies.sqlite", FIREFOX_COOKIES)
    current_user(ig, username="somebodyelse")
    r = login_cli(workspace, USER, "--cookie-file", str(db))  # a cookie file alone means Firefox
    assert r.exit_code == 1 and "logged in to Instagram as somebodyelse" in r.stderr
    assert not (workspace.sessions_dir / f"{USER}.json").exists()


def test_cookie_import_without_an_instagram_login(workspace, tmp_path):
    db = firefox_db(tmp_path / "cookies.sqlite", {"csrftoken": "x", "mid": "y"})
    r = login_cli(workspace, USER, "--cookies", "firefox", "--cookie-file", str(db))
    assert (
        r.exit_code == 1
        and "no Instagram login found in firefox" in r.stderr
        and "logged out there" in r.stderr
    )


def test_cookie_import_from_a_profile_without_instagram_cookies(workspace, tmp_path):
    db = firefox_db(tmp_path / "cookies.sqlite", {})  # only another site's cookies
    r = login_cli(workspace, USER, "--cookie-file", str(db))
    assert r.exit_code == 1 and "no instagram.com cookies at all" in r.stderr


def test_cookie_import_of_cookies_instagram_says_are_logged_out(workspace, ig, tmp_path):
    db = firefox_db(tmp_path / "cookies.sqlite", FIREFOX_COOKIES)
    current_user(ig, answer=(302, {"Location": "https://www.instagram.com/accounts/login/"}, ""))
    r = login_cli(workspace, USER, "--cookie-file", str(db))
    assert r.exit_code == 1 and "Instagram says they are logged out" in r.stderr
    assert not (workspace.sessions_dir / f"{USER}.json").exists()


def test_cookie_import_while_rate_limited_or_at_a_checkpoint_says_so(workspace, ig, tmp_path):
    db = firefox_db(tmp_path / "cookies.sqlite", FIREFOX_COOKIES)
    current_user(
        ig,
        answer=(
            401,
            {"Content-Type": "application/json"},
            json.dumps({"message": "Please wait a few minutes before you try again.", "status": "fail"}),
        ),
    )
    r = login_cli(workspace, USER, "--cookie-file", str(db))
    assert r.exit_code == 1 and "rate limiting" in r.stderr and "logged out" not in r.stderr
    ig.remove(responses.GET, CURRENT_USER)
    current_user(
        ig,
        answer=(
            400,
            {"Content-Type": "application/json"},
            json.dumps(
                {"message": "checkpoint_required", "checkpoint_url": "/challenge/X/", "status": "fail"}
            ),
        ),
    )
    r = login_cli(workspace, USER, "--cookie-file", str(db))
    assert r.exit_code == 1 and "security check" in r.stderr
    assert not (workspace.sessions_dir / f"{USER}.json").exists()


def test_cookie_import_from_a_profile_locked_by_a_running_browser(workspace, tmp_path, monkeypatch):
    db = firefox_db(tmp_path / "cookies.sqlite", FIREFOX_COOKIES)
    real_copy = shutil.copyfile

    def copy(src, dst, *a, **kw):
        if Path(src) == db:  # as Windows answers while Firefox has the profile open
            raise PermissionError(
                13, "The process cannot access the file because it is being used by another process", str(src)
            )
        return real_copy(src, dst, *a, **kw)

    monkeypatch.setattr(shutil, "copyfile", copy)
    r = login_cli(workspace, USER, "--cookie-file", str(db))
    assert r.exit_code == 1 and "locked by a running browser" in r.stderr and "close the browser" in r.stderr


def test_firefox_profile_is_found_in_home_and_read_with_its_wal(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    old = firefox_db(tmp_path / ".mozilla/firefox/aaaa.old/cookies.sqlite", {"sessionid": "old"})
    new = firefox_db(tmp_path / ".mozilla/firefox/bbbb.default-release/cookies.sqlite", FIREFOX_COOKIES)
    os.utime(old, (1_600_000_000, 1_600_000_000))
    assert find_firefox_cookies() == new
    # Firefox keeps recent writes in the -wal file while it runs; they must be seen.
    con = sqlite3.connect(new)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("UPDATE moz_cookies SET value='fresh' WHERE name='mid'")
    con.commit()
    assert Path(str(new) + "-wal").exists()
    assert read_firefox_cookies(new)["mid"] == "fresh"
    con.close()


def test_bad_usernames_and_browsers_are_refused(workspace):
    r = login_cli(workspace, "../etc/passwd")
    assert r.exit_code == 1 and "not an Instagram username" in r.stderr
    r = login_cli(workspace, USER, "--cookies", "netscape")
    assert r.exit_code == 2 and "netscape" in r.stderr
