"""Making erased rows unreadable in an SQLite file (the SQLite store, the service's spool), off the hot path.

The erasing statements run with `secure_delete` on (what they free is zeroed). After their commit, `scrub`
checkpoints the WAL into the database file and truncates it, then looks for the erased values' bytes in the file:
space freed earlier without zeroing (an ordinary delete, a row that grew) may still hold them, and then the file
is rebuilt (VACUUM) and checkpointed again."""

from __future__ import annotations

import mmap
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

CHECKPOINT_TRIES = 5


@contextmanager
def secure_delete(db: sqlite3.Connection) -> Iterator[None]:
    """Zero what the statements inside free, on this connection only."""
    db.execute("PRAGMA secure_delete = ON")
    try:
        yield
    finally:
        db.execute("PRAGMA secure_delete = OFF")


def checkpoint(db: sqlite3.Connection) -> bool:
    """Copy the WAL into the file and truncate it; False when readers kept it busy through every try."""
    for attempt in range(CHECKPOINT_TRIES):
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(0.05 * 2 ** attempt)
    return False


def holds(path: str, needles: Iterable[bytes]) -> bool:
    """Whether the file at `path` contains one of `needles` (a missing or empty file holds nothing)."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return any(data.find(needle) != -1 for needle in needles)
    except (OSError, ValueError):
        return False


def scrub(db: sqlite3.Connection, path: str, needles: Iterable[bytes], rebuild: bool = False) -> bool:
    """Checkpoint and truncate the WAL; rebuild the file when it still `holds` a needle (or `rebuild`). Run outside
    a transaction. False when the WAL could not be truncated now (a reader held it)."""
    if not checkpoint(db):
        return False
    if rebuild or holds(path, needles):
        db.execute("VACUUM")
        return checkpoint(db)
    return True
