"""Prefect flows and the ghosts CLI: composition only."""
