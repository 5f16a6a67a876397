"""Benchmark: the review page on 10,000 candidate faces, in headless Chromium.

    python benchmarks/review_bench.py [--faces 10000] [--photos 400] [--loads 5] [--keys 60] [--json out.json]
                                      [--catalog DIR]

Builds a synthetic catalog (photos through the real ingest path, face rows with generated 256-px previews),
serves the app with uvicorn on 127.0.0.1 and measures, in Debian's Chromium (/usr/bin/chromium):

- first grid paint: navigation start to the render time of the first tile's preview (Element Timing API), in a
  fresh browser context (empty cache) each time; also the HTML response and first contentful paint;
- keypress to saved decision: the `a` key's keydown timestamp to the moment the page has applied the server's
  answer (the decision is committed in the catalog by then), one key at a time; and a burst of keys pressed as
  fast as the browser takes them (decisions queue and are saved in order).

Targets (issue 17): first grid paint <= 0.5 s; keypress to saved, one at a time, p95 <= 50 ms. The figures
depend on the machine and its load: the 1-minute load average is printed before and after.

`--catalog DIR` builds the synthetic catalog once into DIR (when DIR holds none yet) and runs on a fresh copy
of it each time, so repeated runs (before/after comparisons) skip the build.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import bindparam, func, insert, select
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from curation.catalog.schema import Face, Image
from curation.catalog.workspace import init_workspace
from curation.datasets.prerender import CropRenderer
from curation.review import ReviewConfig
from curation.review.app import create_app
from curation.review.decisions import ON_ACCEPTED
from curation.review.server import serving
from curation.sources.ingest import Ingestor
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # the browser tests' Chromium, same flags

TAGS = ("portrait", "selfie", "streetstyle", "bnw", "film")


def _jpeg(a: np.ndarray, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


_BLOBS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _preview(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A face-sized picture with some structure (a JPEG of noise would be unrealistically large)."""
    if size not in _BLOBS:
        yy, xx = np.mgrid[0:size, 0:size] / size
        blob = np.exp(-(((xx - 0.5) / 0.28) ** 2 + ((yy - 0.55) / 0.36) ** 2))[..., None]
        eyes = ((np.abs(xx - 0.38) < 0.05) | (np.abs(xx - 0.62) < 0.05)) & (np.abs(yy - 0.45) < 0.02)
        _BLOBS[size] = (0.35 + 0.65 * blob).astype(np.float32), eyes
    shade, eyes = _BLOBS[size]
    a = shade * rng.uniform(60, 220, 3).astype(np.float32) + rng.integers(-6, 7, (size, size, 1)).astype(
        np.float32
    )
    a[eyes] = 20
    return np.clip(a, 0, 255).astype(np.uint8)


def build_catalog(root: Path, faces: int, photos: int, seed: int = 0) -> tuple[object, dict]:
    rng = np.random.default_rng(seed)
    timings = {}
    ws = init_workspace(root)
    t0 = time.perf_counter()
    ingestor = Ingestor(ws)
    image_ids = []
    for i in tqdm(range(photos), desc="photos", unit="img"):
        photo = _preview(rng, 320)
        r = ingestor.add(
            _jpeg(photo),
            name=f"post{i}.jpg",
            source_kind="instagram",
            source_ref=f"https://www.instagram.com/p/B{i}/",
            query=TAGS[i % len(TAGS)],
            owner=f"user{i % 97}",
            shortcode=f"B{i}",
            post_url=f"https://www.instagram.com/p/B{i}/",
            likes=int(rng.integers(0, 5000)),
            taken_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(hours=int(rng.integers(0, 8000))),
            provenance={"caption": f"post {i}", "caption_hashtags": [TAGS[i % len(TAGS)]]},
        )
        image_ids.append(r.image_id)
    timings["ingest_photos_s"] = time.perf_counter() - t0
    with ws.session() as s:
        s.execute(Image.__table__.update().values(status="analyzed"))
    t0 = time.perf_counter()
    rows = []
    for i in range(faces):
        x0, y0 = float(rng.uniform(0, 200)), float(rng.uniform(0, 120))
        score = float(rng.beta(4, 2))
        rows.append(
            {
                "image_id": image_ids[i % photos],
                "index": i // photos,
                "detector": "hog",
                "det_score": 1.0,
                "box": [x0, y0, x0 + 100, y0 + 110],
                "quad": [[x0, y0], [x0, y0 + 120], [x0 + 120, y0 + 120], [x0 + 120, y0]],
                "eye_dist": 40.0,
                "quad_size": 120.0,
                "padding": float(rng.uniform(0, 0.5)),
                "blur": float(rng.uniform(0, 1)),
                "roll": float(rng.normal(0, 8)),
                "yaw": float(rng.normal(0, 15)),
                "upscaled": bool(rng.random() < 0.2),
                "flagged": bool(rng.random() < 0.25),
                "score": score,
                "quality": {"score": score},
                "decision": "undecided",
                "deleted": False,
                "manual": False,
                "created_at": dt.datetime.now(dt.UTC),
            }
        )
    with ws.session() as s:
        s.execute(insert(Face), rows)
        ids = list(s.scalars(select(Face.id).order_by(Face.id)))
    folder = ws.previews_dir / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    for fid in tqdm(ids, desc="previews", unit="face"):
        (folder / f"{fid}.jpg").write_bytes(_jpeg(_preview(rng)))  # benchmark set-up: plain writes are fine
    faces_t = Face.__table__
    with ws.session() as s:
        s.execute(
            faces_t.update().where(faces_t.c.id == bindparam("fid")).values(preview_path=bindparam("p")),
            [{"fid": fid, "p": f"previews/bench/{fid}.jpg"} for fid in ids],
        )
    timings["faces_and_previews_s"] = time.perf_counter() - t0
    return ws, timings


FIRST_PAINT_JS = """() => new Promise((resolve) => {
  new PerformanceObserver((list, obs) => {
    for (const e of list.getEntries()) {
      if (e.identifier === 'first-tile' && e.renderTime > 0) {
        obs.disconnect();
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        resolve({html: nav.responseEnd, dom: nav.domContentLoadedEventEnd, fcp: fcp ? fcp.startTime : null,
                 tile: e.renderTime, tiles: document.querySelectorAll('.tile').length});
        return;
      }
    }
  }).observe({type: 'element', buffered: true});
})"""


def measure_loads(browser, url: str, loads: int) -> list[dict]:
    out = []
    for _ in range(loads):
        ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = ctx.new_page()
        page.goto(url, wait_until="commit")
        out.append(page.evaluate(FIRST_PAINT_JS))
        ctx.close()
    return out


def measure_keys(browser, url: str, keys: int, burst: int) -> dict:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    ctx = browser.new_context(viewport={"width": 1600, "height": 1000})
    page = ctx.new_page()
    page.goto(url)
    page.wait_for_selector(".tile.cursor")
    # Waiting happens inside the page (a check per animation frame): polling it from here over the devtools
    # protocol every few ms would keep the page's main thread busy and slow down what is measured.
    saved = "n => window.ghostsReview.saves.length >= n"
    for i in range(keys):
        page.keyboard.press("a")
        try:
            page.wait_for_function(saved, arg=i + 1, polling="raf", timeout=10_000)
        except PlaywrightTimeout:
            raise SystemExit("a decision was not saved within 10 s") from None
    single = page.evaluate("() => window.ghostsReview.saves.slice()")
    for _ in range(burst):
        page.keyboard.press("r")
    try:
        page.wait_for_function(saved, arg=keys + burst, polling="raf", timeout=60_000)
    except PlaywrightTimeout:
        raise SystemExit("burst decisions not all saved within 60 s") from None
    saves = page.evaluate("() => window.ghostsReview.saves.slice()")
    errors = page.evaluate("() => window.ghostsReview.errors")
    ctx.close()
    return {"single": single, "burst": saves[keys:], "errors": errors}


def summary(xs: list[float]) -> dict:
    xs = sorted(xs)
    return {
        "n": len(xs),
        "median": statistics.median(xs),
        "p95": xs[min(len(xs) - 1, int(0.95 * len(xs)))],
        "max": xs[-1],
        "min": xs[0],
    }


def _catalog(root: Path, args) -> tuple[object, dict]:
    """A fresh synthetic catalog at `root`: built there, or copied from `--catalog` (built there first)."""
    if args.catalog is None:
        return build_catalog(root, args.faces, args.photos)
    built = args.catalog / f"faces{args.faces}-photos{args.photos}"
    timings: dict = {}
    if not (built / "done").exists():
        shutil.rmtree(built, ignore_errors=True)
        ws, timings = build_catalog(built, args.faces, args.photos)
        ws.close()
        (built / "done").write_text(json.dumps(timings))
    else:
        timings = {**json.loads((built / "done").read_text()), "copied": True}
    shutil.copytree(built, root, ignore=shutil.ignore_patterns("done"))
    from curation.catalog.workspace import open_workspace

    return open_workspace(root), timings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=10_000)
    ap.add_argument("--photos", type=int, default=400)
    ap.add_argument("--loads", type=int, default=5, help="page loads measured (fresh browser cache each)")
    ap.add_argument("--keys", type=int, default=60, help="decisions made one key at a time")
    ap.add_argument("--burst", type=int, default=30, help="decisions typed as fast as possible")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--catalog", type=Path, default=None, help="build the catalog once here, run on copies")
    ap.add_argument(
        "--prerender",
        action="store_true",
        help="render accepted faces' crops in the background, as `ghosts review` does",
    )
    args = ap.parse_args()
    if args.keys + args.burst > ReviewConfig().per_page:
        sys.exit(f"--keys + --burst must fit on one grid page ({ReviewConfig().per_page})")
    if not CHROMIUM.exists():
        sys.exit(f"this benchmark needs Chromium at {CHROMIUM} (Debian package `chromium`)")
    from playwright.sync_api import sync_playwright

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="review-bench-") as tmp:
        ws, build = _catalog(Path(tmp) / "ws", args)
        app = create_app(ws, ReviewConfig(reviewer="bench", target=1000))
        if args.prerender:
            ON_ACCEPTED.append(CropRenderer(ws.root).poke)
        with serving(app) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            loads = {
                "score": measure_loads(browser, url + "/", args.loads),
                "likes": measure_loads(browser, url + "/?sort=likes", args.loads),
                "date, undecided, flagged": measure_loads(
                    browser, url + "/?sort=date&decision=undecided&flag=flagged", args.loads
                ),
            }
            keys = measure_keys(browser, url + "/?sort=likes", args.keys, args.burst)
            browser.close()
        with ws.session() as s:
            saved = s.scalar(select(func.count(Face.id)).where(Face.decision != "undecided"))
        ws.close()
    result = {
        "prerender": args.prerender,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": os.getloadavg()[0],
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "catalog": {
            "faces": args.faces,
            "photos": args.photos,
            **{k: round(v, 1) if isinstance(v, float) else v for k, v in build.items()},
        },
        "first_paint_ms": {
            k: {
                "first_load": v[0],
                "later_median": summary([x["tile"] for x in v[1:]] or [v[0]["tile"]])["median"],
            }
            for k, v in loads.items()
        },
        "keypress_to_saved_ms": {"one_at_a_time": summary(keys["single"]), "burst": summary(keys["burst"])},
        "decisions_in_catalog": saved,
        "decisions_expected": args.keys + args.burst,
        "save_errors": keys["errors"],
    }
    print(json.dumps(result, indent=2, default=lambda x: round(x, 1) if isinstance(x, float) else str(x)))
    print()
    print("| measure | figure |")
    print("| --- | --- |")
    for k, v in loads.items():
        tiles = [x["tile"] for x in v]
        print(
            f"| first grid paint, sort {k} (ms, median of {len(v)} cold-cache loads; min-max) | "
            f"{statistics.median(tiles):.0f} ({min(tiles):.0f}-{max(tiles):.0f}); HTML "
            f"{statistics.median(x['html'] for x in v):.0f}, FCP {statistics.median(x['fcp'] or 0 for x in v):.0f} |"
        )
    for k, v in result["keypress_to_saved_ms"].items():
        print(
            f"| keypress to saved, {k.replace('_', ' ')} (ms, n={v['n']}) | median {v['median']:.1f}, "
            f"p95 {v['p95']:.1f}, max {v['max']:.1f} |"
        )
    print(f"| decisions in the catalog afterwards | {saved} of {args.keys + args.burst} |")
    print(
        f"| 1-minute load average, before / after | {load_before:.1f} / {result['machine']['load_avg_1m_after']:.1f}"
        f" ({os.cpu_count()} CPUs) |"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
