"""Telling apart why a feed was refused, by asking another, cheap endpoint with the same session.

A refused first page can mean four different things, each with its own next step:
- the endpoint is gone or changed (the same session still answers elsewhere): fall back to another feed;
- the account (or the address) is rate limited: stop, wait, go slower;
- the session is logged out or held at a checkpoint: log in again;
- the network is down: nothing reaches Instagram.
The probe is `api/v1/accounts/current_user/` on i.instagram.com for a logged-in session (one small answer
naming the account), and the tag's `web_info` for an anonymous one.
"""

from __future__ import annotations

from dataclasses import dataclass

import requests
from instaloader import Hashtag
from instaloader.exceptions import QueryReturnedNotFoundException

from curation.sources.instagram.feeds import FEED_LABELS, FEEDS, open_feed
from curation.sources.instagram.refusals import REFUSALS, Refusal, classify

CURRENT_USER = "api/v1/accounts/current_user/"
WHOAMI_QUERY = "d6f4427fbe92d846298cf93df0b937d3"  # instaloader's test_login query_hash


def is_network_failure(err: BaseException) -> bool:
    """True when no HTTP answer came back at all (DNS, refused connection, timeout)."""
    seen = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (requests.ConnectionError, requests.Timeout)):
            return True
        e = e.__cause__ or e.__context__
    text = str(err)
    return any(
        s in text
        for s in (
            "Max retries exceeded",
            "Failed to establish a new connection",
            "Name or service not known",
            "Connection refused",
            "Read timed out",
        )
    )


def current_user(ctx) -> str | None:
    """The username the session is logged in as (raises on a refusal); None if Instagram names nobody."""
    data = ctx.get_iphone_json(CURRENT_USER, {"edit": "true"})
    user = data.get("user") if isinstance(data, dict) else None
    return (user or {}).get("username") if isinstance(user, dict) else None


PROBE_NAMES = {True: "accounts/current_user", False: "tags/web_info"}


def probe(ctx, username: str | None, tag: str) -> tuple[str | None, Refusal | None]:
    """(the endpoint that answered, None) or (None, what its refusal means)."""
    try:
        if username:
            who = current_user(ctx)
            if not who:
                return None, Refusal(
                    "logged_out",
                    "current_user names no account",
                    f"Instagram no longer accepts the session of {username} (logged out): run "
                    f"`ghosts login {username}` (or `--cookies firefox`) again",
                )
            return "accounts/current_user", None
        Hashtag(ctx, {"name": tag})._obtain_metadata()
        return "tags/web_info", None
    except REFUSALS as e:
        if is_network_failure(e):
            return None, network_refusal(str(e))
        return None, classify(e, username)


def network_refusal(detail: str) -> Refusal:
    return Refusal(
        "network",
        detail,
        "could not reach Instagram at all (network down, DNS or a proxy): check the "
        "connection and run again; the position of every tag is kept",
    )


def diagnose(ctx, err: BaseException, username: str | None, tag: str, feed: str) -> Refusal:
    """What a refused first page of `feed` means, after probing with the same session."""
    first = classify(err, username)
    if first.kind in ("checkpoint", "blocked"):
        return first  # Instagram said so in the answer itself
    if first.kind == "login":
        return first  # no session to probe with: logging in is the next step whatever the endpoint
    if feed == "web_info" and first.kind == "not_found":
        return first  # the tag's page is not there: no such hashtag
    if is_network_failure(err):
        answered, refusal = probe(ctx, username, tag)
        return (
            refusal
            if refusal is not None
            else Refusal(
                "error", first.detail, f"the {FEED_LABELS[feed]} did not answer while {answered} did"
            )
        )
    answered, refusal = probe(ctx, username, tag)
    if refusal is not None:
        if refusal.kind in ("wait", "rate"):
            return Refusal(
                refusal.kind,
                f"{first.detail}; probe: {refusal.detail}",
                f"this account (or this address) is rate limited: the {FEED_LABELS[feed]} and a second "
                f"endpoint ({PROBE_NAMES[bool(username)]}) both refused; stop now, and go slower next time "
                f"with --max-requests-per-hour 100 or lower",
            )
        return refusal
    return Refusal(
        "endpoint",
        first.detail,
        f"the {FEED_LABELS[feed]} refused ({first.detail.splitlines()[0][:160]}) while the same "
        f"session still answers on {answered}: that endpoint is gone or changed, not a rate limit",
    )


@dataclass
class EndpointCheck:
    name: str
    ok: bool
    detail: str


def check_endpoints(loader, tag: str = "instagram") -> list[EndpointCheck]:
    """Ask each endpoint the source uses once, with the loader's session: which ones answer today."""
    ctx = loader.context
    out: list[EndpointCheck] = []

    def run(name: str, fn) -> None:
        try:
            out.append(EndpointCheck(name, True, fn() or "answers"))
        except REFUSALS as e:
            kind = "network" if is_network_failure(e) else classify(e, ctx.username).kind
            out.append(EndpointCheck(name, False, f"{kind}: {str(e).splitlines()[0][:200]}"))

    def whoami():
        data = ctx.graphql_query(WHOAMI_QUERY, {})
        user = (data.get("data") or {}).get("user")
        if not user:
            raise QueryReturnedNotFoundException("answers, but names no logged-in account")
        return f"logged in as {user.get('username')}"

    def me():
        who = current_user(ctx)
        if not who:
            raise QueryReturnedNotFoundException("answers, but names no logged-in account")
        return f"logged in as {who}"

    hashtag = Hashtag(ctx, {"name": tag})

    def web_info():
        hashtag._obtain_metadata()
        return f"#{tag} found"

    run("accounts/current_user (i.instagram.com)", me)
    run("test_login query_hash (graphql)", whoami)
    run(f"tags/web_info #{tag}", web_info)
    for feed in FEEDS:
        if feed == "top" and not hashtag._has_full_metadata:
            out.append(EndpointCheck(FEED_LABELS[feed], False, "not tried: web_info did not answer"))
            continue
        if feed != "top" or hashtag._has_full_metadata:
            run(FEED_LABELS[feed], lambda f=feed: _first(open_feed(hashtag, f)))
    return out


def _first(iterator) -> str:
    post = next(iter(iterator), None)
    return f"first post {post.shortcode}" if post is not None else "answers (no posts)"


def check_saved_session(
    ws, username: str, loader=None, tag: str = "instagram"
) -> tuple[list[EndpointCheck], bool]:
    """`ghosts login --check USER`: each endpoint with the saved session, and whether the session is logged in
    (accounts/current_user names the account)."""
    from curation.sources.instagram.loader import make_loader
    from curation.sources.instagram.session import check_username, load_session

    username = check_username(username)
    if loader is None:
        loader = make_loader()
    load_session(ws, loader, username)
    checks = check_endpoints(loader, tag)
    return checks, checks[0].ok


def check_report(username: str, checks: list[EndpointCheck], logged_in: bool) -> list[str]:
    lines = [f"{'answers' if c.ok else 'refused':8} {c.name}: {c.detail}" for c in checks]
    if logged_in:
        feeds = [c for c in checks if c.name in FEED_LABELS.values()]
        if feeds and not any(c.ok for c in feeds):
            lines.append(
                f"the session of {username} works, but no hashtag feed answers: Instagram has changed "
                f"its API; see 'When scraping breaks' in docs/instagram.md (ghosts import-scraped)"
            )
    return lines
