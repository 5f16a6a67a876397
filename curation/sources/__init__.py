"""Where images come from: local folders (curation.sources.ingest), Instagram hashtags, URL lists."""
