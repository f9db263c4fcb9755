"""The on-disk spool: accepted requests in arrival order, in one SQLite file (WAL). A request is answered 200 only
after its row is committed; the worker removes rows once everything they held has been delivered.

`Spool` is the service's side (append, depth, the lock, WAL checkpoints in a thread of their own); `SpoolQueue` is
the delivery process's side (take, done). The worker's state (counters, problem, the quarantine file's committed
size) is a row of the same file, written in the transaction that removes delivered rows, so the spool depth and
the counters always agree; it outlives restarts of the service.

The file carries its format version (`groupspec.middleware.stores.formats`: `FORMAT.migrations` brings an older
spool up to date when the service opens it) and is created owner-only, as are its -wal, -shm and lock files.

Erasure (`erase`): a row is a whole request; a forgotten person's messages are removed from the rows no delivery
holds, in one transaction, and counted in `erased` (the depth leaves them out). The worker holds ``PATH.delivery``
while it takes, sends and commits a chunk, after passing ``PATH.erasing`` (`SpoolQueue.delivering`); `erase` holds
both, so it waits for the chunk being sent and no new one starts until it is done. The lock files are
owner-only and fork-safe (`private.flock`).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware.scrub import scrub, secure_delete

from groupspec.middleware import private
from groupspec.middleware.stores.formats import Format, open_sqlite

#: the tables of groupspec 0.1.0 (created when missing)
_TABLES = (
    "CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT, kind TEXT,"
    " received_at REAL NOT NULL, messages INTEGER NOT NULL, payload BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS worker_state (id INTEGER PRIMARY KEY CHECK (id = 1), state BLOB NOT NULL)",
)


def _unversioned(db: sqlite3.Connection) -> None:
    """Version 0 -> 1: the layout of groupspec 0.1.0 (from nothing, or a spool it wrote)."""
    for statement in _TABLES:
        db.execute(statement)


def _erased_table(db: sqlite3.Connection) -> None:
    """Version 1 -> 2 (erasure, issue 23): the table `erased`, the count of messages an erasure removed from
    unsent requests (the depth leaves them out). Self-contained: renumbering it is moving it."""
    db.execute("CREATE TABLE IF NOT EXISTS erased (id INTEGER PRIMARY KEY CHECK (id = 1), messages INTEGER NOT NULL)")


#: the spool file's format: `migrations[n]` takes version n to n + 1 (a later format appends its function)
FORMAT: Format[sqlite3.Connection] = Format("spool", [_unversioned, _erased_table])
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
    """The service's side: append (the intake's commit thread); `depth` and `worker_state()` for any thread.
    `lock_fd` holds the one-service lock; a delivery process that inherits it keeps the spool locked while it lives."""

    def __init__(self, path: str | Path, sync: str = "full") -> None:
        self.path = str(path)
        self.sync = sync
        self.lock_fd = _lock(self.path + ".lock")  # one service per spool: order and no double delivery
        self._intake = _connect(self.path, sync)
        self._reader = _connect(self.path, sync)
        try:
            open_sqlite(self._intake, FORMAT, f"the spool {self.path!r}")
            waiting = self._intake.execute("SELECT COALESCE(SUM(messages), 0) FROM spool").fetchone()[0]
            row = self._intake.execute("SELECT state FROM worker_state WHERE id = 1").fetchone()
            state = orjson.loads(row[0]) if row else {}
            if state.get("problem"):  # the problem of a delivery process that is gone is not this one's
                self._intake.execute("UPDATE worker_state SET state = ? WHERE id = 1",
                                     (orjson.dumps({**state, "problem": None}),))
            self._waiting = waiting + state.get("done", 0) + _erased(self._intake)  # carried across restarts
        except sqlite3.Error as exc:
            os.close(self.lock_fd)
            raise SpoolError(f"cannot open the spool {self.path!r}: {exc}") from None
        except BaseException:  # a newer format, another kind of file (FormatError)
            os.close(self.lock_fd)
            raise
        self.failing: str | None = None  # why the last append failed (a full disk), until one succeeds
        self._count = threading.Lock()
        self._read = threading.Lock()
        self._closed = threading.Event()
        self._checkpointer = threading.Thread(target=self._checkpoints, name="groupspec-spool-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    @property
    def depth(self) -> int:
        """Messages accepted and not yet done (nor erased)."""
        try:
            with self._read:
                erased = _erased(self._reader)
        except sqlite3.Error:
            erased = 0
        return self._waiting - self.worker_state().get("done", 0) - erased

    def worker_state(self) -> dict:
        """What the delivery process last recorded (`SpoolQueue.done`/`publish`); {} before it has."""
        try:
            with self._read:
                row = self._reader.execute("SELECT state FROM worker_state WHERE id = 1").fetchone()
        except sqlite3.Error:
            return {}
        return orjson.loads(row[0]) if row else {}

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
            self.failing = f"cannot write the spool {self.path!r}: {exc}"
            raise SpoolError(self.failing) from None
        self.failing = None
        with self._count:
            self._waiting += sum(row[3] for row in rows)

    def _checkpoints(self) -> None:
        db = _connect(self.path, self.sync)
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
        with self._read:
            self._reader.close()
        os.close(self.lock_fd)  # releases the lock (the kernel also does when the process dies, even by kill -9)


class SpoolQueue:
    """The delivery process's side: take entries in order, remove them once done, record the worker's state.
    It takes no lock: the process that opens it runs under the service's (see `Spool.lock_fd`)."""

    def __init__(self, path: str | Path, sync: str = "full") -> None:
        self.path = str(path)
        self._db = _connect(self.path, sync)

    @contextmanager
    def delivering(self) -> Iterator[None]:
        """Hold the spool against an erasure while a chunk is taken, sent and committed (after one waiting)."""
        with _flock(self.path + ".erasing", fcntl.LOCK_SH):
            pass  # an erasure holds it: wait for it, without keeping it from the next one
        with _flock(self.path + ".delivery", fcntl.LOCK_EX):
            yield

    def state(self) -> dict:
        """The state a previous delivery process of this service recorded ({} if none)."""
        row = self._db.execute("SELECT state FROM worker_state WHERE id = 1").fetchone()
        return orjson.loads(row[0]) if row else {}

    def take(self, after: int, max_messages: int) -> list[Entry]:
        """The oldest entries after `after`, at least one, up to about `max_messages` messages in all."""
        out: list[Entry] = []
        total = 0
        cursor = self._db.execute(
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

    def done(self, entries: list[Entry], state: dict) -> None:
        """Remove delivered entries (the oldest ones) and record `state` (whose "done" counts them), atomically."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if entries:
                db.execute("DELETE FROM spool WHERE seq <= ?", (entries[-1].seq,))
            db.execute("INSERT OR REPLACE INTO worker_state (id, state) VALUES (1, ?)", (orjson.dumps(state),))
            db.execute("COMMIT")
        except BaseException:
            db.rollback()
            raise

    def publish(self, state: dict) -> None:
        """Record `state` alone (a problem, counters that changed while a chunk waits)."""
        self.done([], state)

    def close(self) -> None:
        self._db.close()


@contextmanager
def erasing(path: str, wait: float = 60.0) -> Iterator[None]:
    """Hold the spool at `path` against delivery: wait (`wait` seconds at most, else TimeoutError) for the chunk
    being sent, and start none until the block ends."""
    with _flock(path + ".erasing", fcntl.LOCK_EX, wait), _flock(path + ".delivery", fcntl.LOCK_EX, wait):
        yield


def erase(path: str, without: Callable[[Any], bool], names: list[str], *, dry_run: bool = False) -> int:
    """Inside `erasing`: remove the messages `without` picks (a parsed message -> True to remove) from the spool's
    rows in one transaction (a request left empty goes whole); then truncate the WAL and, if a JSON string of
    `names` is still in the file (delivered rows' freed space too), rebuild it. The messages removed (`dry_run`:
    that would be)."""
    db = _connect(path, "full")
    try:
        open_sqlite(db, FORMAT, f"the spool {path!r}")  # a spool no service has opened since the upgrade
        db.execute("BEGIN IMMEDIATE")
        changes = [(seq, *_without(payload, messages, without))
                   for seq, messages, payload in db.execute("SELECT seq, messages, payload FROM spool")]
        changes = [change for change in changes if change[2]]
        removed = sum(change[2] for change in changes)
        if dry_run or not removed:
            db.execute("ROLLBACK")
            if dry_run:
                return removed
        with secure_delete(db):
            for seq, payload, _, left in changes:
                if left:
                    db.execute("UPDATE spool SET payload = ?, messages = ? WHERE seq = ?", (payload, left, seq))
                else:
                    db.execute("DELETE FROM spool WHERE seq = ?", (seq,))
            if removed:
                db.execute("INSERT INTO erased VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET messages = messages + ?",
                           (removed, removed))
                db.execute("COMMIT")
        if not scrub(db, path, [orjson.dumps(name) for name in names]):
            raise TimeoutError(f"the spool {path!r}: its WAL was held by a reader; run the erasure again")
        return removed
    except sqlite3.Error as exc:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise SpoolError(f"cannot erase from the spool {path!r}: {exc}") from None
    finally:
        db.close()


def _without(payload: bytes, messages: int, without: Callable[[Any], bool]) -> tuple[bytes, int, int]:
    """``(payload, messages removed, messages left)`` of one spooled request: a batch loses the picked members; a
    single message (or a body that is no JSON object, matched as text) goes whole when picked."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = payload.decode("utf-8", "replace")
    batch = body.get("batch") if isinstance(body, dict) else None
    if isinstance(batch, list):
        kept = [member for member in batch if not without(member)]
        if len(kept) == len(batch):
            return payload, 0, messages
        left = min(messages, len(kept))
        return orjson.dumps({**body, "batch": kept}), messages - left, left
    return (payload, messages, 0) if without(body) else (payload, 0, messages)


def _erased(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT messages FROM erased WHERE id = 1").fetchone()
    return row[0] if row else 0


@contextmanager
def _flock(path: str, kind: int, wait: float | None = None) -> Iterator[None]:
    """Hold a `flock` of the lock file at `path` (`private.flock`: owner-only, fork-safe; `wait` seconds at most,
    else TimeoutError; None: as long as it takes)."""
    busy = (f"{path.rsplit('.', 1)[0]!r} is being delivered for longer than {wait:.0f}s (is Customer.io "
            "answering?); try again") if wait is not None else None
    with private.flock(path, kind, wait, busy):
        yield


def _connect(path: str, sync: str) -> sqlite3.Connection:
    try:
        private.create(path)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA wal_autocheckpoint=0")  # the service's checkpoint thread does it
        return db
    except (sqlite3.Error, OSError) as exc:
        raise SpoolError(f"cannot open the spool {path!r}: {exc}") from None


def _lock(path: str) -> int:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, private.FILE_MODE)
    except OSError as exc:
        raise SpoolError(f"cannot open the spool lock {path!r}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise SpoolError(f"the spool {path.removesuffix('.lock')!r} is in use by another groupspec serve") from None
    return fd
