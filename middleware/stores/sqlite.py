"""The embedded default store: one SQLite file in WAL mode, safe to share between threads and across `os.fork()`.

`messages` numbers each message id in the order the file first saw it; the facts carry that number (`arrived`,
NULL in a file written before it existed: always known). `messages.ts` (the event time) is what `compact` prunes
arrival records by, and it is the first arrival's time a re-send gets back (`arrive`); a file written before it
existed gets 0 (the first compaction removes those records; a re-send keeps its own time). Links are never pruned;
a file written by a release that pruned them keeps its unused `links.ts` column.

The file carries its format version (`formats.py`); `FORMAT.migrations` brings an older file up to date on open
(version 2: group id migrations' tables `migrations` and `relationships`, and `traits.source`).
It is created owner-only (`private.py`). At a fork (`forks.py`) the store waits for a transaction in flight,
closes its connection (SQLite's rule: none crosses a fork) and opens it again in the parent and in the child.

Version 3 adds erasure (`_privacy`): `privacy` holds the store's own hash key and whether message ids are keyed
hashes (`rekey` made them so, in the migration, with that key); `forgotten` the keyed hashes of forgotten person
keys. `forget` deletes with `secure_delete` on; `scrub` (after the commit: `middleware/scrub.py`) truncates the WAL
and rebuilds the file if an erased key is still in it (or a migration re-keyed plain message ids)."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

from .. import forks, private
from ..migrations import Migration
from ..scrub import scrub, secure_delete
from .base import Activity, Lookup, Membership, Store, StoreError, TraitEntry
from .formats import Format, open_sqlite
from .history import Deletion, Event, fold_memberships, linked, stale_after, unknown

log = logging.getLogger("groupspec")

#: the tables of groupspec 0.1.0 (created when missing)
_TABLES = """
CREATE TABLE IF NOT EXISTS links (
    a TEXT NOT NULL, b TEXT NOT NULL, arrived INTEGER, PRIMARY KEY (a, b)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memberships (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, person TEXT NOT NULL, type_id TEXT NOT NULL, group_id TEXT NOT NULL,
    ts REAL NOT NULL, joined INTEGER NOT NULL, arrived INTEGER, UNIQUE (person, type_id, group_id, ts, joined));
CREATE TABLE IF NOT EXISTS deletions (
    type_id TEXT NOT NULL, group_id TEXT NOT NULL, ts REAL NOT NULL, arrived INTEGER,
    PRIMARY KEY (type_id, group_id, ts)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS traits (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type_id TEXT NOT NULL, group_id TEXT NOT NULL, name TEXT NOT NULL,
    ts REAL NOT NULL, message_id TEXT NOT NULL, value BLOB NOT NULL, arrived INTEGER,
    UNIQUE (type_id, group_id, name, message_id));
CREATE TABLE IF NOT EXISTS messages (
    arrived INTEGER PRIMARY KEY AUTOINCREMENT, message_id TEXT NOT NULL UNIQUE, ts REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS activity (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type_id TEXT NOT NULL, group_id TEXT NOT NULL, message_id TEXT NOT NULL,
    ts REAL NOT NULL, value BLOB NOT NULL, UNIQUE (type_id, group_id, message_id));
CREATE TABLE IF NOT EXISTS rollups_pending (
    type_id TEXT NOT NULL, group_id TEXT NOT NULL, due REAL NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (type_id, group_id)) WITHOUT ROWID
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS traits_by_name ON traits (type_id, group_id, name, ts);
CREATE INDEX IF NOT EXISTS activity_by_time ON activity (type_id, group_id, ts);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (ts);
CREATE INDEX IF NOT EXISTS activity_by_ts ON activity (ts)
"""
#: columns the files of earlier 0.x releases lack: arrival numbers (NULL: always known), event times for retention
_ADDED = {("links", "arrived"): "INTEGER", ("memberships", "arrived"): "INTEGER", ("deletions", "arrived"): "INTEGER",
          ("traits", "arrived"): "INTEGER", ("messages", "ts"): "REAL NOT NULL DEFAULT 0"}


def _unversioned(db: sqlite3.Connection) -> None:
    """Version 0 -> 1: the layout of groupspec 0.1.0, from nothing or from any earlier file: its tables, the
    columns an earlier file lacks, then the indexes (some name those columns)."""
    for statement in _TABLES.split(";"):  # one at a time: `executescript` would commit the migration's transaction
        db.execute(statement)
    for (table, column), kind in _ADDED.items():
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for statement in _INDEXES.split(";"):
        db.execute(statement)


#: the tables of group id migrations (issue 21): relationship attributes of group calls, migrations as facts
_MIGRATION_TABLES = """
CREATE TABLE IF NOT EXISTS relationships (
    type_id TEXT NOT NULL, group_id TEXT NOT NULL, person TEXT NOT NULL, ts REAL NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (type_id, group_id, person)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS migrations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, type_id TEXT NOT NULL, old_id TEXT NOT NULL, new_id TEXT NOT NULL,
    mode TEXT NOT NULL, at REAL NOT NULL, keep_old INTEGER NOT NULL, arrived INTEGER, UNIQUE (type_id, old_id))
"""


def _migrations_layout(db: sqlite3.Connection) -> None:
    """Version 1 -> 2, group id migrations (issue 21): the tables `relationships` and `migrations`, and the
    column `traits.source` (the writing source of a trait value; NULL in rows written before it was kept)."""
    for statement in _MIGRATION_TABLES.split(";"):
        db.execute(statement)
    if "source" not in {row[1] for row in db.execute("PRAGMA table_info(traits)")}:
        db.execute("ALTER TABLE traits ADD COLUMN source TEXT")


_PRIVACY = """
CREATE TABLE IF NOT EXISTS privacy (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forgotten (hash TEXT PRIMARY KEY) WITHOUT ROWID
"""
#: the tables holding message ids (`rekey` turns plain ones, which contain U+001F separators, into keyed hashes)
_MESSAGE_IDS = ("messages", "traits", "activity")


def _privacy(db: sqlite3.Connection) -> None:
    """Version 2 -> 3 (erasure, issue 23): the `privacy` table with the store's own random hash key and the
    `forgotten` table; every message id (all plain before version 3) re-keyed (`rekey`) with the store's key, then
    marked keyed. When it
    re-keyed any, it leaves the row `rebuild`: the store rebuilds the file after the migration's commit (VACUUM:
    the plain ids, which name people, must not stay in free pages). Self-contained: renumbering it is moving it."""
    from ..privacy import KeyedHash  # the hash the engine uses (privacy.py imports the stores)

    for statement in _PRIVACY.split(";"):
        db.execute(statement)
    db.execute("INSERT OR IGNORE INTO privacy VALUES ('key', randomblob(32))")
    secret = db.execute("SELECT value FROM privacy WHERE name = 'key'").fetchone()[0]
    if not db.execute("SELECT 1 FROM privacy WHERE name = 'message_keys'").fetchone():
        if rekey(db, KeyedHash(secret), every=True):
            db.execute("INSERT OR REPLACE INTO privacy VALUES ('rebuild', 1)")
        db.execute("INSERT OR IGNORE INTO privacy VALUES ('message_keys', 'keyed')")


#: the store file's format: `migrations[n]` takes version n to n + 1 (a later format appends its function)
FORMAT: Format[sqlite3.Connection] = Format("store", [_unversioned, _migrations_layout, _privacy])


class _Unusable:
    """Stands for a connection the store no longer has (closed, or not opened again after a fork): every use
    says why."""

    in_transaction = False

    def __init__(self, why: str) -> None:
        self.why = why

    def execute(self, *args: Any) -> Any:
        raise sqlite3.OperationalError(self.why)

    executemany = execute

    def close(self) -> None:
        pass


#: `compact(horizon)`: every statement takes the horizon as ?1; each history keeps its latest fact before it
_COMPACT = {
    "arrivals": "DELETE FROM messages WHERE ts < ?1",
    "memberships": "DELETE FROM memberships WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() OVER (PARTITION"
                   " BY person, type_id, group_id ORDER BY ts DESC, seq DESC) AS n FROM memberships WHERE ts < ?1)"
                   " WHERE n > 1)",
    "deletions": "DELETE FROM deletions WHERE ts < (SELECT max(d.ts) FROM deletions d WHERE d.type_id ="
                 " deletions.type_id AND d.group_id = deletions.group_id AND d.ts < ?1)",
    "traits": "DELETE FROM traits WHERE seq IN (SELECT seq FROM (SELECT seq, row_number() OVER (PARTITION BY type_id,"
              " group_id, name ORDER BY ts DESC, seq DESC) AS n FROM traits WHERE ts < ?1) WHERE n > 1)",
    "activity": "DELETE FROM activity WHERE ts < ?1",
}
_SIZE = {"arrivals": "messages", "links": "links", "memberships": "memberships", "deletions": "deletions",
         "traits": "traits", "activity": "activity", "pending": "rollups_pending"}


#: `lookup`'s one query for a person (?1) at a time (?2): its links ``(NULL, key, …, arrived, …)``, then its
#: membership events, each with the deletions of its group (rarely any), as `memberships_at` reads them
_PERSON = ("SELECT NULL, b, NULL, NULL, NULL, arrived, NULL, NULL FROM links WHERE a = ?1 UNION ALL"
           " SELECT m.type_id, m.group_id, m.ts, m.seq, m.joined, m.arrived, d.ts, d.arrived FROM memberships m"
           " LEFT JOIN deletions d ON d.type_id = m.type_id AND d.group_id = m.group_id AND d.ts <= ?2"
           " WHERE m.person = ?1 AND m.ts <= ?2")


def _fold(rows: list[tuple], ts: float, before: int | None) -> list[Membership]:
    """The memberships in force at `ts` from rows ``(type, group, ts, seq, joined, arrived, deleted ts, deleted
    arrived)`` (a membership event joined with each deletion of its group)."""
    if not rows:
        return []
    events = {seq: (t, g, at, seq, bool(j), arr) for t, g, at, seq, j, arr, _, _ in rows}
    deletions: dict[tuple[str, str], list[tuple[float, int | None]]] = {}
    for t, g, *_, gone, gone_arrived in rows:
        if gone is not None and (gone, gone_arrived) not in deletions.setdefault((t, g), []):
            deletions[(t, g)].append((gone, gone_arrived))
    return fold_memberships(events.values(), deletions, ts, before)


class SQLiteStore(Store):
    """Point-in-time membership, identity links and group trait history in one SQLite file."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.where = f"SQLite store {path!r}"
        self._erased: list[str] = []  # keys `forget` removed that `scrub` has not yet made unreadable
        self._rebuild = False  # `scrub` rebuilds the file (VACUUM): plain message keys were re-keyed
        try:
            if path != ":memory:":
                private.create(path)
            self._db = self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open {self.where}: {exc}") from None
        try:
            open_sqlite(self._db, FORMAT, self.where)
        except (sqlite3.Error, StoreError) as exc:
            self._db.close()
            if isinstance(exc, StoreError):  # a newer format, another kind of file
                raise
            raise StoreError(f"cannot open {self.where}: {exc}") from None
        self._lock = threading.RLock()
        self._grouped = False  # inside `transaction`: writes join its commit
        self._closed_for_fork = False
        forks.register(self)
        self._after_rekey()

    def _after_rekey(self) -> None:
        """After a migration re-keyed plain message ids (`_privacy`): rebuild the file and truncate the WAL, then
        drop the mark (a reader holding the WAL: the next transaction's `scrub` finishes it)."""
        if self._rows("SELECT 1 FROM privacy WHERE name = 'rebuild'"):
            self._rebuild = True
            if self.scrub():
                self._write("DELETE FROM privacy WHERE name = 'rebuild'", [()])

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        return db

    def before_fork(self) -> None:
        """Wait for the transaction in flight (another thread's), then close the connection."""
        self._lock.acquire()
        db = self._db  # the forking thread's own transaction (it holds the lock already) stays open
        self._closed_for_fork = isinstance(db, sqlite3.Connection) and not db.in_transaction
        if self._closed_for_fork:
            db.close()

    def after_fork(self, child: bool) -> None:
        """Open the connection again (a child: with a new lock; a connection the fork cut mid-transaction is
        not the child's to use)."""
        if child:
            self._lock, self._grouped = threading.RLock(), False
            if isinstance(self._db, sqlite3.Connection) and not self._closed_for_fork:
                self._db = _Unusable(f"{self.where} was forked inside one of its transactions; open it again")
        if self._closed_for_fork:
            try:
                self._db = self._connect()
            except sqlite3.Error as exc:
                self._db = _Unusable(f"cannot open {self.where} again after a fork: {exc}")
            self._closed_for_fork = False
        if not child:
            self._lock.release()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.where}: {exc}") from None
            self._grouped = True
            try:
                yield
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"{self.where}: {exc}") from None
            finally:
                self._grouped = False
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                    self._erased = []  # rolled back: nothing was erased
            if (self._erased or self._rebuild) and not self.scrub():  # a chunk that erased someone: after its commit
                log.warning("SQLite store: the WAL could not be truncated after an erasure (a reader held it); "
                            "`groupspec people forget` or the next erasure finishes it")

    def _rows(self, sql: str, args: tuple | list = ()) -> list[tuple]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.where}: {exc}") from None

    @contextmanager
    def _immediate(self, failure: str = "") -> Iterator[sqlite3.Connection]:
        """Several statements as one write (inside a chunk's transaction: part of it), under the store's lock; an
        SQLite error rolls a write of its own back and is a `StoreError` naming the file (after `failure`)."""
        with self._lock:
            try:
                if not self._grouped:
                    self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                if not self._grouped:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if not self._grouped and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"{self.where}: {failure}{exc}") from None

    def _write(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            if self._grouped:  # a failed statement leaves the grouped transaction intact
                try:
                    self._db.executemany(sql, rows)
                except sqlite3.Error as exc:
                    raise StoreError(f"{self.where}: {exc}") from None
                return
            try:
                self._db.execute("BEGIN")
                self._db.executemany(sql, rows)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"{self.where}: {exc}") from None

    def link(self, key: str, other: str, arrived: int | None = None) -> None:
        if key != other:  # the first `arrived` stays
            self._write("INSERT OR IGNORE INTO links (a, b, arrived) VALUES (?, ?, ?)",
                        [(key, other, arrived), (other, key, arrived)])

    def identities(self, key: str, before: int | None = None) -> list[str]:
        return linked(key, lambda k: self._rows("SELECT b, arrived FROM links WHERE a = ?", (k,)), before)

    def admit(self, message_id: str, ts: float = 0.0) -> int:
        return self.arrive(message_id, ts)[0]

    def arrive(self, message_id: str, ts: float = 0.0, timeless: bool = False) -> tuple[int, float | None]:
        with self._lock:
            try:  # most messages are new: one insert; a replayed (or concurrently numbered) one: one lookup more
                cursor = self._db.execute("INSERT OR IGNORE INTO messages (message_id, ts) VALUES (?, ?)",
                                          (message_id, ts))
                if cursor.rowcount == 1:
                    return cursor.lastrowid, ts
                arrived, first = self._db.execute("SELECT arrived, ts FROM messages WHERE message_id = ?",
                                                  (message_id,)).fetchone()
                return arrived, first or None  # 0: a record written before `messages.ts` existed
            except sqlite3.Error as exc:
                raise StoreError(f"{self.where}: {exc}") from None

    def record_membership(self, person: str, object_type_id: str, group_id: str, ts: float, joined: bool,
                          arrived: int | None = None) -> None:
        self._write(
            "INSERT OR IGNORE INTO memberships (person, type_id, group_id, ts, joined, arrived) VALUES (?, ?, ?, ?, ?, ?)",
            [(person, object_type_id, group_id, ts, int(joined), arrived)],
        )

    def record_object_deleted(self, object_type_id: str, group_id: str, ts: float, arrived: int | None = None) -> None:
        self._write("INSERT OR IGNORE INTO deletions (type_id, group_id, ts, arrived) VALUES (?, ?, ?, ?)",
                    [(object_type_id, group_id, ts, arrived)])

    def lookup(self, message_id: str, persons: list[str], ts: float, names: list[str] = (),
               group: tuple[str, Any] | None = None, event_ts: float | None = None,
               stale_group: tuple[str, Any] | None = None, stale_names: list[str] = (),
               timeless: bool = False) -> Lookup:
        """The base class's lookup; for one person and no stale check (most messages), `arrive` then one query
        for the person's links and memberships (`_PERSON`): two statements, not three. A person with a link
        known before the message's arrival takes the base's walk."""
        if stale_group is not None or len(persons) != 1:
            return super().lookup(message_id, persons, ts, names, group, event_ts, stale_group, stale_names, timeless)
        arrival, first_ts = self.arrive(message_id, ts if event_ts is None else event_ts, timeless)
        rows = self._rows(_PERSON, (persons[0], ts))
        if any(row[0] is None and not unknown(row[5], arrival) for row in rows):  # linked to other keys
            keys = self.identities(persons[0], before=arrival)
            return Lookup(arrival, keys, self.memberships_at(keys, ts, before=arrival), {}, None, first_ts)
        return Lookup(arrival, [persons[0]], _fold([row for row in rows if row[0] is not None], ts, arrival), {},
                      None, first_ts)

    def memberships_at(self, persons: list[str], ts: float, before: int | None = None) -> list[Membership]:
        marks = ",".join("?" * len(persons))
        rows = self._rows(  # one query: the events, each with the deletions of its group (rarely any)
            "SELECT m.type_id, m.group_id, m.ts, m.seq, m.joined, m.arrived, d.ts, d.arrived FROM memberships m"
            " LEFT JOIN deletions d ON d.type_id = m.type_id AND d.group_id = m.group_id AND d.ts <= ?"
            f" WHERE m.person IN ({marks}) AND m.ts <= ?",
            [ts, *persons, ts],
        )
        return _fold(rows, ts, before)

    def stale_traits(self, object_type_id: str, group_id: str, names: list[str], ts: float, message_id: str,
                     before: int | None = None) -> set[str]:
        stale = set()
        for name in names:
            entries = self._rows(
                "SELECT ts, seq, message_id, arrived FROM traits WHERE type_id = ? AND group_id = ? AND name = ?",
                (object_type_id, group_id, name),
            )
            if stale_after(entries, ts, message_id, before):
                stale.add(name)
        return stale

    def apply_traits(self, object_type_id: str, group_id: str, traits: dict[str, Any], ts: float, message_id: str,
                     arrived: int | None = None, source: str | None = None) -> None:
        self._write(
            "INSERT OR IGNORE INTO traits (type_id, group_id, name, ts, message_id, value, arrived, source)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(object_type_id, group_id, name, ts, message_id, orjson.dumps(value), arrived, source)
             for name, value in traits.items()],
        )

    def trait_history(self, object_type_id: str, group_id: str, name: str) -> list[TraitEntry]:
        rows = self._rows("SELECT ts, seq, message_id, value, arrived, source FROM traits WHERE type_id = ? AND"
                          " group_id = ? AND name = ? ORDER BY seq", (object_type_id, group_id, name))
        return [TraitEntry(at, seq, mid, orjson.loads(value), arrived, source)
                for at, seq, mid, value, arrived, source in rows]

    def record_relationship(self, person: str, object_type_id: str, group_id: str, attributes: dict[str, Any],
                            ts: float) -> None:
        self._write("INSERT INTO relationships VALUES (?, ?, ?, ?, ?) ON CONFLICT (type_id, group_id, person) DO UPDATE"
                    " SET ts = excluded.ts, value = excluded.value WHERE excluded.ts >= relationships.ts",
                    [(object_type_id, group_id, person, ts, orjson.dumps(attributes))])

    def relationship_attributes(self, object_type_id: str, group_id: str) -> dict[str, dict[str, Any]]:
        rows = self._rows("SELECT person, value FROM relationships WHERE type_id = ? AND group_id = ? ORDER BY person",
                          (object_type_id, group_id))
        return {person: orjson.loads(value) for person, value in rows}

    def record_migration(self, migration: Migration) -> bool:
        with self._lock:
            try:
                return self._db.execute(
                    "INSERT OR IGNORE INTO migrations (type_id, old_id, new_id, mode, at, keep_old, arrived)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)", (*migration[:5], int(migration.keep_old), migration.arrived)).rowcount == 1
            except sqlite3.Error as exc:
                raise StoreError(f"{self.where}: {exc}") from None

    def migrations(self) -> list[Migration]:
        rows = self._rows("SELECT type_id, old_id, new_id, mode, at, keep_old, arrived FROM migrations ORDER BY seq")
        return [Migration(*row[:5], bool(row[5]), row[6]) for row in rows]

    def migration_count(self) -> int:
        return self._rows("SELECT count(*) FROM migrations")[0][0]  # rows are never removed

    def membership_events(self, persons: list[str]) -> list[Event]:
        marks = ",".join("?" * len(persons))
        rows = self._rows(f"SELECT type_id, group_id, ts, seq, joined, arrived FROM memberships WHERE person IN ({marks})",
                          persons)
        return [(t, g, at, seq, bool(joined), arrived) for t, g, at, seq, joined, arrived in rows]

    def deletions(self, groups: list[tuple[str, str]]) -> dict[tuple[str, str], list[Deletion]]:
        out: dict[tuple[str, str], list[Deletion]] = {}
        for type_id, group_id in groups:
            rows = self._rows("SELECT ts, arrived FROM deletions WHERE type_id = ? AND group_id = ?", (type_id, group_id))
            if rows:
                out[(type_id, group_id)] = [tuple(row) for row in rows]
        return out

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float,
                  before: int | None = None) -> dict[str, Any]:
        marks = ",".join("?" * len(names))
        # history.latest_at in SQL, every name at once: a NULL `arrived` or `before` compares to NULL (known)
        rows = self._rows(
            "SELECT name, value FROM (SELECT name, value, row_number() OVER (PARTITION BY name ORDER BY ts DESC,"
            " seq DESC) AS newest FROM traits WHERE type_id = ? AND group_id = ? AND name IN"
            f" ({marks}) AND ts <= ? AND coalesce(arrived < ?, 1)) WHERE newest = 1",
            (object_type_id, group_id, *names, ts, before),
        )
        found = {name: orjson.loads(value) for name, value in rows}
        return {name: found[name] for name in names if name in found}

    def record_activity(self, object_type_id: str, group_id: str, message_id: str, ts: float, values: dict[str, Any]) -> int:
        self._write(
            "INSERT OR IGNORE INTO activity (type_id, group_id, message_id, ts, value) VALUES (?, ?, ?, ?, ?)",
            [(object_type_id, group_id, message_id, ts, orjson.dumps(values))],
        )
        return self._rows(
            "SELECT seq FROM activity WHERE type_id = ? AND group_id = ? AND message_id = ?",
            (object_type_id, group_id, message_id),
        )[0][0]

    def activity_since(self, object_type_id: str, group_id: str, since: float) -> list[Activity]:
        rows = self._rows(
            "SELECT ts, seq, message_id, value FROM activity WHERE type_id = ? AND group_id = ? AND ts >= ? ORDER BY ts, seq",
            (object_type_id, group_id, since),
        )
        return [Activity(at, seq, message_id, orjson.loads(value)) for at, seq, message_id, value in rows]

    def mark_rollup_pending(self, object_type_id: str, group_id: str, due: float, seq: int) -> None:
        self._write(
            "INSERT INTO rollups_pending VALUES (?, ?, ?, ?) ON CONFLICT (type_id, group_id) DO UPDATE SET"
            " due = min(due, excluded.due), seq = max(seq, excluded.seq)",
            [(object_type_id, group_id, due, seq)],
        )

    def clear_rollup_pending(self, object_type_id: str, group_id: str, seq: int) -> None:
        self._write("DELETE FROM rollups_pending WHERE type_id = ? AND group_id = ? AND seq <= ?",
                    [(object_type_id, group_id, seq)])

    def due_rollups(self, until: float) -> list[tuple[str, str, float, int]]:
        return self._rows(
            "SELECT type_id, group_id, due, seq FROM rollups_pending WHERE due <= ? ORDER BY due, type_id, group_id",
            (until,),
        )

    def groups(self) -> list[tuple[str, str]]:
        return [tuple(row) for row in self._rows(
            "SELECT type_id, group_id FROM memberships UNION SELECT type_id, group_id FROM traits"
            " UNION SELECT type_id, group_id FROM deletions ORDER BY 1, 2")]

    def members_at(self, object_type_id: str, group_id: str, ts: float) -> list[str]:
        return [person for person in self.persons_seen(object_type_id, group_id)
                if any((m.object_type_id, m.group_id) == (object_type_id, group_id)
                       for m in self.memberships_at([person], ts))]

    def persons_seen(self, object_type_id: str, group_id: str) -> list[str]:
        rows = self._rows("SELECT DISTINCT person FROM memberships WHERE type_id = ? AND group_id = ? ORDER BY 1",
                          (object_type_id, group_id))
        return [person for (person,) in rows]

    def linked_to(self, key: str) -> list[str]:
        return [other for (other,) in self._rows("SELECT b FROM links WHERE a = ? ORDER BY 1", (key,))]

    def trait_names(self, object_type_id: str, group_id: str) -> list[str]:
        rows = self._rows("SELECT DISTINCT name FROM traits WHERE type_id = ? AND group_id = ? ORDER BY 1",
                          (object_type_id, group_id))
        return [name for (name,) in rows]

    def deleted_at(self, object_type_id: str, group_id: str) -> float | None:
        return self._rows("SELECT max(ts) FROM deletions WHERE type_id = ? AND group_id = ?",
                          (object_type_id, group_id))[0][0]

    def compact(self, horizon: float) -> dict[str, int]:
        with self._immediate() as db:
            return {kind: db.execute(sql, (horizon,)).rowcount for kind, sql in _COMPACT.items()}

    def size(self) -> dict[str, int]:
        out = {kind: self._rows(f"SELECT count(*) FROM {table}")[0][0] for kind, table in _SIZE.items()}
        out["links"] //= 2  # a row each way
        return out

    # -- privacy ---------------------------------------------------------------------------------------------

    def privacy_key(self) -> bytes:
        self._write("INSERT OR IGNORE INTO privacy VALUES ('key', randomblob(32))", [()])
        return self._rows("SELECT value FROM privacy WHERE name = 'key'")[0][0]

    def rekey_message_keys(self, hash_key) -> int:
        if self._rows("SELECT 1 FROM privacy WHERE name = 'message_keys'"):
            return 0
        with self._immediate("cannot re-key message ids: ") as db:  # two processes opening an old file: once
            count = 0 if db.execute("SELECT 1 FROM privacy WHERE name = 'message_keys'").fetchone() \
                else rekey(db, hash_key)
            db.execute("INSERT OR IGNORE INTO privacy VALUES ('message_keys', 'keyed')")
        with self._lock:
            self._rebuild = self._rebuild or count > 0  # the plain keys named people: `scrub` rebuilds the file
        if not self._grouped:
            self.scrub()
        return count

    def forget(self, keys: list[str], dry_run: bool = False) -> dict[str, int]:
        marks = ",".join("?" * len(keys))
        pairs = {frozenset(row) for row in self._rows(
            f"SELECT a, b FROM links WHERE a IN ({marks}) OR b IN ({marks})", [*keys, *keys])}
        removed = {"links": len(pairs), "memberships": self._rows(
            f"SELECT count(*) FROM memberships WHERE person IN ({marks})", keys)[0][0]}
        if dry_run or not any(removed.values()):
            return removed
        with self._immediate() as db, secure_delete(db):  # what they free is zeroed
            db.execute(f"DELETE FROM links WHERE a IN ({marks}) OR b IN ({marks})", [*keys, *keys])
            db.execute(f"DELETE FROM memberships WHERE person IN ({marks})", keys)
            db.execute(f"DELETE FROM relationships WHERE person IN ({marks})", keys)
        with self._lock:
            self._erased += keys  # for `scrub`, after the commit
        return removed

    def suppress(self, hashes: list[str]) -> None:
        self._write("INSERT OR IGNORE INTO forgotten VALUES (?)", [(h,) for h in hashes])

    def suppressed(self, hashes: list[str]) -> bool:
        return bool(self._rows(f"SELECT 1 FROM forgotten WHERE hash IN ({','.join('?' * len(hashes))}) LIMIT 1",
                               hashes))

    def scrub(self) -> bool:
        with self._lock:
            if self._grouped or not (self._erased or self._rebuild):
                return not (self._erased or self._rebuild)
            try:
                done = scrub(self._db, self.path, [key.encode() for key in self._erased], self._rebuild)
            except sqlite3.Error as exc:
                raise StoreError(f"{self.where}: cannot scrub erased records: {exc}") from None
            if done:
                self._erased, self._rebuild = [], False
            return done

    def close(self) -> None:
        with self._lock:
            self._db.close()
            self._db = _Unusable(f"{self.where} is closed")


def rekey(db: sqlite3.Connection, hash_key, every: bool = False) -> int:
    """Replace every plain message id (written before ids were hashed: they contain U+001F; `every`: every id that
    is not a keyed hash already, as in a file of format version 1) by `hash_key` of it, in the caller's
    transaction, with freed space zeroed; the rows changed. The version 2 migration calls it."""
    db.create_function("groupspec_keyed_hash", 1, hash_key, deterministic=True)
    plain = (" WHERE length(message_id) != 32 OR message_id GLOB '*[^0-9a-f]*'" if every
             else " WHERE instr(message_id, char(31)) > 0")
    with secure_delete(db):
        return sum(db.execute(f"UPDATE {table} SET message_id = groupspec_keyed_hash(message_id){plain}").rowcount
                   for table in _MESSAGE_IDS)

