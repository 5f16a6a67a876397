"""How the review app is started: host, port, target, reviewer and access token, validated once at the edge."""

from __future__ import annotations

import getpass
import ipaddress
import re

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from curation.catalog.errors import GhostsError

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
REVIEWER_RE = re.compile(r"^[\w.@+-][\w .@+-]{0,63}$")
MIN_TOKEN_LEN = 16  # a token on a shared network must not be guessable by hand


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: only this machine can reach the server."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other name may resolve to a reachable address


def default_reviewer() -> str:
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no user name in some containers
        name = "reviewer"
    return name if REVIEWER_RE.match(name) else "reviewer"


class ReviewConfig(BaseModel):
    host: str = "127.0.0.1"  # loopback by default: nobody else on the network sees the photos
    port: int = Field(8765, ge=0, le=65535)  # 0 lets the OS pick (tests)
    target: int | None = Field(None, ge=1)  # faces wanted; None keeps the open round's target (or 1000)
    reviewer: str = Field(default_factory=default_reviewer)
    token: str | None = None  # required on any non-loopback host, checked on every request
    per_page: int = Field(120, ge=12, le=600)  # tiles per grid page: one screenful or a few
    # Extra Host header values accepted besides the bound host (a loopback server refuses other names,
    # which stops DNS-rebinding pages from talking to it).
    extra_hosts: tuple[str, ...] = ()
    log_requests: bool = False  # one access-log line per request (refusals are always logged)
    target_size: int | None = Field(
        None, ge=8, le=8192
    )  # sets the workspace's dataset side (flags follow it)

    @field_validator("reviewer")
    @classmethod
    def _reviewer_ok(cls, v: str) -> str:
        v = v.strip()
        if not REVIEWER_RE.match(v):
            raise ValueError("reviewer name must be 1-64 letters, digits, spaces or . @ + - _")
        return v

    @field_validator("token")
    @classmethod
    def _token_ok(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if len(v) < MIN_TOKEN_LEN or any(c.isspace() for c in v):
            raise ValueError(
                f"token must be at least {MIN_TOKEN_LEN} characters without spaces "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`)"
            )
        return v

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ReviewConfig:
        if not is_loopback(self.host) and not self.token:
            raise ValueError(
                f"refusing to serve on {self.host} without an access token: pass --token TOKEN or set "
                "GHOSTS_REVIEW_TOKEN (anyone who can reach the port could otherwise see and change the review)"
            )
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def make_config(**kwargs) -> ReviewConfig:
    """A ReviewConfig, or a GhostsError whose message is the first thing that is wrong."""
    try:
        return ReviewConfig(**{k: v for k, v in kwargs.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ()))
        msg = str(err.get("msg", e)).removeprefix("Value error, ")
        raise GhostsError(f"review: {where + ': ' if where else ''}{msg}") from None
