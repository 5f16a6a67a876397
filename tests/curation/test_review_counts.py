"""The counter's figures from the cache (moved by each decision) always equal a full count, whatever writes
them: the page's decisions, undo, keep-best, deletes and restores, and another process's writes."""

from __future__ import annotations

import random
import re

from fastapi.testclient import TestClient
from sqlalchemy import event

from curation.catalog.schema import Image
from curation.catalog.workspace import open_workspace
from curation.review.app import create_app
from curation.review.config import ReviewConfig
from curation.review.decisions import decide, delete_face
from curation.review.selection import review_counts
from tests.curation.test_review_support import link_duplicates, make_catalog


def _figures(c: TestClient) -> dict:
    r = c.get("/api/counts")
    assert r.status_code == 200, r.text
    return r.json()


def _truth(ws) -> dict:
    # The JSON shape of the counter: pairs become lists.
    out = review_counts(ws)
    out["top_owners"] = [list(p) for p in out["top_owners"]]
    out["top_tags"] = [list(p) for p in out["top_tags"]]
    return out


def test_cached_counts_follow_every_kind_of_write(workspace):
    cat = make_catalog(workspace, photos=8, faces_per_photo=3)
    faces = cat["faces"]
    link_duplicates(workspace, cat["images"][0], cat["images"][1])
    app = create_app(workspace, ReviewConfig(reviewer="ann", target=7))
    cache = app.state.ctx.counts
    other = open_workspace(workspace.root)  # another process's connection: the CLI, a flow, auto-accept
    rng = random.Random(3)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        csrf = re.search(r'data-csrf="([0-9a-f]+)"', c.get("/").text).group(1)
        h = {"x-csrf-token": csrf}
        assert _figures(c) == _truth(workspace)
        own = 0
        for step in range(60):
            kind = rng.choice(
                ["one", "one", "one", "many", "undo", "keep", "delete", "restore", "other", "rate"]
            )
            fid = rng.choice(faces)
            if kind == "one":
                d = rng.choice(["accepted", "rejected", "skipped", "undecided"])
                r = c.post("/api/decisions", json={"face_ids": [fid], "decision": d}, headers=h)
                own += 1
            elif kind == "many":
                items = [
                    {"face_ids": rng.sample(faces, 3), "decision": "accepted"},
                    {"face_ids": [fid], "decision": "rejected"},
                ]
                r = c.post("/api/decisions/many", json={"items": items}, headers=h)
                own += 1
            elif kind == "rate":
                r = c.post("/api/decisions", json={"face_ids": [fid], "rating": 4}, headers=h)
                own += 1
            elif kind == "undo":
                r = c.post("/api/undo", headers=h)
                assert r.status_code in (200, 409), r.text
                own += 1
            elif kind == "keep":
                r = c.post(f"/api/faces/{faces[0]}/keep-best", headers=h)
                own += 1
            elif kind == "delete":
                r = c.post(f"/api/faces/{fid}/delete", headers=h)
            elif kind == "restore":
                r = c.post(f"/api/faces/{fid}/restore", headers=h)
            else:  # another process decides, deletes or takes a photo down
                what = rng.choice(["decide", "delete", "takedown"])
                if what == "decide":
                    decide(other, [fid], "accepted", "bob")
                elif what == "delete":
                    delete_face(other, fid, "bob")
                else:
                    with other.session() as s:
                        s.get(Image, rng.choice(cat["images"])).status = rng.choice(["excluded", "analyzed"])
                r = None
            if r is not None and kind not in ("undo",):
                assert r.status_code == 200, (kind, r.text)
            if r is not None and r.status_code == 200 and "counts" in r.json():
                assert r.json()["counts"] == _truth(workspace), (step, kind)
            if kind != "other":  # after another process's write, the next answer must see it by itself
                assert _figures(c) == _truth(workspace), (step, kind)
        # The page's own decisions were moved, not recounted: far fewer recounts than writes.
        assert cache.recounts < own / 2, (cache.recounts, own)
    other.close()


def test_counts_are_recounted_when_they_are_old(workspace, monkeypatch):
    make_catalog(workspace, photos=2, faces_per_photo=1)
    app = create_app(workspace, ReviewConfig(reviewer="ann"))
    cache = app.state.ctx.counts
    cache.counts()
    before = cache.recounts
    cache.counts()
    assert cache.recounts == before  # fresh: from the cache
    cache.max_age = 0.0
    cache.counts()
    assert cache.recounts == before + 1


def test_people_page_counter_comes_from_the_cache(workspace):
    cat = make_catalog(workspace, photos=3, faces_per_photo=2)
    decide(workspace, cat["faces"][:2], "accepted", reviewer="ann")
    app = create_app(workspace, ReviewConfig(reviewer="ann", target=9))
    cache = app.state.ctx.counts
    with TestClient(app, base_url="http://127.0.0.1") as c:
        c.get("/people")
        before = cache.recounts
        statements: list[str] = []

        def seen(conn, cursor, statement, *args):
            statements.append(" ".join(statement.split()))

        event.listen(workspace.engine, "before_cursor_execute", seen)
        try:
            html = c.get("/people").text
        finally:
            event.remove(workspace.engine, "before_cursor_execute", seen)
        assert statements  # the page did read the catalog (people, caps)
        # A fresh cache answers: no full count over every face's decision per page.
        assert cache.recounts == before
        assert not [q for q in statements if "GROUP BY faces.decision" in q], statements
        truth = _truth(workspace)
        assert f'<b id="count-accepted">{truth["accepted"]}</b>' in html
        assert f'<b id="count-target">{truth["target"]}</b>' in html
        assert f'<span id="count-undecided">{truth["undecided"]}</span>' in html
