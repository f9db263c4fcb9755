"""The garbage collector in groupspec's own long streaming processes (`groupspec replay`, `quarantine replay`,
`backfill`, the service's delivery process); never in a user's process (the SDK hook leaves it alone).

A streaming door allocates many short-lived objects per message and keeps few: reference counting frees them, and
the collector's young-generation passes (every 700 allocations by default) only rescan a growing heap. While
`streaming()` lasts, everything alive at its start is frozen out of collection (`gc.freeze`: configuration,
modules, the store's indexes so far) and a young pass runs every `YOUNG` allocations; on exit both are undone."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG = 50_000  # allocations between young-generation passes (Python's default: 700)


@contextmanager
def streaming() -> Iterator[None]:
    """The collector set for a streaming workload, restored afterwards."""
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, thresholds[1], thresholds[2])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
