"""HTTP bodies with a size limit and a total deadline, shared by every source that downloads (Instagram, URLs).

A refused download raises `FetchRefused` with a reason the import summary shows to the user.

The deadline bounds the whole request, headers included (`deadline_watch`): a read timeout only bounds each
wait for the next bytes, so a server that drips its status line and headers a byte at a time would otherwise
hold the batch until http.client's header limits (100 lines of 64 KiB) ran out.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator

import requests


class FetchRefused(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_watching = threading.local()  # .sockets: the list this thread's connections go to inside deadline_watch
_hook_lock = threading.Lock()
_hook_installed = False


def _on_audit(event: str, args: tuple) -> None:
    # "socket.connect" (socket, address) is raised by every connection attempt, whatever library makes it
    # (requests here, instaloader's own sessions for Instagram images); only this thread's watch records it.
    if event == "socket.connect":
        sockets = getattr(_watching, "sockets", None)
        if sockets is not None:
            with contextlib.suppress(OSError):
                sockets.append(args[0].dup())  # a dup stays valid after TLS wraps (detaches) the original


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_on_audit)  # one hook for the process (hooks cannot be removed): cheap filter
            _hook_installed = True


@contextlib.contextmanager
def deadline_watch(deadline: float | None, what: str = "the download") -> Iterator[None]:
    """Shut down every connection this thread opens inside the block once `deadline` (a time.monotonic()
    value) passes, so a blocked read (status line, headers or body) ends at once; the failure it causes
    is raised as FetchRefused("too slow: ..."). None: no deadline."""
    if deadline is None:
        yield
        return
    _install_hook()
    sockets: list[socket.socket] = []
    fired = threading.Event()
    started = time.monotonic()

    def fire() -> None:
        fired.set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    outer = getattr(_watching, "sockets", None)
    _watching.sockets = sockets
    timer = threading.Timer(max(0.0, deadline - started), fire)
    timer.daemon = True
    timer.start()
    try:
        try:
            yield
        except FetchRefused:
            raise
        except Exception:
            if not fired.is_set():
                raise
        # Cut off (an error, or a body that ended early as if complete): never taken for a whole download.
        if fired.is_set():
            raise FetchRefused(
                f"too slow: {what} did not finish within its deadline ({time.monotonic() - started:.1f} s, "
                "--deadline); the server stopped sending or drips its answer"
            ) from None
    finally:
        timer.cancel()
        _watching.sockets = outer
        for sock in sockets:
            sock.close()


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

    def too_slow() -> FetchRefused:
        return FetchRefused(
            f"too slow: {size} bytes in {time.monotonic() - started:.0f} s, the download did not finish "
            "within its deadline (--deadline)"
        )

    try:
        for chunk in stream:
            size += len(chunk)
            if size > max_bytes:
                raise FetchRefused(f"too large: more than the {max_bytes} byte limit")
            parts.append(chunk)
            if deadline is not None and time.monotonic() > deadline:
                raise too_slow()
    except FetchRefused:
        raise
    except Exception:
        if deadline is not None and time.monotonic() >= deadline:  # cut off by deadline_watch
            raise too_slow() from None
        raise
    if deadline is not None and time.monotonic() >= deadline:  # a body cut off that looked complete
        raise too_slow()
    return b"".join(parts)
