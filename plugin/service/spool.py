"""The on-disk spool: accepted requests in arrival order, in one SQLite file (WAL). A request is answered 200 only
after its row is committed; the worker removes rows once everything they held has been delivered.

The intake and the worker write through separate connections, and WAL checkpoints run in a thread of their own,
so neither a worker's delete nor a checkpoint's copy holds up a commit that requests are waiting for.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, kind TEXT, received_at REAL NOT NULL,
    messages INTEGER NOT NULL, payload BLOB NOT NULL);
"""
CHECKPOINT_EVERY = 1.0  # seconds


class SpoolError(OSError):
    """The spool file cannot be opened or written, or another process is using it."""


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
    """Append (the intake's thread), take in order and mark done (the worker's thread)."""

    def __init__(self, path: str | Path, sync: str = "full") -> None:
        self.path = str(path)
        self._sync = "FULL" if sync == "full" else "NORMAL"
        self._lock_fd = _lock(self.path + ".lock")  # one worker per spool: order and no double delivery
        self._intake = self._connect()
        self._worker = self._connect()
        try:
            self._intake.executescript(_SCHEMA)
            self._waiting = self._intake.execute("SELECT COALESCE(SUM(messages), 0) FROM spool").fetchone()[0]
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open the spool {self.path!r}: {exc}") from None
        self._count = threading.Lock()
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="groupspec-spool-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self._sync}")
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpoint thread does it
            return db
        except sqlite3.Error as exc:
            raise SpoolError(f"cannot open the spool {self.path!r}: {exc}") from None

    @property
    def depth(self) -> int:
        """Messages accepted and not yet done."""
        return self._waiting

    def append(self, rows: list[tuple[str | None, str | None, float, int, bytes]]) -> None:
        """Commit `(source, kind, received_at, messages, payload)` rows in one transaction."""
        db = self._intake
        try:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO spool (source, kind, received_at, messages, payload) VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                db.rollback()
            except sqlite3.Error:
                pass  # closed or broken: nothing was committed either way
            raise SpoolError(f"cannot write the spool {self.path!r}: {exc}") from None
        with self._count:
            self._waiting += sum(row[3] for row in rows)

    def take(self, after: int, max_messages: int) -> list[Entry]:
        """The oldest entries after `after`, at least one, up to about `max_messages` messages in all."""
        out: list[Entry] = []
        total = 0
        cursor = self._worker.execute(
            "SELECT seq, source, kind, received_at, messages, payload FROM spool WHERE seq > ? ORDER BY seq", (after,))
        try:
            for row in cursor:
                if out and total + row[4] > max_messages:
                    break
                out.append(Entry(*row))
                total += row[4]
        finally:
            cursor.close()
        return out

    def done(self, entries: list[Entry]) -> None:
        """Remove delivered entries (the oldest ones)."""
        if not entries:
            return
        self._worker.execute("DELETE FROM spool WHERE seq <= ?", (entries[-1].seq,))
        with self._count:
            self._waiting -= sum(e.messages for e in entries)

    def _checkpoints(self) -> None:
        db = self._connect()
        try:
            while not self._closed.wait(CHECKPOINT_EVERY):
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy or closing: the next round tries again
        finally:
            db.close()

    def close(self) -> None:
        self._closed.set()
        self._checkpointer.join()
        self._intake.close()
        self._worker.close()
        os.close(self._lock_fd)  # releases the lock (the kernel also does when the process dies, even by kill -9)


def _lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise SpoolError(f"cannot open the spool lock {path!r}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SpoolError(f"the spool {path.removesuffix('.lock')!r} is in use by another groupspec serve") from None
    return fd
