"""`ghosts login`, `ghosts scrape`, `ghosts import-urls` and `ghosts import-scraped`: the network sources."""

# The commands import their rooms inside their bodies, for start-up cost: `ghosts --help` and every other
# command load torch, dlib, FastAPI or SQLAlchemy only when they need them.
from __future__ import annotations

from pathlib import Path

import click

from curation.catalog.errors import GhostsError
from curation.sources.instagram.session import BROWSERS
from flows.cli_options import count_option, data_option, echo_json, json_option, number_option, open_ws


@click.command()
@click.argument("username")
@click.option(
    "--cookies",
    "browser",
    type=click.Choice(BROWSERS, case_sensitive=False),
    default=None,
    help="Import the login of this browser instead of typing a password (the way instaloader "
    "recommends when a password login hits a checkpoint).",
)
@click.option(
    "--cookie-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The browser's cookie database (Firefox: cookies.sqlite), when it is not found by itself.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Do not log in: ask each endpoint the scraper uses once with the saved session, and print "
    "which ones answer (exit status 1 when the session is not logged in).",
)
@data_option
def login(
    username: str, browser: str | None, cookie_file: Path | None, check: bool, data: Path | None
) -> None:
    """Log in to Instagram as USERNAME and save the session in the workspace (mode 0600).

    Without --cookies, asks for the password (and a two-factor code when Instagram wants one). The
    password is never stored or logged; only the session cookies are kept, in DATA/sessions/USERNAME.json.
    """
    from curation.sources.instagram.scraper import make_loader
    from curation.sources.instagram.session import check_username, login_with_cookies, login_with_password

    username = check_username(username)
    ws = open_ws(data)
    if check:
        from curation.sources.instagram.diagnosis import check_report, check_saved_session

        checks, logged_in = check_saved_session(ws, username)
        for line in check_report(username, checks, logged_in):
            click.echo(line)
        if not logged_in:
            raise GhostsError(
                f"the saved session of {username} is not logged in: run `ghosts login {username}` "
                f"(or `--cookies firefox`) again"
            )
        return
    loader = make_loader()
    if browser or cookie_file:
        path = login_with_cookies(
            ws, loader, username, browser=(browser or "firefox"), cookie_file=cookie_file
        )
    else:
        path = login_with_password(
            ws,
            loader,
            username,
            ask_password=lambda: click.prompt(
                f"Instagram password for {username}", hide_input=True, err=True
            ),
            ask_code=lambda: click.prompt("Two-factor code from your app or SMS", err=True),
        )
    click.echo(f"logged in as {username}; session saved to {path}")
    click.echo(f"scrape with: ghosts scrape --session {username} --tag TAG")


@click.command()
@click.option(
    "--tag",
    "tags",
    multiple=True,
    required=True,
    metavar="TAG",
    help="Hashtag to scrape, without '#'; repeat for several tags.",
)
@count_option("--limit", help="New images to add per tag (posts already in the catalog do not count).")
@click.option(
    "--session",
    "session_user",
    default=None,
    metavar="USER",
    help="Saved session to use (see `ghosts login`); default: the only one saved.",
)
@click.option("--top-only", is_flag=True, help="Only the tag's top posts, not the recent feed.")
@click.option(
    "--restart", is_flag=True, help="Forget where the last run of each tag stopped; start from the newest."
)
@count_option(
    "--max-requests-per-hour",
    help="Cap on requests to Instagram per hour, on top of instaloader's own limits.",
)
@number_option(
    "--deadline",
    minimum=1,
    default=120.0,
    help="Most seconds one image download may take in all (retries included), however steadily it sends; "
    "a slower one is listed as failed and retried next run.",
)
@json_option()
@data_option
def scrape(
    tags: tuple[str, ...],
    limit: int | None,
    session_user: str | None,
    top_only: bool,
    restart: bool,
    max_requests_per_hour: int | None,
    deadline: float,
    as_json: bool,
    data: Path | None,
) -> None:
    """Scrape the images of Instagram posts by hashtag into the catalog.

    Resumable and incremental: each tag continues where its last run stopped, and posts already in the
    catalog are not fetched again. Videos are skipped. When Instagram refuses (login required, "please
    wait", checkpoint) the tag stops with what to do; the exit status is 1 when nothing could be fetched.
    """
    from curation.sources.instagram.scraper import scrape_error_message, scrape_tags

    ws = open_ws(data)
    summary = scrape_tags(
        ws,
        tags,
        session=session_user,
        limit=limit,
        top_only=top_only,
        restart=restart,
        max_requests_per_hour=max_requests_per_hour,
        progress=not as_json,
        download_deadline_s=deadline,
    )
    if as_json:
        echo_json(summary.as_dict())
    else:
        for t in summary.tags:
            resumed = ", resumed" if t.resumed else ""
            walked = ", feed done" if t.finished else ""
            click.echo(
                f"#{t.tag} ({t.feed or 'no feed'}{resumed}{walked}): added {t.added}, duplicates "
                f"{t.duplicates}, near duplicates {t.near_duplicates}, already in catalog {t.posts_known} "
                f"posts, videos skipped {t.videos_skipped}, refused {len(t.rejected)}, failed "
                f"{len(t.failed)}, left for next run {t.incomplete} posts"
            )
            if t.posts_taken_down:
                click.echo(f"  skipped {t.posts_taken_down} posts of accounts that asked for a takedown")
            for r in t.rejected + t.failed:
                click.echo(f"  {r['url']}: {r['reason']}")
            for note in t.notes:
                click.echo(f"  note: {note}")
        if summary.waited_s >= 1:
            click.echo(f"waited {round(summary.waited_s)} s for Instagram's rate limits")
    if summary.nothing_fetched_because_refused:
        raise GhostsError(scrape_error_message(summary))
    for message in summary.stopped:
        click.echo(f"ghosts: warning: stopped {message}", err=True)
    if summary.skipped_tags:
        click.echo("ghosts: warning: not tried: " + " ".join("#" + t for t in summary.skipped_tags), err=True)


@click.command(name="import-urls")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@number_option(
    "--timeout",
    minimum=1,
    default=30.0,
    help="Seconds to wait for a server's answer (connecting: at most 10).",
)
@number_option(
    "--max-mb",
    minimum=0.001,
    default=50.0,
    help="Largest image to download, in megabytes.",
)
@number_option(
    "--deadline",
    minimum=1,
    default=300.0,
    help="Most seconds one URL may take in all (retries included), however steadily it sends.",
)
@json_option()
@data_option
def import_urls(
    file: Path, timeout: float, max_mb: float, deadline: float, as_json: bool, data: Path | None
) -> None:
    """Import the images at the URLs listed in FILE (one per line, or a CSV with a `url` column).

    Each URL must answer with an image content type within the size limit. Servers that send
    `X-Robots-Tag: noai` or `noimageai` are respected: those images are refused. Failures are listed with
    their reasons and never stop the batch; URLs imported before are not fetched again.
    """
    from curation.sources.urls import FetchLimits, read_url_list
    from curation.sources.urls import import_urls as fetch_all

    ws = open_ws(data)
    urls = read_url_list(file)
    if not urls:
        raise GhostsError(
            f"no URLs in {file}: expected one http(s) URL per line or a CSV with a `url` column"
        )
    limits = FetchLimits(
        timeout=(min(10.0, timeout), timeout), max_bytes=int(max_mb * 1_000_000), deadline_s=deadline
    )
    summary = fetch_all(ws, urls, limits, progress=not as_json)
    if as_json:
        echo_json(summary.as_dict())
        return
    click.echo(
        f"added {summary.added}, duplicates {summary.duplicates}, near duplicates "
        f"{summary.near_duplicates}, converted {summary.converted}, refused {len(summary.rejected)}"
    )
    for r in summary.rejected:
        click.echo(f"  refused {r['url']}: {r['reason']}")


@click.command(name="import-scraped")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@json_option()
@data_option
def import_scraped(folder: Path, as_json: bool, data: Path | None) -> None:
    """Import another Instagram scraper's download in FOLDER, with each post's provenance.

    Reads instaloader's `.json.xz` / `.json` files, instagram-scraper's `--media-metadata` JSON and
    gallery-dl's `--write-metadata` sidecars: shortcode, post URL, owner, caption, tags, date and likes go
    into the catalog as for `ghosts scrape`, so takedown by owner works the same. Accounts that asked for a
    takedown are skipped.
    """
    from curation.sources.scraped import import_scraped as run_import

    summary = run_import(open_ws(data), folder, progress=not as_json)
    if as_json:
        echo_json(summary.as_dict())
        return
    for line in summary.lines():
        click.echo(line)


COMMANDS = [login, scrape, import_urls, import_scraped]
