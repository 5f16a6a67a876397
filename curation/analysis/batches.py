"""Results from worker processes, stored in batches under a progress bar (both phases of `ghosts analyze`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from tqdm import tqdm


def store_in_batches(
    outcomes: Iterable[Any],
    store: Callable[[list[Any]], None],  # stores one batch (one transaction)
    *,
    total: int,
    desc: str,
    progress: bool,
    postfix: Callable[[], dict[str, Any]],  # figures shown after the bar, refreshed after each batch
    batch_size: int = 64,  # outcomes per batch ...
    batch_seconds: float = 2.0,  # ... or fewer, when this long has passed since the last batch
) -> None:
    """Feed `outcomes` to `store` a batch at a time; tqdm's bar shows the count, the rate and the time left."""
    batch: list[Any] = []
    with tqdm(total=total, unit="img", desc=desc, disable=not progress or not total) as bar:
        stored = time.monotonic()
        for outcome in outcomes:
            batch.append(outcome)
            bar.update(1)
            if len(batch) >= batch_size or time.monotonic() - stored >= batch_seconds:
                store(batch)
                batch = []
                stored = time.monotonic()
                bar.set_postfix(postfix(), refresh=False)
        if batch:
            store(batch)
        bar.set_postfix(postfix(), refresh=False)
