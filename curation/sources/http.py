"""HTTP bodies with a size limit, shared by every source that downloads (Instagram, URL lists).

A refused download raises `FetchRefused` with a reason the import summary shows to the user.
"""
from __future__ import annotations

import requests


class FetchRefused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def read_limited(resp: requests.Response, max_bytes: int) -> bytes:
    """The body of a streamed response, refused (FetchRefused) as soon as it is known to pass max_bytes:
    from the declared Content-Length, or while streaming when the header lies or is missing."""
    declared = resp.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise FetchRefused(f"too large: {int(declared)} bytes > {max_bytes} byte limit")
    chunks, size = [], 0
    for chunk in resp.iter_content(chunk_size=1 << 16):
        size += len(chunk)
        if size > max_bytes:
            raise FetchRefused(f"too large: more than the {max_bytes} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)
