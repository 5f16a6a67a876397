"""`ghosts import-scraped DIR`: bring in what other Instagram scrapers downloaded, with its provenance.

When ghosts' own scraping is blocked, another tool's download can still come in the way a scrape does:
through the one ingest path, as `source_kind="instagram"`, with the post's shortcode, URL, owner, caption,
hashtags, date and likes in the catalog (so the archive's provenance, `ghosts takedown --owner` and the
takedown check of later scrapes work the same). Images of an account that asked for a takedown are skipped.

Formats read (each tool's own metadata files, found anywhere under DIR):
- instaloader: `<stem>.json.xz` or `<stem>.json` with `{"node": {...}, "instaloader": {"node_type": "Post"}}`
  (written by `save_structure_to_file`); the images are `<stem>.jpg` (single) or `<stem>_1.jpg`,
  `<stem>_2.jpg`, ... (the items of a sidecar). A folder named `#tag` gives the tag.
- instagram-scraper (`--media-metadata`): `<target>/<target>.json` with `{"GraphImages": [node, ...]}`; each
  node has `urls` and the files are named after the last part of each URL's path.
- gallery-dl (`--write-metadata`): `<file>.<ext>.json` beside each file (or `<file>.json`), with `category`
  "instagram", `post_shortcode`, `post_url`, `username`, `description`, `tags`, `date`, `num`, `likes`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import lzma
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tqdm import tqdm

from curation.catalog.errors import GhostsError
from curation.catalog.files import folder_images
from curation.catalog.schema import utcnow
from curation.sources.ingest import BringInCounts, Ingestor

log = logging.getLogger("ghosts.scraped")
POST_URL = "https://www.instagram.com/p/{}/"
HASHTAG_RE = re.compile(r"#(\w+)", re.UNICODE)
VIDEO_EXTS = {".mp4", ".mov", ".webm", ".m4v"}


@dataclass
class ScrapedItem:
    """One image file of a downloaded post, with what its tool knew about the post."""

    path: Path | None  # None: a video item (counted, not imported)
    tool: str  # instaloader | instagram-scraper | gallery-dl
    metadata_file: Path
    shortcode: str
    owner: str | None
    owner_id: str | None
    caption: str | None
    hashtags: list[str]
    taken_at: dt.datetime | None
    likes: int | None
    sidecar_index: int | None  # 0-based item of a sidecar post; None for a single image
    query: str | None = None  # the hashtag the download was made for, when the folder says so

    def provenance(self, root: Path) -> dict[str, Any]:
        return {
            "source": "instagram",
            "via": "import-scraped",
            "tool": self.tool,
            "query": self.query,
            "shortcode": self.shortcode,
            "post_url": POST_URL.format(self.shortcode),
            "owner_username": self.owner,
            "owner_id": self.owner_id,
            "caption": self.caption,
            "caption_hashtags": self.hashtags,
            "tags": self.hashtags,  # what the archive's provenance lists (freeze reads "tags")
            "likes": self.likes,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "sidecar_index": self.sidecar_index,
            "file": str(self.path.relative_to(root)),
            "metadata_file": str(self.metadata_file.relative_to(root)),
            "imported_at": utcnow().isoformat(),
        }


@dataclass
class ScrapedSummary(BringInCounts):
    posts: int = 0
    by_tool: dict[str, int] = field(default_factory=dict)  # image files found per tool
    taken_down: int = 0  # images of accounts that asked for a takedown: not imported
    videos_skipped: int = 0
    without_owner: int = 0  # imported, but the tool did not record the owner's name (takedown by post works)
    missing_files: list[str] = field(default_factory=list)  # named by metadata, not on disk
    unreadable: list[dict[str, str]] = field(default_factory=list)  # metadata files that could not be read
    rejected: list[dict[str, str]] = field(default_factory=list)
    untracked_images: int = 0  # image files no metadata describes (plain photos: `ghosts import`)
    image_ids: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What `ghosts import-scraped` prints."""
        tools = ", ".join(f"{n} from {t}" for t, n in sorted(self.by_tool.items()))
        head = (
            f"{self.posts} posts ({tools}): added {self.added}, duplicates {self.duplicates}, near duplicates "
            f"{self.near_duplicates}, videos skipped {self.videos_skipped}, refused {len(self.rejected)}"
        )
        out = [head]
        if self.taken_down:
            out.append(f"  skipped {self.taken_down} images of accounts that asked for a takedown")
        if self.without_owner:
            out.append(
                f"  {self.without_owner} images without the owner's name (the tool did not record it): "
                f"`ghosts takedown --post URL` still finds them"
            )
        if self.untracked_images:
            out.append(
                f"  {self.untracked_images} image files without metadata were left alone (`ghosts import` "
                f"takes plain photos)"
            )
        out += [f"  missing file {m}" for m in self.missing_files]
        out += [f"  unreadable {u['path']}: {u['reason']}" for u in self.unreadable]
        out += [f"  refused {r['path']}: {r['reason']}" for r in self.rejected]
        return out


# ---------------------------------------------------------------------------------------------- readers


def _hashtags(caption: str | None, given: Any = None) -> list[str]:
    tags = (
        [str(t).lstrip("#").lower() for t in given]
        if isinstance(given, list) and given
        else [t.lower() for t in HASHTAG_RE.findall(caption or "")]
    )
    return list(dict.fromkeys(tags))


def _from_timestamp(value: Any) -> dt.datetime | None:
    try:
        return dt.datetime.fromtimestamp(int(value), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _graph_caption(node: dict[str, Any]) -> str | None:
    edges = ((node.get("edge_media_to_caption") or {}).get("edges")) or []
    if edges:
        return ((edges[0] or {}).get("node") or {}).get("text")
    caption = node.get("caption")
    return caption.get("text") if isinstance(caption, dict) else caption


def _graph_likes(node: dict[str, Any]) -> int | None:
    for key in ("edge_media_preview_like", "edge_liked_by"):
        if isinstance(node.get(key), dict) and "count" in node[key]:
            return _int(node[key]["count"])
    return _int(node.get("like_count"))


def _read_json(path: Path) -> Any:
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        raw = lzma.decompress(raw)
    return json.loads(raw.decode("utf-8"))


def _instaloader_stem(path: Path) -> str:
    return path.name[: -len(".json.xz")] if path.name.endswith(".json.xz") else path.stem


def read_instaloader(meta: Path, doc: dict[str, Any]) -> list[ScrapedItem]:
    node = doc["node"]
    shortcode = node.get("shortcode")
    if not shortcode:
        raise ValueError("the post has no shortcode")
    owner = node.get("owner") or {}
    caption = _graph_caption(node)
    stem = _instaloader_stem(meta)
    query = meta.parent.name[1:].lower() if meta.parent.name.startswith("#") else None
    files = {p.name: p for p in meta.parent.iterdir() if p.is_file()}

    def find(name_stem: str) -> Path | None:
        for ext in (".jpg", ".jpeg", ".png", ".webp", ".heic"):
            if name_stem + ext in files:
                return files[name_stem + ext]
        return None

    common = {
        "tool": "instaloader",
        "metadata_file": meta,
        "shortcode": shortcode,
        "owner": owner.get("username"),
        "owner_id": str(owner["id"]) if owner.get("id") is not None else None,
        "caption": caption,
        "hashtags": _hashtags(caption),
        "taken_at": _from_timestamp(node.get("taken_at_timestamp") or node.get("date")),
        "likes": _graph_likes(node),
        "query": query,
    }
    items: list[ScrapedItem] = []
    children = ((node.get("edge_sidecar_to_children") or {}).get("edges")) or []
    if node.get("__typename") == "GraphSidecar" and children:
        for i, child in enumerate(children):
            if (child.get("node") or {}).get("is_video"):
                items.append(ScrapedItem(path=None, sidecar_index=i, **common))  # a video: counted, skipped
                continue
            items.append(
                ScrapedItem(
                    path=find(f"{stem}_{i + 1}") or meta.parent / f"{stem}_{i + 1}.jpg",
                    sidecar_index=i,
                    **common,
                )
            )
    else:
        if node.get("is_video"):
            return [ScrapedItem(path=None, sidecar_index=None, **common)]
        items.append(
            ScrapedItem(path=find(stem) or meta.parent / f"{stem}.jpg", sidecar_index=None, **common)
        )
    return items


def read_instagram_scraper(meta: Path, doc: dict[str, Any]) -> list[ScrapedItem]:
    profile = doc.get("GraphProfileInfo") or {}
    target_owner = profile.get("username")
    items: list[ScrapedItem] = []
    for node in doc.get("GraphImages") or []:
        shortcode = node.get("shortcode")
        if not shortcode:
            continue
        owner_node = node.get("owner") or {}
        caption = _graph_caption(node)
        urls = node.get("urls") or ([node["display_url"]] if node.get("display_url") else [])
        common = {
            "tool": "instagram-scraper",
            "metadata_file": meta,
            "shortcode": shortcode,
            "owner": node.get("username") or owner_node.get("username") or target_owner,
            "owner_id": str(owner_node["id"]) if owner_node.get("id") is not None else None,
            "caption": caption,
            "hashtags": _hashtags(caption, node.get("tags")),
            "taken_at": _from_timestamp(node.get("taken_at_timestamp")),
            "likes": _graph_likes(node),
            "query": None if target_owner else meta.stem.lower(),
        }
        for i, url in enumerate(urls):
            name = urlsplit(url).path.rsplit("/", 1)[-1]
            if Path(name).suffix.lower() in VIDEO_EXTS:
                items.append(ScrapedItem(path=None, sidecar_index=i if len(urls) > 1 else None, **common))
                continue
            items.append(
                ScrapedItem(path=meta.parent / name, sidecar_index=i if len(urls) > 1 else None, **common)
            )
    return items


def read_gallery_dl(meta: Path, doc: dict[str, Any]) -> list[ScrapedItem]:
    shortcode = doc.get("post_shortcode") or doc.get("shortcode")
    if not shortcode:
        raise ValueError("no post_shortcode")
    image = meta.with_suffix("")  # photo.jpg.json -> photo.jpg
    if not image.suffix and doc.get("extension"):
        image = image.with_suffix("." + str(doc["extension"]))
    date = None
    for key in ("post_date", "date"):
        if doc.get(key):
            try:
                date = dt.datetime.fromisoformat(str(doc[key])).replace(tzinfo=dt.UTC)
                break
            except ValueError:
                pass
    count, num = _int(doc.get("count")) or 1, _int(doc.get("num"))
    caption = doc.get("description")
    owner_id = doc.get("owner_id")
    if str(doc.get("extension", image.suffix.lstrip("."))).lower() in {e.lstrip(".") for e in VIDEO_EXTS}:
        image = None
    return [
        ScrapedItem(
            path=image,
            tool="gallery-dl",
            metadata_file=meta,
            shortcode=str(shortcode),
            owner=doc.get("username"),
            owner_id=str(owner_id) if owner_id is not None else None,
            caption=caption,
            hashtags=_hashtags(caption, doc.get("tags")),
            taken_at=date,
            likes=_int(doc.get("likes")),
            sidecar_index=(num - 1) if count > 1 and num else None,
            query=str(doc["tag"]).lower() if doc.get("subcategory") == "tag" and doc.get("tag") else None,
        )
    ]


def detect(meta: Path, doc: Any) -> str | None:
    """Which tool wrote this metadata file (None: not one we read)."""
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("node"), dict) and (doc.get("instaloader") or {}).get("node_type") == "Post":
        return "instaloader"
    if isinstance(doc.get("GraphImages"), list):
        return "instagram-scraper"
    if doc.get("category") == "instagram" and (doc.get("post_shortcode") or doc.get("shortcode")):
        return "gallery-dl"
    return None


READERS = {
    "instaloader": read_instaloader,
    "instagram-scraper": read_instagram_scraper,
    "gallery-dl": read_gallery_dl,
}


def scan(root: Path, summary: ScrapedSummary) -> Iterator[ScrapedItem]:
    for meta in sorted(
        p for p in root.rglob("*") if p.is_file() and (p.suffix == ".json" or p.name.endswith(".json.xz"))
    ):
        try:
            doc = _read_json(meta)
            tool = detect(meta, doc)
            if tool is None:
                continue  # e.g. instaloader's profile files, a tool's own config
            items = READERS[tool](meta, doc)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, lzma.LZMAError) as e:
            summary.unreadable.append(
                {"path": str(meta.relative_to(root)), "reason": f"{type(e).__name__}: {e}"}
            )
            continue
        yield from items


# ------------------------------------------------------------------------------------------------ the API


def import_scraped(ws, folder: str | Path, *, progress: bool = True) -> ScrapedSummary:
    """Ingest the images of another scraper's download under `folder`, with their posts' provenance."""
    from curation.sources.instagram.scraper import taken_down_owners

    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise GhostsError(f"not a folder: {folder}")
    summary = ScrapedSummary()
    items = list(scan(root, summary))
    if not items:
        why = f"; {len(summary.unreadable)} metadata files could not be read" if summary.unreadable else ""
        raise GhostsError(
            f"no post metadata of instaloader (.json.xz / .json), instagram-scraper (--media-metadata) or gallery-dl "
            f"(--write-metadata) found under {root}{why}; for photos without metadata use `ghosts import`"
        )
    gone = taken_down_owners(ws)
    ingestor = Ingestor(ws)
    described = {it.path.resolve() for it in items if it.path is not None}
    summary.untracked_images = sum(
        1 for p in folder_images(root, recursive=True)[0] if p.resolve() not in described
    )
    summary.posts = len({(it.tool, it.shortcode) for it in items})
    for it in tqdm(items, desc="import-scraped", unit="img", disable=not progress):
        summary.by_tool[it.tool] = summary.by_tool.get(it.tool, 0) + 1
        if it.path is None:
            summary.videos_skipped += 1
            continue
        if it.owner in gone:
            summary.taken_down += 1
            continue
        if not it.path.is_file():
            summary.missing_files.append(str(it.path.relative_to(root)))
            continue
        result = ingestor.add(
            it.path.read_bytes(),
            name=it.path.name,
            source_kind="instagram",
            source_ref=POST_URL.format(it.shortcode),
            provenance=it.provenance(root),
            query=it.query,
            owner=it.owner.lower() if it.owner else None,
            shortcode=it.shortcode,
            post_url=POST_URL.format(it.shortcode),
            taken_at=it.taken_at,
            likes=it.likes,
        )
        if summary.tally(result, str(it.path.relative_to(root))) == "added":
            summary.without_owner += it.owner is None
    return summary
