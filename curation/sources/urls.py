"""URL-list source: fetch image URLs listed in a text or CSV file and ingest them.

Each URL is fetched with timeouts and a size limit (the body is streamed and dropped as soon as it grows past
the limit), must answer with an image content type, and is refused when the server says
`X-Robots-Tag: noai` or `noimageai` (publishers' way of saying "not for AI training"). Every failure is a
reason in the summary; one bad URL never stops the batch. URLs already in the catalog are not fetched again.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests
from sqlalchemy import select
from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Image
from curation.sources.http import FetchRefused, deadline_watch, read_limited
from curation.sources.ingest import ImportSummary, Ingestor

log = logging.getLogger("ghosts.urls")

USER_AGENT = "ghosts/0.1 (image import; honours X-Robots-Tag noai)"
# X-Robots-Tag directives that withhold consent for AI use. We honour them whichever bot they name: this
# tool trains a generative model, which is what they are about.
NO_AI_DIRECTIVES = {"noai", "noimageai"}
RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass
class Fetched:
    data: bytes
    url: str  # after redirects
    content_type: str
    headers: dict[str, str]


def read_url_list(path: str | Path) -> list[str]:
    """URLs from a text file (one per line, '#' comments) or a CSV file (a `url` column, else the first
    column holding http(s) URLs). Blank lines and repeats are dropped; order is kept."""
    path = Path(path)
    if not path.is_file():
        raise GhostsError(f"{'not a regular file' if path.exists() else 'no such file'}: {path}")
    text = path.read_text("utf-8-sig", errors="replace")
    urls: list[str] = []
    first = next((ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if path.suffix.lower() == ".csv" or ("," in first and not first.strip().lower().startswith("http")):
        rows = list(csv.reader(io.StringIO(text)))
        header = [c.strip().lower() for c in rows[0]] if rows else []
        if "url" in header:
            col = header.index("url")
            rows = rows[1:]
        else:
            col = (
                next((i for i, c in enumerate(rows[0]) if c.strip().lower().startswith("http")), 0)
                if rows
                else 0
            )
        urls = [r[col].strip() for r in rows if len(r) > col]
    else:
        urls = [ln.strip() for ln in text.splitlines()]
    return list(dict.fromkeys(u for u in urls if u and not u.startswith("#")))


def robots_refusal(header_values: Iterable[str]) -> str | None:
    """The noai directive found in X-Robots-Tag values (e.g. 'noai', 'googlebot: noimageai, nofollow')."""
    for value in header_values:
        for part in value.split(","):
            token = part.split(":")[-1].strip().lower()  # "botname: noai" -> "noai"
            for word in token.split():
                if word in NO_AI_DIRECTIVES:
                    return word
    return None


@dataclass(frozen=True)
class FetchLimits:
    """How long and how much one image download may take; `ghosts import-urls` builds it from its options."""

    timeout: tuple[float, float] = (10.0, 30.0)  # (connect, read) seconds
    max_bytes: int = 50_000_000  # larger bodies are dropped while streaming
    attempts: int = 3  # tries for connection errors and 429/5xx answers
    deadline_s: float = 300.0  # the whole fetch, retries included; each read is bounded by timeout[1]


def fetch_image(
    session: requests.Session,
    url: str,
    limits: FetchLimits = FetchLimits(),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> Fetched:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as e:
        raise FetchRefused(f"invalid URL: {e}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchRefused("not an http(s) URL")
    if not parts.hostname:
        raise FetchRefused("invalid URL: no host name")
    timeout, max_bytes, attempts = limits.timeout, limits.max_bytes, limits.attempts
    deadline = time.monotonic() + limits.deadline_s
    last = ""
    for attempt in range(1, attempts + 1):
        if time.monotonic() > deadline:
            raise FetchRefused(f"{last or 'too slow'}; gave up after the {limits.deadline_s:.0f} s deadline")
        try:
            with deadline_watch(deadline), session.get(url, timeout=timeout, stream=True) as resp:
                if resp.status_code in RETRY_STATUSES and attempt < attempts:
                    last = f"HTTP {resp.status_code} {resp.reason}"
                    sleep(_retry_after(resp, attempt))
                    continue
                if resp.status_code != 200:
                    raise FetchRefused(f"HTTP {resp.status_code} {resp.reason or ''}".strip())
                directive = robots_refusal(_header_values(resp, "X-Robots-Tag"))
                if directive:
                    raise FetchRefused(f"X-Robots-Tag: {directive} (the publisher does not allow AI use)")
                ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
                if not ctype.startswith("image/"):
                    raise FetchRefused(f"not an image: Content-Type {ctype or 'missing'}")
                return Fetched(read_limited(resp, max_bytes, deadline), resp.url, ctype, dict(resp.headers))
        except FetchRefused:
            raise
        except (ValueError, UnicodeError) as e:  # what urllib3 raises for URLs urlsplit let through
            raise FetchRefused(f"invalid URL: {e}") from None
        except requests.Timeout:
            last = "timed out"
        except requests.TooManyRedirects:
            raise FetchRefused("too many redirects") from None
        except requests.RequestException as e:
            last = f"connection failed: {type(e).__name__}"
            if isinstance(e, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
                raise FetchRefused(f"invalid URL: {e}") from None
        if attempt < attempts:
            sleep(min(2.0 * attempt, max(0.0, deadline - time.monotonic())))
    raise FetchRefused(f"{last} (after {attempts} attempts)")


def _header_values(resp: requests.Response, name: str) -> list[str]:
    # A header sent several times reaches requests joined by ", ", which robots_refusal splits again.
    value = resp.headers.get(name)
    return [value] if value else []


def _retry_after(resp: requests.Response, attempt: int) -> float:
    value = resp.headers.get("Retry-After", "")
    if value.isdigit():
        return min(float(value), 300.0)  # honour the server, but never hang a batch for long
    return 2.0 * attempt


def _file_name(url: str) -> str:
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "image"
    return name[:200]


def import_urls(
    ws,
    urls: Iterable[str],
    limits: FetchLimits = FetchLimits(),  # per URL
    *,
    progress: bool = True,
    session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ImportSummary:
    """Fetch and ingest each URL; the summary's `rejected` entries carry the URL and the reason."""
    urls = list(dict.fromkeys(urls))
    summary = ImportSummary()
    ingestor = Ingestor(ws)
    own_session = session is None
    if own_session:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
    try:
        for url in tqdm(urls, desc="import-urls", unit="url", disable=not progress):
            with ws.session() as s:
                known = s.execute(
                    select(Image.status, Image.reject_reason)
                    .where(Image.source_kind == "url", Image.source_ref == url)
                    .limit(1)
                ).first()
            if known is not None:  # fetched before: not fetched again
                if known.status == "rejected":
                    summary.rejected.append({"url": url, "reason": f"refused before: {known.reject_reason}"})
                else:
                    summary.duplicates += 1
                continue
            try:
                got = fetch_image(session, url, limits, sleep=sleep)
            except FetchRefused as e:
                log.info("refused %s: %s", url, e.reason)
                summary.rejected.append({"url": url, "reason": e.reason})
                continue
            result = ingestor.add(
                got.data,
                name=_file_name(got.url),
                source_kind="url",
                source_ref=url,
                provenance={
                    "source": "url",
                    "url": url,
                    "final_url": got.url,
                    "content_type": got.content_type,
                    "etag": got.headers.get("ETag"),
                    "last_modified": got.headers.get("Last-Modified"),
                    "fetched_at": dt.datetime.now(dt.UTC).isoformat(),
                },
            )
            if result.status == "rejected":
                summary.rejected.append({"url": url, "reason": result.reason or "rejected"})
            else:
                summary.count(result, url)
    finally:
        if own_session:
            session.close()
    return summary
