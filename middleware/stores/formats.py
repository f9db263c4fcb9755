"""Format versions of what groupspec keeps (the SQLite store, the Redis store, the service's spool) and their
migrations.

Each carries the version of its format: a SQLite file in the one row of its `groupspec_format` table (with what
the file is: a "store", a "spool"), a Redis keyspace in the key ``PREFIX{format}:version``. A kind's `Format`
lists its migrations: ``migrations[n]`` takes version n to n + 1, so the current version is their number, and a
later change of the format appends its function. Version 0 is what was written before versions existed
(groupspec 0.1.0 and earlier). On open:

- the current version: nothing to do;
- an older one: each migration in turn, once, under a lock every process honours (SQLite: one `BEGIN
  IMMEDIATE` transaction, so a failed migration leaves the file as it was; Redis: a lock key), then the version;
- a newer one (written by a later groupspec): refused with a `FormatError` naming it and both versions.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import StoreError

Target = TypeVar("Target")
_TABLE = ("CREATE TABLE IF NOT EXISTS groupspec_format (id INTEGER PRIMARY KEY CHECK (id = 1), kind TEXT NOT NULL,"
          " version INTEGER NOT NULL)")


class FormatError(StoreError):
    """A file or keyspace this groupspec cannot read: written by a newer release, or of another kind."""

    label = "format error"


@dataclass(frozen=True)
class Format(Generic[Target]):
    """A kind of file or keyspace (`kind`) and its migrations (``migrations[n]``: version n -> n + 1), each a
    function of what holds the data (a SQLite connection inside the migrating transaction, a `RedisStore`)."""

    kind: str
    migrations: Sequence[Callable[[Target], None]]

    @property
    def current(self) -> int:
        return len(self.migrations)

    def refuse_newer(self, found: int, where: str) -> None:
        """FormatError when `found` is newer than this release reads."""
        if found > self.current:
            raise FormatError(f"{where} has format version {found}, written by a newer groupspec; this release "
                              f"reads version {self.current} at most: upgrade groupspec to open it")

    def migrate(self, target: Target, found: int, record: Callable[[int], Any]) -> None:
        """Run the migrations from version `found` to the current one, `record(version)` after each."""
        for version in range(found, self.current):
            self.migrations[version](target)
            record(version + 1)


def open_sqlite(db: sqlite3.Connection, fmt: Format[sqlite3.Connection], where: str) -> None:
    """Bring the file `db` is open on (autocommit) to `fmt`'s current version, or refuse it (FormatError); a
    sqlite3.Error goes to the caller. Every process opening an old file at once: one migrates, the others wait
    for its commit (the busy timeout) and find the current version."""
    if _version(db, fmt, where) == fmt.current:  # the common case: no write lock taken
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_TABLE)
        found = _version(db, fmt, where)
        fmt.refuse_newer(found, where)
        fmt.migrate(db, found, lambda version: db.execute(
            "INSERT OR REPLACE INTO groupspec_format (id, kind, version) VALUES (1, ?, ?)", (fmt.kind, version)))
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _version(db: sqlite3.Connection, fmt: Format[Any], where: str) -> int:
    """The file's format version (0: none recorded), or FormatError when it holds another kind."""
    try:
        row = db.execute("SELECT kind, version FROM groupspec_format WHERE id = 1").fetchone()
    except sqlite3.OperationalError:  # no such table: written before versions (or a new, empty file)
        return 0
    if row is None:
        return 0
    kind, version = row
    if kind != fmt.kind:
        raise FormatError(f"{where} is a groupspec {kind} file, not a {fmt.kind}")
    return version
