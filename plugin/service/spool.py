"""The on-disk spool: accepted requests in arrival order, in one SQLite file (WAL). A request is answered 200 only
after its row is committed; the worker removes rows once everything they held has been delivered."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, kind TEXT, received_at REAL NOT NULL,
    messages INTEGER NOT NULL, payload BLOB NOT NULL);
"""


class SpoolError(Exception):
    """The spool file cannot be opened or written."""


@dataclass(frozen=True)
class Entry:
    """One accepted request: the raw JSON body, its source, the endpoint's type (None for a batch)."""

    seq: int
    source: str | None
    kind: str | None
    received_at: float
    messages: int
    payload: bytes


class Spool:
    """Append (the intake), take in order and mark done (the worker). Safe to share between threads."""

    def __init__(self, path: str | Path, sync: str = "full") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.execute("PRAGMA busy_timeout=10000")
            self._db.executescript(_SCHEMA)
            self._waiting = self._db.execute("SELECT COALESCE(SUM(messages), 0) FROM spool").fetchone()[0]
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open the spool {self.path!r}: {exc}") from None
        self._lock = threading.Lock()

    @property
    def depth(self) -> int:
        """Messages accepted and not yet done."""
        return self._waiting

    def append(self, rows: list[tuple[str | None, str | None, float, int, bytes]]) -> None:
        """Commit `(source, kind, received_at, messages, payload)` rows in one transaction."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(
                    "INSERT INTO spool (source, kind, received_at, messages, payload) VALUES (?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                try:
                    self._db.rollback()
                except sqlite3.Error:
                    pass  # closed or broken: nothing was committed either way
                raise SpoolError(f"cannot write the spool {self.path!r}: {exc}") from None
            self._waiting += sum(row[3] for row in rows)

    def take(self, after: int, max_messages: int) -> list[Entry]:
        """The oldest entries after `after`, at least one, up to about `max_messages` messages in all."""
        out: list[Entry] = []
        total = 0
        with self._lock:
            cursor = self._db.execute(
                "SELECT seq, source, kind, received_at, messages, payload FROM spool WHERE seq > ? ORDER BY seq LIMIT 1000",
                (after,))
            for row in cursor:
                if out and total + row[4] > max_messages:
                    break
                out.append(Entry(*row))
                total += row[4]
            cursor.close()
        return out

    def done(self, entries: list[Entry]) -> None:
        """Remove delivered entries (the oldest ones)."""
        if not entries:
            return
        with self._lock:
            self._db.execute("DELETE FROM spool WHERE seq <= ?", (entries[-1].seq,))
            self._waiting -= sum(e.messages for e in entries)

    def close(self) -> None:
        with self._lock:
            self._db.close()
