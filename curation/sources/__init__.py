"""Where images come from: local folders (curation.ingest), Instagram hashtags, URL lists."""
