"""HTTP bodies with a size limit and a total deadline, shared by every source that downloads (Instagram, URLs).

A refused download raises `FetchRefused` with a reason the import summary shows to the user.
"""

from __future__ import annotations

import time

import requests


class FetchRefused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_limited(resp: requests.Response, max_bytes: int, deadline: float | None = None) -> bytes:
    """The body of a streamed response, refused (FetchRefused) as soon as it is known to pass max_bytes:
    from the declared Content-Length, or while streaming when the header lies or is missing.

    `deadline` (a time.monotonic() value) bounds the whole download: the read timeout only bounds each wait
    for the next bytes, so a server that drips one byte at a time would otherwise hold the batch for ever.
    Each read returns whatever has arrived (read1), so the deadline is checked at least once per read timeout.
    """
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"too large: {int(declared)} bytes > {max_bytes} byte limit")
    raw = resp.raw
    if hasattr(raw, "read1"):

        def chunks():
            while chunk := raw.read1(1 << 16, decode_content=True):
                yield chunk

        stream = chunks()
    else:  # not a urllib3 response (a test double): plain iteration
        stream = resp.iter_content(chunk_size=1 << 16)
    parts, size = [], 0
    started = time.monotonic()
    for chunk in stream:
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(f"too large: more than the {max_bytes} byte limit")
        parts.append(chunk)
        if deadline is not None and time.monotonic() > deadline:
            raise FetchRefused(
                f"too slow: {size} bytes in {time.monotonic() - started:.0f} s, the download did not finish "
                "within its deadline (--deadline)"
            )
    return b"".join(parts)
