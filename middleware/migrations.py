"""Group id migrations: a group renamed (`rename`: the same group under a new id, its whole history follows) or
merged into another (`merge`: from `at` the old group's members are members of the new one; before `at` each group
is what it was).

A migration is one fact the store keeps with its time (`Store.record_migration`); nothing else is rewritten. Every
process holds the store's migrations as a `MigrationMap` (refreshed when the store's migration counter changes,
once per chunk) and reads through it (`stores/migrated.py`): memberships are folded with the old id's events
re-keyed (`MigrationMap.fold`), trait histories and activity logs of the old id count for the new one
(`MigrationMap.sources`), and a message naming an old id is mapped to the new one (`engine.map_migrated`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal, NamedTuple

from .stores.base import Membership
from .stores.history import Deletion, Event, fold_memberships, unknown

Mode = Literal["rename", "merge"]
MODES: tuple[Mode, ...] = ("rename", "merge")
_CHAIN_LIMIT = 64  # the longest chain of migrations followed (rows are checked for cycles before they are recorded)


class Migration(NamedTuple):
    """One recorded migration of a group id."""

    object_type_id: str
    old_id: str
    new_id: str
    mode: Mode
    at: float  # when it takes effect (a rename's history follows it whatever the time)
    keep_old: bool = False  # the old Customer.io object is kept with `migrated_to` (else deleted)
    arrived: int | None = None  # its arrival number (`Store.admit`): a replayed message sees what it saw first

    def same(self, other: Migration) -> bool:
        """Whether `other` is this migration (recorded again: nothing to do), whatever its arrival number."""
        return self[:6] == other[:6]


def arrival_key(object_type_id: str, old_id: str) -> str:
    """What a migration is admitted as (`Store.admit`), so it is ordered among the messages."""
    return "\x1f".join(("groupspec-migration", object_type_id, old_id))


class Source(NamedTuple):
    """An id whose facts count for another group: from `since` (reads at an earlier time ignore it), its facts up to
    `until` (a merge's `at`; a rename: every fact)."""

    group_id: str
    since: float
    until: float


class MigrationMap:
    """The migrations a store holds, indexed for lookups; `version` is the store's migration counter it was read at."""

    def __init__(self, migrations: Iterable[Migration] = (), version: int = 0) -> None:
        self.version = version
        self.rows = list(migrations)
        self._last = max((m.arrived for m in self.rows if m.arrived is not None), default=None)
        self._from = {(m.object_type_id, m.old_id): m for m in self.rows}
        self._into: dict[tuple[str, str], list[Migration]] = {}
        for m in self.rows:
            self._into.setdefault((m.object_type_id, m.new_id), []).append(m)
        self._ids: dict[str, list[str]] = {}  # old id -> the object types it was migrated in
        for type_id, old_id in self._from:
            self._ids.setdefault(old_id, []).append(type_id)

    def __bool__(self) -> bool:
        return bool(self._from)

    def with_rows(self, rows: Iterable[Migration]) -> MigrationMap:
        """This map with `rows` added (for a plan: what the store would hold once they are recorded)."""
        return MigrationMap([*self.rows, *rows], self.version)

    def known(self, before: int | None) -> MigrationMap:
        """The migrations known to the message that arrived `before` (None: all of them)."""
        if before is None or self._last is None or self._last < before:
            return self
        return MigrationMap([m for m in self.rows if not unknown(m.arrived, before)], self.version)

    def has_sources(self, object_type_id: str, group_id: str) -> bool:
        """Whether some id was migrated into the group."""
        return (object_type_id, group_id) in self._into

    def chain(self, object_type_id: str, group_id: str) -> list[str]:
        """`group_id` and every id it was migrated to, in order."""
        out = [group_id]
        migration = self._from.get((object_type_id, group_id))
        while migration is not None and migration.new_id not in out and len(out) < _CHAIN_LIMIT:
            out.append(migration.new_id)
            migration = self._from.get((object_type_id, migration.new_id))
        return out

    def migrated(self, object_type_id: str, group_id: str) -> Migration | None:
        """The migration of an old id, or None."""
        return self._from.get((object_type_id, group_id))

    def types_of(self, group_id: str) -> list[str]:
        """The object types in which `group_id` was migrated."""
        return self._ids.get(group_id, [])

    def resolve(self, object_type_id: str, group_id: str, ts: float) -> str:
        """The id a group is known by at `ts`: renames followed always, merges from their `at` (`a -> b`, `b -> c`
        resolves `a` to `c`)."""
        migration = self._from.get((object_type_id, group_id))
        for _ in range(_CHAIN_LIMIT):
            if migration is None or (migration.mode == "merge" and ts < migration.at):
                break
            group_id = migration.new_id
            migration = self._from.get((object_type_id, group_id))
        return group_id

    def sources(self, object_type_id: str, group_id: str) -> list[Source]:
        """Every id migrated into the group, directly or along a chain, with the window its facts count in."""
        out: list[Source] = []
        todo = [(group_id, -math.inf, math.inf)]
        while todo and len(out) < 10_000:
            target, since, until = todo.pop()
            for m in self._into.get((object_type_id, target), ()):
                merged = m.mode == "merge"
                found = Source(m.old_id, max(since, m.at) if merged else since, min(until, m.at) if merged else until)
                out.append(found)
                todo.append(found)
        return out

    def fold(self, events: Iterable[Event], deletions: dict[tuple[str, str], list[Deletion]], ts: float,
             before: int | None = None) -> list[Membership]:
        """`history.fold_memberships` through the migrations: each event and deletion counts for the id its
        group had at its time, and at a merge's `at` the members of the old group join the new one (the old group
        ends there)."""
        events = [(t, self.resolve(t, g, at), at, seq, joined, arrived) for t, g, at, seq, joined, arrived in events]
        ended: dict[tuple[str, str], list[Deletion]] = {}
        for (type_id, group_id), times in deletions.items():
            for gone, arrived in times:
                ended.setdefault((type_id, self.resolve(type_id, group_id, gone)), []).append((gone, arrived))
        present = {(e[0], e[1]) for e in events}
        for m in sorted((m for m in self.rows if m.mode == "merge" and m.at <= ts), key=lambda m: m.at):
            old = (m.object_type_id, m.old_id)
            if old not in present:
                continue
            if fold_memberships([e for e in events if e[:2] == old], ended, m.at, before):
                joined = (m.object_type_id, self.resolve(m.object_type_id, m.new_id, m.at), m.at, 0, True, None)
                events.append(joined)
                present.add(joined[:2])
            ended.setdefault(old, []).append((m.at, None))
        return fold_memberships(events, ended, ts, before)
