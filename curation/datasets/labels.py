"""The shape of one entry of dataset.json's "labels" list, for every room that reads it (the verifier and the
archive reader)."""

from __future__ import annotations

from typing import Any


def is_label_pair(entry: Any) -> bool:
    """`entry` is ["member name", class] with an integer class (not a bool); the class range is the caller's."""
    return (
        isinstance(entry, list)
        and len(entry) == 2
        and isinstance(entry[0], str)
        and isinstance(entry[1], int)
        and not isinstance(entry[1], bool)
    )
