"""Curation: sources, the catalog and image store, the review app, and frozen dataset archives."""
