"""The Instagram hashtag source: the scraper (loader, refusals, per-tag state, the tag walk and the multi-tag
run), the request-rate controller and saved login sessions."""
