"""`ghosts import-scraped`: other scrapers' downloads come in with their posts' provenance, and takedown by
owner works on them as on a scrape.

Fixtures follow each tool's own format: instaloader's sidecars are written by instaloader itself
(`save_structure_to_file` on a Post made from a node, offline); instagram-scraper's `<target>.json`
(`--media-metadata`: `GraphImages` nodes with `urls`, files named after the URLs) and gallery-dl's
`--write-metadata` sidecars (`<file>.<ext>.json`) are built from their documented keys.
"""

from __future__ import annotations

import datetime as dt
import json

import instaloader
import numpy as np
import pytest
from sqlalchemy import select

from curation.catalog.errors import GhostsError
from curation.catalog.schema import Face, Image
from curation.datasets.freeze import face_record
from curation.datasets.takedown import takedown
from curation.sources.instagram.scraper import taken_down_owners
from curation.sources.scraped import import_scraped
from tests.curation.test_instagram import jpeg

CDN = "https://scontent-ams2-1.cdninstagram.com/v/t51.2885-15/"


def graph_node(
    typename: str, pk: str, shortcode: str, url: str, taken_at: int, caption: str, likes: int, owner, **more
):
    """A photo post as Instagram's GraphQL gives it and the scrapers save it (`more`: the tool's extra keys)."""
    return {
        "__typename": typename,
        "id": pk,
        "shortcode": shortcode,
        "display_url": url,
        "is_video": False,
        "taken_at_timestamp": taken_at,
        "edge_media_to_caption": {"edges": [{"node": {"text": caption}}]},
        "edge_media_preview_like": {"count": likes},
        "owner": owner,
        **more,
    }


def instaloader_download(root):
    """What `instaloader '#ghostfaces'` leaves: `<date>_UTC.json.xz` per post, `_1`, `_2` for sidecar items."""
    folder = root / "#ghostfaces"
    folder.mkdir(parents=True)
    L = instaloader.Instaloader()
    sidecar = graph_node(
        "GraphSidecar",
        "3300000000000000001",
        "C1sidecar01",
        CDN + "a.jpg",
        1_700_000_000,
        "two of us #GhostFaces #film",
        41,
        {"id": "111", "username": "anna"},
        edge_sidecar_to_children={
            "edges": [
                {"node": {"display_url": CDN + "a.jpg", "is_video": False}},
                {"node": {"display_url": CDN + "v.mp4", "is_video": True}},
                {"node": {"display_url": CDN + "b.jpg", "is_video": False}},
            ]
        },
    )
    single = graph_node(
        "GraphImage",
        "3300000000000000002",
        "C1single002",
        CDN + "c.jpg",
        1_700_100_000,
        "alone #ghostfaces",
        7,
        {"id": "222", "username": "ben"},
    )
    instaloader.save_structure_to_file(
        instaloader.Post(L.context, sidecar), str(folder / "2023-11-14_22-13-20_UTC.json.xz")
    )
    (folder / "2023-11-14_22-13-20_UTC_1.jpg").write_bytes(jpeg(101))
    (folder / "2023-11-14_22-13-20_UTC_3.jpg").write_bytes(jpeg(102))
    instaloader.save_structure_to_file(
        instaloader.Post(L.context, single), str(folder / "2023-11-16_02-00-00_UTC.json")
    )
    (folder / "2023-11-16_02-00-00_UTC.jpg").write_bytes(jpeg(103))
    # instaloader also keeps the profile of a target and its id; not posts.
    (folder / "id").write_text("17843853986012965")


def instagram_scraper_download(root):
    """What `instagram-scraper carol --media-metadata` leaves: carol/carol.json and the media files."""
    folder = root / "carol"
    folder.mkdir(parents=True)
    urls = [CDN + "40120_1_n.jpg?stp=dst-jpg&_nc_ht=scontent&oh=00_A&oe=65", CDN + "40121_2_n.jpg?oh=00_B"]
    node = graph_node(
        "GraphSidecar",
        "3300000000000000003",
        "C1carol0003",
        urls[0],
        1_690_000_000,
        "studio day",
        99,
        {"id": "333"},
        username="carol",
        tags=["portrait", "studio"],
        urls=urls,
    )
    doc = {"GraphImages": [node], "GraphProfileInfo": {"username": "carol", "info": {"id": "333"}}}
    (folder / "carol.json").write_text(json.dumps(doc, indent=4))
    (folder / "40120_1_n.jpg").write_bytes(jpeg(104))
    (folder / "40121_2_n.jpg").write_bytes(jpeg(105))


def gallery_dl_download(root):
    """What `gallery-dl --write-metadata https://www.instagram.com/explore/tags/ghostfaces/` leaves."""
    folder = root / "gallery-dl" / "instagram" / "dora"
    folder.mkdir(parents=True)
    for num, seed in ((1, 106), (2, 107)):
        name = f"3300000000000000004_{num}.jpg"
        (folder / name).write_bytes(jpeg(seed))
        meta = {
            "category": "instagram",
            "subcategory": "tag",
            "tag": "ghostfaces",
            "post_id": "3300000000000000004",
            "post_shortcode": "C1dora00004",
            "post_url": "https://www.instagram.com/p/C1dora00004/",
            "shortcode": f"C1doraitem{num}",
            "media_id": f"33000000000000000{num}",
            "username": "Dora",
            "fullname": "Dora D",
            "owner_id": "444",
            "description": "night walk #ghostfaces #noir",
            "tags": ["ghostfaces", "noir"],
            "date": "2024-02-03 04:05:06",
            "post_date": "2024-02-03 04:05:06",
            "likes": 12,
            "num": num,
            "count": 2,
            "width": 1080,
            "height": 1350,
            "extension": "jpg",
            "filename": f"3300000000000000004_{num}",
        }
        (folder / f"{name}.json").write_text(json.dumps(meta, indent=4))


@pytest.fixture
def downloads(tmp_path):
    root = tmp_path / "downloads"
    instaloader_download(root)
    instagram_scraper_download(root)
    gallery_dl_download(root)
    (root / "holiday.jpg").write_bytes(jpeg(108))  # a photo without metadata: not imported here
    return root


def images(ws):
    with ws.session() as s:
        return s.execute(select(Image).order_by(Image.id)).scalars().all()


def test_each_tools_download_comes_in_with_its_posts_provenance(workspace, downloads):
    s = import_scraped(workspace, downloads, progress=False)
    assert s.added == 7 and s.posts == 4 and s.videos_skipped == 1 and s.untracked_images == 1
    assert s.by_tool == {"instaloader": 4, "instagram-scraper": 2, "gallery-dl": 2}
    assert s.unreadable == [] and s.missing_files == [] and s.without_owner == 0
    rows = images(workspace)
    assert all(im.source_kind == "instagram" and im.status == "new" for im in rows)
    by = {(im.shortcode, im.provenance["sidecar_index"]): im for im in rows}
    assert set(by) == {
        ("C1sidecar01", 0),
        ("C1sidecar01", 2),
        ("C1single002", None),
        ("C1carol0003", 0),
        ("C1carol0003", 1),
        ("C1dora00004", 0),
        ("C1dora00004", 1),
    }
    im = by[("C1sidecar01", 2)]  # instaloader's _3 file is the third item (the second was a video)
    assert (im.owner, im.likes, im.query, im.post_url) == (
        "anna",
        41,
        "ghostfaces",
        "https://www.instagram.com/p/C1sidecar01/",
    )
    assert im.taken_at.replace(tzinfo=dt.UTC) == dt.datetime.fromtimestamp(1_700_000_000, dt.UTC)
    assert im.provenance["caption"] == "two of us #GhostFaces #film"
    assert im.provenance["tags"] == ["ghostfaces", "film"] and im.provenance["tool"] == "instaloader"
    assert im.provenance["file"] == "#ghostfaces/2023-11-14_22-13-20_UTC_3.jpg"
    carol = by[("C1carol0003", 1)]
    assert (carol.owner, carol.likes, carol.provenance["tags"]) == ("carol", 99, ["portrait", "studio"])
    dora = by[("C1dora00004", 1)]
    assert (dora.owner, dora.query, dora.likes) == ("dora", "ghostfaces", 12)
    assert dora.taken_at == dt.datetime(2024, 2, 3, 4, 5, 6)
    assert dora.provenance["caption"] == "night walk #ghostfaces #noir"

    # The archive's provenance line for a face of an imported image has the post's fields, as for a scrape.
    rec = face_record(
        Face(index=0, detector="hog", landmarks=[], decision="accepted"), dora, np.zeros((4, 2))
    )
    assert (rec["shortcode"], rec["owner"], rec["post_url"]) == (
        "C1dora00004",
        "dora",
        "https://www.instagram.com/p/C1dora00004/",
    )
    assert rec["tags"] == ["ghostfaces", "noir"] and rec["caption"] == "night walk #ghostfaces #noir"

    again = import_scraped(workspace, downloads, progress=False)
    assert again.added == 0 and again.duplicates == 7 and len(images(workspace)) == 7


def test_takedown_by_owner_removes_imported_images_and_keeps_them_out(workspace, downloads):
    import_scraped(workspace, downloads, progress=False)
    carol = {im.id: im.path for im in images(workspace) if im.owner == "carol"}
    assert len(carol) == 2
    r = takedown(workspace, owner="@Carol", reason="asked by email", progress=False)
    assert len(r.images) == 2
    after = {im.id: im for im in images(workspace)}
    assert all(after[i].status == "excluded" and after[i].owner is None for i in carol)
    assert not any(workspace.abspath(p).exists() for p in carol.values())  # the originals are gone
    others = [im for i, im in after.items() if i not in carol]
    assert len(others) == 5 and all(
        im.status == "new" and workspace.abspath(im.path).is_file() for im in others
    )

    # A new download with more of carol's posts: nothing of hers comes in, here or from a scrape.
    more = downloads.parent / "more"
    instagram_scraper_download(more)
    (more / "carol" / "carol.json").write_text(
        (more / "carol" / "carol.json").read_text().replace("C1carol0003", "C1carol0099")
    )
    (more / "carol" / "40120_1_n.jpg").write_bytes(jpeg(201))
    (more / "carol" / "40121_2_n.jpg").write_bytes(jpeg(202))
    s = import_scraped(workspace, more, progress=False)
    assert s.added == 0 and s.taken_down == 2
    # The very same download again: its files are known (and excluded), nothing comes back.
    assert import_scraped(workspace, downloads, progress=False).added == 0
    assert "carol" in taken_down_owners(workspace)  # what a scrape checks before each post


def test_damaged_and_foreign_folders_say_what_is_wrong(workspace, downloads, tmp_path):
    bad = downloads / "#ghostfaces" / "2023-12-01_00-00-00_UTC.json.xz"
    bad.write_bytes(b"not xz at all")
    (downloads / "#ghostfaces" / "2023-12-02_00-00-00_UTC.json").write_text(
        json.dumps(
            {
                "node": {
                    "shortcode": "C1gone00005",
                    "__typename": "GraphImage",
                    "owner": {"username": "eve"},
                },
                "instaloader": {"node_type": "Post", "version": "4.16"},
            }
        )
    )  # its image was never downloaded
    s = import_scraped(workspace, downloads, progress=False)
    assert s.added == 7
    assert [u["path"] for u in s.unreadable] == ["#ghostfaces/2023-12-01_00-00-00_UTC.json.xz"]
    assert s.missing_files == ["#ghostfaces/2023-12-02_00-00-00_UTC.jpg"]

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.jpg").write_bytes(jpeg(300))
    (plain / "config.json").write_text(json.dumps({"extractor": {"instagram": {}}}))
    with pytest.raises(GhostsError, match="no post metadata of instaloader.*ghosts import"):
        import_scraped(workspace, plain, progress=False)
    with pytest.raises(GhostsError, match="not a folder"):
        import_scraped(workspace, tmp_path / "nowhere", progress=False)


def test_import_scraped_cli(workspace, downloads):
    from click.testing import CliRunner

    from flows.cli import main

    r = CliRunner().invoke(main, ["import-scraped", str(downloads), "--data", str(workspace.root)])
    assert r.exit_code == 0, r.output
    assert "4 posts (2 from gallery-dl, 2 from instagram-scraper, 4 from instaloader): added 7" in r.stdout
    assert "1 image files without metadata were left alone" in r.stdout
    r = CliRunner().invoke(main, ["import-scraped", str(downloads), "--json", "--data", str(workspace.root)])
    assert r.exit_code == 0 and json.loads(r.stdout)["duplicates"] == 7
    r = CliRunner().invoke(
        main, ["import-scraped", str(downloads / "carol" / "carol.json"), "--data", str(workspace.root)]
    )
    assert r.exit_code == 2 and "is a file" in r.stderr
