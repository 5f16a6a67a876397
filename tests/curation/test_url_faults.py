"""import-urls never stops for one bad URL, and a download has a total deadline, not only a per-read timeout."""

from __future__ import annotations

import io
import json
import socket
import threading
import time

import numpy as np
import pytest
import requests
from click.testing import CliRunner
from PIL import Image as PILImage

from curation.sources.http import FetchRefused, deadline_watch
from curation.sources.urls import FetchLimits, fetch_image, import_urls
from flows.cli import main


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        buf, "JPEG"
    )
    return buf.getvalue()


class Loopback:
    """A tiny HTTP server on 127.0.0.1: /ok.jpg answers at once, /drip.jpg sends one byte of the body every
    `drip_s`, /driphead.jpg one byte of the status line and headers every `head_drip_s`."""

    def __init__(self, drip_s: float = 2.0, head_drip_s: float = 0.5):
        self.drip_s = drip_s
        self.head_drip_s = head_drip_s
        self.body = jpeg(7)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            request = conn.recv(65536).decode("latin-1")
            path = request.split(" ")[1] if " " in request else "/"
            head = (
                f"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: {len(self.body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            try:
                if path == "/driphead.jpg":
                    for b in head:
                        if self.stop.is_set():
                            return
                        conn.sendall(bytes([b]))
                        time.sleep(self.head_drip_s)
                conn.sendall(head)
                if path == "/drip.jpg":
                    for b in self.body:
                        if self.stop.is_set():
                            return
                        conn.sendall(bytes([b]))
                        time.sleep(self.drip_s)
                else:
                    conn.sendall(self.body)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def server():
    s = Loopback()
    yield s
    s.close()


def test_a_drip_feeding_server_is_cut_off_at_the_deadline(server):
    started = time.monotonic()
    with requests.Session() as session, pytest.raises(FetchRefused, match="too slow") as e:
        # Each read gets its byte well within the 5 s read timeout: only the total deadline can stop it.
        fetch_image(
            session, server.url("drip.jpg"), FetchLimits(timeout=(2.0, 5.0), deadline_s=3.0, attempts=1)
        )
    took = time.monotonic() - started
    assert 3.0 <= took < 3.0 + 2 * server.drip_s + 1, took
    assert "bytes in" in e.value.reason
    with requests.Session() as session:  # a quick server is unaffected by the same deadline
        assert fetch_image(session, server.url("ok.jpg"), FetchLimits(deadline_s=3.0)).data == server.body


def test_a_server_dripping_its_headers_is_cut_off_at_the_deadline_and_the_batch_goes_on(workspace, server):
    started = time.monotonic()
    with requests.Session() as session, pytest.raises(FetchRefused, match="too slow") as e:
        # One header byte every 0.5 s: each read is well within the 5 s read timeout.
        fetch_image(
            session, server.url("driphead.jpg"), FetchLimits(timeout=(2.0, 5.0), deadline_s=2.0, attempts=1)
        )
    took = time.monotonic() - started
    assert 2.0 <= took < 2.0 + 1, took
    assert "within its deadline" in e.value.reason
    started = time.monotonic()
    summary = import_urls(
        workspace,
        [server.url("driphead.jpg"), server.url("ok.jpg")],
        FetchLimits(timeout=(2.0, 5.0), deadline_s=2.0),
        progress=False,
        sleep=lambda s: None,
    )
    assert time.monotonic() - started < 2.0 + 1 + 1  # one deadline, then the quick one
    assert summary.added == 1
    [refused] = summary.rejected
    assert refused["url"] == server.url("driphead.jpg") and refused["reason"].startswith("too slow"), refused


def test_no_connection_is_opened_once_the_deadline_has_passed(server):
    started = time.monotonic()
    watch = deadline_watch(time.monotonic())
    with requests.Session() as session, pytest.raises(FetchRefused, match="too slow"), watch:
        time.sleep(0.3)  # the deadline passes before the request starts (a retry after a backoff)
        session.get(server.url("driphead.jpg"), timeout=(2.0, 5.0))
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    "bad",
    [
        "http://[::1/x.jpg",
        "http://exa mple.com:99999/x.jpg",
        "http://:80/x.jpg",
        "https://ex\u00e4mple..com/x.jpg",
        "http://127.0.0.1:notaport/x.jpg",
    ],
)
def test_malformed_urls_are_refused_one_by_one(workspace, server, bad):
    summary = import_urls(
        workspace,
        [bad, server.url("ok.jpg")],
        FetchLimits(attempts=1, timeout=(2.0, 2.0)),
        progress=False,
        sleep=lambda s: None,
    )
    assert summary.added == 1
    [refused] = summary.rejected
    assert refused["url"] == bad and refused["reason"].startswith(("invalid URL", "connection failed"))


def test_cli_import_urls_reports_each_url_and_ends_with_its_summary(workspace, server, tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_text("\n".join(["http://[::1/x.jpg", server.url("drip.jpg"), server.url("ok.jpg")]) + "\n")
    r = CliRunner().invoke(
        main,
        ["import-urls", str(listing), "--deadline", "2", "--timeout", "5", "--data", str(workspace.root)],
    )
    assert r.exit_code == 0, r.output
    assert "refused http://[::1/x.jpg: invalid URL" in r.stdout
    assert f"refused {server.url('drip.jpg')}: too slow" in r.stdout
    assert r.stdout.splitlines()[0].startswith("added 1,") and "refused 2" in r.stdout
    r = CliRunner().invoke(
        main, ["import-urls", str(listing), "--deadline", "2", "--json", "--data", str(workspace.root)]
    )
    doc = json.loads(r.stdout)
    assert r.exit_code == 0 and doc["duplicates"] == 1 and len(doc["rejected"]) == 2
