"""`ghosts import-urls`: fetch listed image URLs with limits, content checks and X-Robots-Tag consent."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
import responses
from click.testing import CliRunner
from PIL import Image as PILImage
from sqlalchemy import select

from curation.catalog.schema import Image
from curation.sources.urls import FetchLimits, import_urls, read_url_list, robots_refusal
from flows.cli import main

SITE = "https://photos.example.org/"


def jpeg(seed: int, size: int = 80) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    PILImage.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def site():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def serve(rsps, name, body, content_type="image/jpeg", status=200, **headers):
    rsps.add(
        responses.GET,
        SITE + name,
        body=body,
        status=status,
        content_type=content_type,
        headers=headers,
        auto_calculate_content_length=True,
    )
    return SITE + name


def fetch(ws, urls, **limits):
    return import_urls(ws, urls, FetchLimits(**limits), progress=False, sleep=lambda s: None)


def test_images_are_fetched_checked_and_refused_with_reasons(workspace, site):
    good = serve(site, "a.jpg", jpeg(1))
    png = io.BytesIO()
    PILImage.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(png, "PNG")
    redirected = SITE + "old.png"
    site.add(responses.GET, redirected, status=301, headers={"Location": SITE + "new.png"})
    serve(site, "new.png", png.getvalue(), content_type="image/png; charset=binary")
    html = serve(site, "page.jpg", "<html>not a photo</html>", content_type="text/html")
    noai = serve(site, "noai.jpg", jpeg(2), **{"X-Robots-Tag": "noai"})
    noimageai = serve(site, "bot.jpg", jpeg(3), **{"X-Robots-Tag": "googlebot: noindex, otherbot: noimageai"})
    allowed = serve(site, "allowed.jpg", jpeg(4), **{"X-Robots-Tag": "noindex, nofollow"})
    missing = serve(site, "gone.jpg", "not found", content_type="text/plain", status=404)
    broken = serve(site, "broken.jpg", jpeg(5)[:700])
    summary = fetch(
        workspace, [good, redirected, html, noai, noimageai, allowed, missing, broken, "ftp://x/y.jpg"]
    )

    assert summary.added == 3
    reasons = {r["url"]: r["reason"] for r in summary.rejected}
    assert set(reasons) == {html, noai, noimageai, missing, broken, "ftp://x/y.jpg"}
    assert reasons[html] == "not an image: Content-Type text/html"
    assert reasons[noai].startswith("X-Robots-Tag: noai") and reasons[noimageai].startswith(
        "X-Robots-Tag: noimageai"
    )
    assert reasons[missing] == "HTTP 404 Not Found"
    assert "truncated" in reasons[broken] and reasons["ftp://x/y.jpg"] == "not an http(s) URL"

    with workspace.session() as s:
        images = {im.source_ref: im for im in s.execute(select(Image)).scalars()}
    assert images[good].source_kind == "url" and images[good].status == "new"
    assert images[redirected].provenance["final_url"] == SITE + "new.png"
    assert images[redirected].provenance["content_type"] == "image/png"
    assert images[broken].status == "rejected" and images[broken].path is None
    assert noai not in images and html not in images  # consent refusals leave no trace of the image

    # Again: URLs already in the catalog are not fetched again.
    before = len(site.calls)
    again = fetch(workspace, [good, allowed, broken])
    assert again.duplicates == 2 and again.added == 0 and len(site.calls) == before
    assert again.rejected[0]["reason"].startswith("refused before: truncated")


def test_size_limit_by_header_and_while_streaming(workspace, site):
    big = jpeg(6, size=200)
    declared = serve(site, "declared.jpg", big)
    site.add(
        responses.GET,
        SITE + "streamed.jpg",
        body=big,
        content_type="image/jpeg",
        auto_calculate_content_length=False,
    )  # no Content-Length: only counting the stream can stop it
    summary = fetch(workspace, [declared, SITE + "streamed.jpg"], max_bytes=len(big) // 2)
    reasons = [r["reason"] for r in summary.rejected]
    assert reasons == [
        f"too large: {len(big)} bytes > {len(big) // 2} byte limit",
        f"too large: more than the {len(big) // 2} byte limit",
    ]
    assert summary.added == 0


def test_retries_then_gives_up_with_a_reason(workspace, site):
    flaky = SITE + "flaky.jpg"
    site.add(responses.GET, flaky, status=503)
    site.add(responses.GET, flaky, body=jpeg(7), content_type="image/jpeg")
    slow = SITE + "slow.jpg"
    site.add(responses.GET, slow, body=requests.exceptions.ReadTimeout("read timed out"))
    summary = fetch(workspace, [flaky, slow])
    assert summary.added == 1
    assert summary.rejected == [{"url": slow, "reason": "timed out (after 3 attempts)"}]
    assert len([c for c in site.calls if c.request.url == slow]) == 3


def test_url_lists_text_and_csv(tmp_path):
    txt = tmp_path / "urls.txt"
    txt.write_text("# my list\nhttps://a.example/1.jpg\n\nhttps://a.example/2.jpg\nhttps://a.example/1.jpg\n")
    assert read_url_list(txt) == ["https://a.example/1.jpg", "https://a.example/2.jpg"]
    csv = tmp_path / "urls.csv"
    csv.write_text("name,url,licence\nx,https://a.example/3.jpg,CC-BY\ny,https://a.example/4.jpg,CC0\n")
    assert read_url_list(csv) == ["https://a.example/3.jpg", "https://a.example/4.jpg"]
    headless = tmp_path / "list.csv"
    headless.write_text("3,https://a.example/5.jpg\n4,https://a.example/6.jpg\n")
    assert read_url_list(headless) == ["https://a.example/5.jpg", "https://a.example/6.jpg"]


@pytest.mark.parametrize(
    "values,found",
    [
        (["noai"], "noai"),
        (["NoImageAI"], "noimageai"),
        (["googlebot: noai"], "noai"),
        (["noindex", "nofollow, noarchive"], None),
        ([], None),
        (["unavailable_after: 25 Jun 2030 15:00:00 PST"], None),
    ],
)
def test_robots_tag_parsing(values, found):
    assert robots_refusal(values) == found


def test_cli_json_summary_and_errors(workspace, site, tmp_path):
    listing = tmp_path / "urls.txt"
    listing.write_text(
        "\n".join([serve(site, "c.jpg", jpeg(8)), serve(site, "d.jpg", jpeg(9), **{"X-Robots-Tag": "noai"})])
    )
    r = CliRunner().invoke(main, ["import-urls", str(listing), "--json", "--data", str(workspace.root)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["added"] == 1 and out["duplicates"] == 0 and out["near_duplicates"] == 0
    assert out["rejected"] == [
        {"url": SITE + "d.jpg", "reason": "X-Robots-Tag: noai (the publisher does not allow AI use)"}
    ]

    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n")
    r = CliRunner().invoke(main, ["import-urls", str(empty), "--data", str(workspace.root)])
    assert r.exit_code == 1 and "no URLs in" in r.stderr
    r = CliRunner().invoke(main, ["import-urls", str(tmp_path / "nope.txt"), "--data", str(workspace.root)])
    assert r.exit_code == 1 and "no such file" in r.stderr
