"""Who may talk to the review app, and how a page proves a state change came from itself.

- Access token: when the app has one (always, off loopback), every request must carry it: the
  `X-Ghosts-Token` header, or the `ghosts_token` cookie that a first visit with `?token=...` sets (the app
  then redirects to the same URL without the token, so it does not linger in the address bar or history).
- Host check: on loopback the Host header must name this machine, which defeats DNS-rebinding pages.
- CSRF: state changes are POST with an `X-CSRF-Token` header equal to an HMAC of the browser's own random
  `ghosts_csrf` cookie under a per-process secret; a cross-site page can neither read the cookie nor the token
  embedded in our page. The Origin header, when sent, must be our own.
- Headers: a strict Content-Security-Policy (no inline script, no framing), nosniff, no referrer.
"""
from __future__ import annotations

import hmac
import secrets
from hashlib import sha256
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

TOKEN_HEADER = "x-ghosts-token"
TOKEN_COOKIE = "ghosts_token"
CSRF_HEADER = "x-csrf-token"
CSRF_COOKIE = "ghosts_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class Guard:
    """The app's security state: its token, its CSRF secret, and the Host names it answers to."""

    def __init__(self, token: str | None, allowed_hosts: set[str] | None):
        self.token = token
        self.secret = secrets.token_bytes(32)  # per process: restarting the server invalidates old pages
        self.allowed_hosts = allowed_hosts  # None: any Host (non-loopback servers sit behind a token)

    # --- tokens ---------------------------------------------------------------------------------------------
    def token_ok(self, request: Request) -> bool:
        if not self.token:
            return True
        given = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE) or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def csrf_for(self, cookie_value: str) -> str:
        return hmac.new(self.secret, cookie_value.encode(), sha256).hexdigest()

    def csrf_ok(self, request: Request) -> bool:
        cookie = request.cookies.get(CSRF_COOKIE)
        given = request.headers.get(CSRF_HEADER)
        if not cookie or not given:
            return False
        return hmac.compare_digest(self.csrf_for(cookie), given)

    def host_ok(self, request: Request) -> bool:
        if self.allowed_hosts is None:
            return True
        host = (request.headers.get("host") or "").lower()
        name = urlsplit("//" + host).hostname or ""
        return name in self.allowed_hosts

    def origin_ok(self, request: Request) -> bool:
        origin = request.headers.get("origin")
        if not origin:
            return True  # same-origin fetches from old browsers; the CSRF token still has to match
        return urlsplit(origin).netloc.lower() == (request.headers.get("host") or "").lower()


def _deny(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", ""):
        return JSONResponse({"detail": message}, status_code=status)
    return PlainTextResponse(message + "\n", status_code=status)


def _cookie(name: str, value: str, secure: bool) -> str:
    return f"{name}={value}; HttpOnly; Path=/; SameSite=strict" + ("; Secure" if secure else "")


class GuardMiddleware:
    """Plain ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): host, token and CSRF checks
    before the app runs, the security headers and a first-visit CSRF cookie on the way out."""

    def __init__(self, app, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})  # shared with the endpoint's Request: csrf_token() leaves its cookie here
        request = Request(scope)
        denied = self._check(request)
        https = request.url.scheme == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    if k not in headers:
                        headers[k] = v
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"  # pages and API answers always fresh
                if request.method == "GET" and not request.cookies.get(CSRF_COOKIE):
                    # Every browser gets its own random CSRF cookie on its first page (the value the page's
                    # token was made from, when the page made one).
                    value = scope.get("state", {}).get("csrf_cookie") or secrets.token_urlsafe(24)
                    headers.append("set-cookie", _cookie(CSRF_COOKIE, value, https))
            await send(message)

        if denied is not None:
            return await denied(scope, receive, send_with_headers)
        return await self.app(scope, receive, send_with_headers)

    def _check(self, request: Request) -> Response | None:
        guard = self.guard
        if not guard.host_ok(request):
            return _deny(request, 400, "unexpected Host header: open the review page by the address "
                                       "`ghosts review` printed")
        query_token = request.query_params.get("token")
        if guard.token and query_token is not None and request.method == "GET":
            if not hmac.compare_digest(query_token.encode(), guard.token.encode()):
                return _deny(request, 401, "wrong access token")
            # Trade the token in the URL for an HttpOnly cookie and drop it from the address bar.
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = request.url.path + ("?" + urlencode(rest) if rest else "")
            resp = RedirectResponse(target, status_code=303)
            resp.headers.append("set-cookie", _cookie(TOKEN_COOKIE, guard.token, request.url.scheme == "https"))
            return resp
        if not guard.token_ok(request):
            return _deny(request, 401, "access token required: open the URL `ghosts review` printed "
                                       "(it carries ?token=...) or send the X-Ghosts-Token header")
        if request.method not in SAFE_METHODS:
            if not guard.origin_ok(request):
                return _deny(request, 403, "cross-origin request refused")
            if not guard.csrf_ok(request):
                return _deny(request, 403, "missing or stale CSRF token: reload the page")
        return None


def csrf_token(guard: Guard, request: Request) -> str:
    """The CSRF token to embed in a page: bound to the browser's cookie (created now if it has none)."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie:
        cookie = secrets.token_urlsafe(24)
        request.scope.setdefault("state", {})["csrf_cookie"] = cookie  # the middleware sends it as the cookie
    return guard.csrf_for(cookie)
