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


_watching = threading.local()  # .watch: the _Watch of this thread's innermost deadline_watch, if any
_hook_lock = threading.Lock()
_hook_installed = False


class _Watch:
    def __init__(self) -> None:
        self.sockets: list[socket.socket] = []  # dups of the sockets connected inside the block
        self.fired = threading.Event()  # the deadline passed
        self.finished = threading.Event()  # the block ended


def _on_audit(event: str, args: tuple) -> None:
    # "socket.connect" (socket, address) is raised by every connection attempt, whatever library makes it
    # (requests here, instaloader's own sessions for Instagram images); only this thread's watch records it.
    if event == "socket.connect":
        watch = getattr(_watching, "watch", None)
        if watch is not None:
            if watch.fired.is_set():  # past the deadline: no new connection (a retry, a redirect)
                raise OSError("the download deadline has passed")
            with contextlib.suppress(OSError):
                watch.sockets.append(args[0].dup())  # a dup stays valid after TLS wraps (detaches) it


def _install_hook() -> None:
    global _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_on_audit)  # one hook for the process (hooks cannot be removed): cheap filter
            _hook_installed = True


def _cut_off(watch: _Watch, deadline: float) -> None:
    """At the deadline, shut down the block's connections, and keep doing so until the block ends (a socket
    still connecting when the deadline came cannot be shut down yet)."""
    if watch.finished.wait(max(0.0, deadline - time.monotonic())):
        return
    watch.fired.set()
    while True:
        for sock in list(watch.sockets):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if watch.finished.wait(0.1):
            return


@contextlib.contextmanager
def deadline_watch(deadline: float | None, what: str = "the download") -> Iterator[None]:
    """Shut down every connection this thread opens inside the block once `deadline` (a time.monotonic()
    value) passes, so a blocked read (status line, headers or body) ends at once; the failure it causes
    is raised as FetchRefused("too slow: ..."). None: no deadline."""
    if deadline is None:
        yield
        return
    _install_hook()
    watch = _Watch()
    started = time.monotonic()
    outer = getattr(_watching, "watch", None)
    _watching.watch = watch
    guard = threading.Thread(target=_cut_off, args=(watch, deadline), name="download-deadline", daemon=True)
    guard.start()
    try:
        try:
            yield
        except FetchRefused:
            raise
        except Exception:
            if not watch.fired.is_set():
                raise
        # Cut off (an error, or a body that ended early as if complete): never taken for a whole download.
        if watch.fired.is_set():
            raise FetchRefused(
                f"too slow: {what} did not finish within its deadline ({time.monotonic() - started:.1f} s, "
                "--deadline); the server stopped sending or drips its answer"
            ) from None
    finally:
        watch.finished.set()
        guard.join()
        _watching.watch = outer
        for sock in watch.sockets:
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
