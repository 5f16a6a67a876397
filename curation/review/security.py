"""Who may talk to the review app, and how a page proves a state change came from itself.

- Access token: when the app has one (always, off loopback), every request must carry it, and no cookie
  ever does (cookies are not separated by port: every other web service on the host would receive it). The
  URL `ghosts review` prints carries `?token=...` once; the page's script keeps it in sessionStorage (which
  is per origin, port included), removes it from the address bar, and sends it as `Authorization: Bearer`
  on every fetch. Links and images in a page are signed URLs instead (`exp` and `sig`: an HMAC of the path
  and expiry time under a per-process secret, valid SIGNED_TTL seconds), and the script re-signs a link
  before following it, so the token is never in a link, a history entry or a Referer. Tokens and signatures
  are compared in constant time.
- Host check: on loopback the Host header must name this machine, which defeats DNS-rebinding pages.
- CSRF: state changes are POST with an `X-CSRF-Token` header equal to an HMAC of the browser's own random
  `ghosts_csrf` cookie under a per-process secret; a cross-site page can neither read the cookie nor the token
  embedded in our page. The Origin header, when sent, must be our own. (The CSRF cookie grants nothing alone.)
- Limits: request bodies over MAX_BODY bytes are refused (413) before the app reads them.
- Logging: every refusal is logged with the client's address; with `log_requests` every request is too
  (method, path without query, status, milliseconds, client).
- Headers: a strict Content-Security-Policy (no inline script, no framing), nosniff, no referrer.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import time
from hashlib import sha256
from pathlib import Path
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

log = logging.getLogger("ghosts.review")

TOKEN_HEADER = "x-ghosts-token"
CSRF_HEADER = "x-csrf-token"
CSRF_COOKIE = "ghosts_csrf"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SIGNED_TTL = 1800  # seconds a signed link or image URL stays valid (the page re-signs links it follows)
MAX_BODY = 1 << 20  # bytes: the largest request body (a 10,000-face decision is ~80 kB)
PUBLIC_PREFIX = "/static/"  # the page's own CSS and script: nothing private, served without the token

# The stylesheet goes inline in every page (one request less before the first paint), allowed by its hash:
# no other inline style can run.
STYLESHEET = (Path(__file__).parent / "static" / "review.css").read_text(encoding="utf-8")
STYLE_HASH = "sha256-" + base64.b64encode(sha256(STYLESHEET.encode("utf-8")).digest()).decode("ascii")
CSP = (
    f"default-src 'none'; script-src 'self'; style-src 'self' '{STYLE_HASH}'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
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

    def __init__(self, token: str | None, allowed_hosts: set[str] | None, log_requests: bool = False):
        self.token = token
        self.log_requests = log_requests
        self.secret = secrets.token_bytes(32)  # per process: restarting the server invalidates old pages
        self.allowed_hosts = allowed_hosts  # None: any Host (non-loopback servers sit behind a token)

    # --- tokens ---------------------------------------------------------------------------------------------
    def _same(self, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def sign(self, url: str, now: float | None = None) -> str:
        """`url` (a local path, with or without a query) with `exp` and `sig` added; unchanged without a token."""
        if not self.token:
            return url
        exp = int((now or time.time()) + SIGNED_TTL)
        path = urlsplit(url).path
        return f"{url}{'&' if '?' in url else '?'}exp={exp}&sig={self._sig(path, exp)}"

    def sig_fields(self, path: str) -> list[tuple[str, str]]:
        """`exp` and `sig` for a GET form whose action is `path` (none without a token)."""
        if not self.token:
            return []
        exp = int(time.time() + SIGNED_TTL)
        return [("exp", str(exp)), ("sig", self._sig(path, exp))]

    def _sig(self, path: str, exp: int) -> str:
        return hmac.new(self.secret, f"{path}|{exp}".encode(), sha256).hexdigest()[:32]

    def signature_ok(self, request: Request) -> bool:
        exp, sig = request.query_params.get("exp"), request.query_params.get("sig")
        if not exp or not sig or not exp.isdigit() or len(exp) > 12:
            return False
        if int(exp) < time.time():
            return False
        return hmac.compare_digest(sig.encode(), self._sig(request.url.path, int(exp)).encode())

    def token_ok(self, request: Request) -> bool:
        if not self.token:
            return True
        auth = request.headers.get("authorization") or ""
        if auth[:7].lower() == "bearer " and self._same(auth[7:].strip()):
            return True
        if self._same(request.headers.get(TOKEN_HEADER)):
            return True
        if request.method in ("GET", "HEAD"):
            # A page opened from the printed URL (?token=...), or a signed link or image.
            return self._same(request.query_params.get("token")) or self.signature_ok(request)
        return False

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


def client_of(scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


class GuardMiddleware:
    """Plain ASGI middleware (no per-request task, unlike BaseHTTPMiddleware): host, token, CSRF and body-size
    checks before the app runs, the security headers and a first-visit CSRF cookie on the way out, and the
    refusal and access log lines."""

    def __init__(self, app, guard: Guard):
        self.app = app
        self.guard = guard

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault(
            "state", {}
        )  # shared with the endpoint's Request: csrf_token() leaves its cookie here
        request = Request(scope)
        started = time.perf_counter()
        status_seen = {"code": 0}
        denied = self._check(request)
        https = request.url.scheme == "https"

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                status_seen["code"] = message["status"]
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

        try:
            if denied is None and request.method not in SAFE_METHODS:
                # Read the body here (bounded), so a chunked upload without Content-Length is capped too.
                body, more = b"", True
                while more:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    body += message.get("body", b"")
                    more = message.get("more_body", False)
                    if len(body) > MAX_BODY:
                        denied = (413, f"request body over {MAX_BODY} bytes")
                        break
                replayed = {"done": False}

                async def replay():
                    if replayed["done"]:
                        return await receive()
                    replayed["done"] = True
                    return {"type": "http.request", "body": body, "more_body": False}

                app_receive = replay
            else:
                app_receive = receive
            if denied is not None:
                status, reason = denied
                log.warning(
                    "review: refused %s %s from %s: %s %s",
                    request.method,
                    request.url.path,
                    client_of(scope),
                    status,
                    reason,
                )
                return await _deny(request, status, reason)(scope, receive, send_with_headers)
            return await self.app(scope, app_receive, send_with_headers)
        finally:
            if self.guard.log_requests:
                log.info(
                    "%s %s %s %.1f ms %s",
                    request.method,
                    request.url.path,
                    status_seen["code"],
                    (time.perf_counter() - started) * 1000,
                    client_of(scope),
                )

    def _check(self, request: Request) -> tuple[int, str] | None:
        guard = self.guard
        if not guard.host_ok(request):
            return 400, "unexpected Host header: open the review page by the address `ghosts review` printed"
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return 413, f"request body over {MAX_BODY} bytes"
        if not request.url.path.startswith(PUBLIC_PREFIX) and not guard.token_ok(request):
            if request.query_params.get("token") is not None:
                return 401, "wrong access token"
            if request.query_params.get("sig") is not None:
                return 401, "this link has expired: reload the page from the URL `ghosts review` printed"
            return 401, (
                "access token required: open the URL `ghosts review` printed (it carries ?token=...) "
                "or send an Authorization: Bearer header"
            )
        if request.method not in SAFE_METHODS:
            if not guard.origin_ok(request):
                return 403, "cross-origin request refused"
            if not guard.csrf_ok(request):
                return 403, "missing or stale CSRF token: reload the page"
        return None


def csrf_token(guard: Guard, request: Request) -> str:
    """The CSRF token to embed in a page: bound to the browser's cookie (created now if it has none)."""
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie:
        cookie = secrets.token_urlsafe(24)
        request.scope.setdefault("state", {})["csrf_cookie"] = cookie  # the middleware sends it as the cookie
    return guard.csrf_for(cookie)
