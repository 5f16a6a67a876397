"""What a refusal from Instagram means, and what the user should do about it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests
from instaloader.exceptions import (
    AbortDownloadException,
    BadResponseException,
    ConnectionException,
    InstaloaderException,
    LoginRequiredException,
    QueryReturnedBadRequestException,
    QueryReturnedForbiddenException,
    QueryReturnedNotFoundException,
    TooManyRequestsException,
)

# Kinds of refusal that concern the account or the IP address, not one tag: the whole run stops on them.
# "network" (nothing reaches Instagram) and "gone" (every feed refused while the session works) stop it too: the
# other tags would meet the same.
ACCOUNT_WIDE = {"login", "logged_out", "wait", "checkpoint", "blocked", "rate", "network", "gone"}


@dataclass
class Refusal:
    kind: str  # login | logged_out | wait | checkpoint | blocked | rate | network | gone | endpoint | page |
    #           not_found | refused | error
    detail: str
    advice: str

    @property
    def account_wide(self) -> bool:
        return self.kind in ACCOUNT_WIDE

    def message(self, tag: str) -> str:
        return f"#{tag}: {self.advice} [{self.detail}]"


def _statuses(text: str) -> set[int]:
    # instaloader writes statuses as '401 Unauthorized' or '"403 Forbidden"'; digits inside URLs and cursors
    # are preceded by '/', '=' or letters, so only whitespace- or quote-delimited codes count.
    return {int(m) for m in re.findall(r'(?:^|[\s"])([45]\d\d)(?=[\s"]|$)', text)}


def classify(err: BaseException, username: str | None) -> Refusal:
    """What an instaloader exception means for the user, and what they should do about it."""
    text = str(err)
    low = text.lower()
    codes = _statuses(text)
    who = username or "USER"
    relogin = (
        f"run `ghosts login {who}` (or log in with Firefox and run `ghosts login {who} --cookies firefox`)"
        f", then scrape with `--session {who}`"
    )
    if "checkpoint_required" in low or "challenge_required" in low or "checkpoint" in low:
        return Refusal(
            "checkpoint",
            text,
            f"Instagram wants a security check (checkpoint) for {who}: open "
            f"instagram.com in Firefox, log in and follow its steps, then run "
            f"`ghosts login {who} --cookies firefox` and scrape again",
        )
    if "feedback_required" in low:
        return Refusal(
            "blocked",
            text,
            "Instagram has temporarily blocked this account's requests "
            "(feedback_required): stop for a few hours, then scrape fewer tags or use "
            "--max-requests-per-hour",
        )
    login_wanted = (
        isinstance(err, LoginRequiredException) or "login_required" in low or "redirected to login" in low
    )
    if login_wanted and username is None:
        return Refusal("login", text, f"Instagram requires a logged-in session for hashtags: {relogin}")
    if login_wanted or "logged out" in low:
        return Refusal(
            "logged_out",
            text,
            f"Instagram no longer accepts the session of {who} (logged out): wait "
            f"an hour or so, then {relogin}",
        )
    if 401 in codes or "please wait a few minutes" in low:
        hint = "" if username else "; scraping with a logged-in session (`ghosts login USER`) also helps"
        return Refusal(
            "wait",
            text,
            'Instagram asks to wait (401 "Please wait a few minutes"): stop now and '
            f"try again in 30 minutes or more; use --max-requests-per-hour to go slower{hint}",
        )
    if isinstance(err, TooManyRequestsException) or 429 in codes:
        return Refusal(
            "rate",
            text,
            "Instagram kept answering 429 Too Many Requests even after waiting: try "
            "again in an hour, with --max-requests-per-hour 100 or lower",
        )
    if 403 in codes or isinstance(err, QueryReturnedForbiddenException):
        if username is None:
            return Refusal("login", text, f"Instagram refused an anonymous request (403): {relogin}")
        return Refusal("logged_out", text, f"Instagram refused the session of {who} (403): {relogin}")
    if isinstance(err, QueryReturnedNotFoundException):
        return Refusal("not_found", text, "Instagram has no such hashtag (404)")
    if isinstance(err, (QueryReturnedBadRequestException, BadResponseException)):
        return Refusal("refused", text, "Instagram refused the request (400 or an unexpected answer)")
    if isinstance(err, (ConnectionException, requests.RequestException)):
        return Refusal(
            "network", text, "could not reach Instagram: check the network connection and try again"
        )
    return Refusal("error", f"{type(err).__name__}: {text}", "unexpected answer from Instagram")


REFUSALS = (InstaloaderException, AbortDownloadException, requests.RequestException, KeyError, TypeError)
