"""The Instagram hashtag source, by concern: `loader` (instaloader configured for scraping), `refusals` (what an
answer means and what to do), `diagnosis` (telling a dead endpoint from a rate limit, a logout, a checkpoint or
no network, by probing with the same session; `ghosts login --check`), `feeds` (the recent feed, the hashtag
sections endpoint, the top posts, each resumable), `state` (per-tag `scrape/<tag>.json`), `scraper` (the tag walk
and the multi-tag run), `rate` (the request-rate controller) and `session` (saved logins, cookie import)."""
