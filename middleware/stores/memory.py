"""The in-process store: hermetic replays and tests. It keeps no per-message memory (`admit` answers None: its
size grows with people, not messages), but honours the `arrived`/`before` a caller passes; of a message without
a time of its own it keeps the first arrival's time (`arrive`), so a re-send gets the same one. A forked child
gets a copy of it, taken between two writes (`forks.py`)."""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from contextlib import nullcontext
from typing import Any

from .. import forks
from ..migrations import Migration
from .base import Activity, Lookup, Membership, Store, TraitEntry
from .history import Deletion, Event, fold_memberships, latest_at, linked, retained, stale_after

_NONE: tuple = ()
_NO_LINKS: dict = {}


class MemoryStore(Store):
    """Everything in dicts; thread-safe for writes, lock-free reads of immutable snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[str, dict[str, int | None]] = {}  # key -> linked key -> arrived
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._event_keys: set[tuple] = set()
        self._deletions: dict[tuple[str, str], list[Deletion]] = defaultdict(list)
        self._traits: dict[tuple[str, str, str], list[TraitEntry]] = defaultdict(list)
        self._relationships: dict[tuple[str, str], dict[str, tuple[float, dict[str, Any]]]] = defaultdict(dict)
        self._migrations: dict[tuple[str, str], Migration] = {}  # (type, old id) -> its migration, in order
        self._activity: dict[tuple[str, str], dict[str, Activity]] = defaultdict(dict)
        self._pending: dict[tuple[str, str], tuple[float, int]] = {}
        self._first: dict[str, float] = {}  # message id of a message without a time -> its first arrival's time
        self._seq = 0
        self._privacy_key = os.urandom(32)  # lives as long as the data: one process's
        self._forgotten: set[str] = set()  # keyed hashes of forgotten person keys
        forks.register(self)

    def before_fork(self) -> None:
        """Wait for a write in flight: the child's copy is whole."""
        self._lock.acquire()

    def after_fork(self, child: bool) -> None:
        if child:
            self._lock = threading.Lock()
        else:
            self._lock.release()

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def link(self, key: str, other: str, arrived: int | None = None) -> None:
        if key == other or other in self._links.get(key, _NO_LINKS):
            return
        with self._lock:
            self._links.setdefault(key, {}).setdefault(other, arrived)
            self._links.setdefault(other, {}).setdefault(key, arrived)

    def identities(self, key: str, before: int | None = None) -> list[str]:
        if key not in self._links:
            return [key]
        return linked(key, lambda k: self._links.get(k, _NO_LINKS).items(), before)

    def admit(self, message_id: str, ts: float = 0.0) -> None:
        return None

    def arrive(self, message_id: str, ts: float = 0.0, timeless: bool = False) -> tuple[None, float | None]:
        return None, self._first.setdefault(message_id, ts) if timeless else None

    def lookup(self, message_id: str, persons: list[str], ts: float, names: list[str] = (),
               group: tuple[str, Any] | None = None, event_ts: float | None = None,
               stale_group: tuple[str, Any] | None = None, stale_names: list[str] = (),
               timeless: bool = False) -> Lookup:
        """The base class's lookup; for one person with no links, no stale check and a time of its own (most
        messages), only the person's memberships (`arrive` would answer (None, None))."""
        if not timeless and stale_group is None and len(persons) == 1 and persons[0] not in self._links:
            return Lookup(None, [persons[0]], self.memberships_at(persons, ts), {})
        return super().lookup(message_id, persons, ts, names, group, event_ts, stale_group, stale_names, timeless)

    def record_membership(self, person: str, object_type_id: str, group_id: str, ts: float, joined: bool,
                          arrived: int | None = None) -> None:
        key = (person, object_type_id, group_id, ts, joined)
        if key in self._event_keys:
            return
        with self._lock:
            self._event_keys.add(key)
            self._events[person].append((object_type_id, group_id, ts, self._next(), joined, arrived))

    def record_object_deleted(self, object_type_id: str, group_id: str, ts: float, arrived: int | None = None) -> None:
        with self._lock:
            times = self._deletions[(object_type_id, group_id)]
            if all(at != ts for at, _ in times):
                times.append((ts, arrived))

    def memberships_at(self, persons: list[str], ts: float, before: int | None = None) -> list[Membership]:
        events = self._events
        if len(persons) == 1:
            rows = events.get(persons[0], _NONE)
        else:
            rows = [row for person in persons for row in events.get(person, _NONE)]
        if not rows:
            return []
        if len(rows) == 1 and not self._deletions and before is None:  # one join, nothing deleted: no fold
            type_id, group_id, at, _, joined, _ = rows[0]
            return [Membership(type_id, group_id, at)] if joined and at <= ts else []
        return fold_memberships(rows, self._deletions, ts, before)

    def stale_traits(self, object_type_id: str, group_id: str, names: list[str], ts: float, message_id: str,
                     before: int | None = None) -> set[str]:
        traits = self._traits
        return {
            name for name in names
            if stale_after(((e[0], e[1], e[2], e[4]) for e in traits.get((object_type_id, group_id, name), _NONE)),
                           ts, message_id, before)
        }

    def apply_traits(self, object_type_id: str, group_id: str, traits: dict[str, Any], ts: float, message_id: str,
                     arrived: int | None = None, source: str | None = None) -> None:
        with self._lock:
            for name, value in traits.items():
                entries = self._traits[(object_type_id, group_id, name)]
                if not any(entry[2] == message_id for entry in entries):
                    entries.append(TraitEntry(ts, self._next(), message_id, value, arrived, source))

    def trait_history(self, object_type_id: str, group_id: str, name: str) -> list[TraitEntry]:
        return list(self._traits.get((object_type_id, group_id, name), _NONE))

    def record_relationship(self, person: str, object_type_id: str, group_id: str, attributes: dict[str, Any],
                            ts: float) -> None:
        with self._lock:
            kept = self._relationships[(object_type_id, group_id)]
            if person not in kept or ts >= kept[person][0]:
                kept[person] = (ts, dict(attributes))

    def relationship_attributes(self, object_type_id: str, group_id: str) -> dict[str, dict[str, Any]]:
        return {person: attrs for person, (_, attrs) in self._relationships.get((object_type_id, group_id), {}).items()}

    def record_migration(self, migration: Migration) -> bool:
        with self._lock:
            return self._migrations.setdefault(migration[:2], migration) is migration

    def migrations(self) -> list[Migration]:
        return list(self._migrations.values())

    def migration_count(self) -> int:
        return len(self._migrations)

    def membership_events(self, persons: list[str]) -> list[Event]:
        return [row for person in persons for row in self._events.get(person, _NONE)]

    def deletions(self, groups: list[tuple[str, str]]) -> dict[tuple[str, str], list[Deletion]]:
        return {group: list(self._deletions[group]) for group in groups if self._deletions.get(group)}

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float,
                  before: int | None = None) -> dict[str, Any]:
        out = {}
        for name in names:
            history = self._traits.get((object_type_id, group_id, name), _NONE)
            best = latest_at(((at, seq, value, arrived) for at, seq, _, value, arrived, _ in history), ts, before)
            if best is not None:
                out[name] = best[2]
        return out

    def record_activity(self, object_type_id: str, group_id: str, message_id: str, ts: float, values: dict[str, Any]) -> int:
        with self._lock:
            log = self._activity[(object_type_id, group_id)]
            if message_id not in log:
                log[message_id] = Activity(float(ts), self._next(), message_id, dict(values))
            return log[message_id].seq

    def activity_since(self, object_type_id: str, group_id: str, since: float) -> list[Activity]:
        return sorted(e for e in self._activity.get((object_type_id, group_id), {}).values() if e.ts >= since)

    def mark_rollup_pending(self, object_type_id: str, group_id: str, due: float, seq: int) -> None:
        with self._lock:
            key = (object_type_id, group_id)
            old_due, old_seq = self._pending.get(key, (due, seq))
            self._pending[key] = (min(due, old_due), max(seq, old_seq))

    def clear_rollup_pending(self, object_type_id: str, group_id: str, seq: int) -> None:
        with self._lock:
            key = (object_type_id, group_id)
            if key in self._pending and self._pending[key][1] <= seq:
                del self._pending[key]

    def due_rollups(self, until: float) -> list[tuple[str, str, float, int]]:
        due = [(at, type_id, group_id, seq) for (type_id, group_id), (at, seq) in list(self._pending.items()) if at <= until]
        return [(type_id, group_id, at, seq) for at, type_id, group_id, seq in sorted(due)]

    def groups(self) -> list[tuple[str, str]]:
        found = {(e[0], e[1]) for rows in list(self._events.values()) for e in rows}
        found.update((type_id, group_id) for type_id, group_id, _ in list(self._traits))
        found.update(self._deletions)
        return sorted(found)

    def members_at(self, object_type_id: str, group_id: str, ts: float) -> list[str]:
        group = (object_type_id, group_id)
        return sorted(
            person for person, rows in list(self._events.items())
            if any((m.object_type_id, m.group_id) == group
                   for m in fold_memberships([r for r in rows if r[:2] == group], self._deletions, ts))
        )

    def persons_seen(self, object_type_id: str, group_id: str) -> list[str]:
        group = (object_type_id, group_id)
        return sorted(person for person, rows in list(self._events.items()) if any(r[:2] == group for r in rows))

    def linked_to(self, key: str) -> list[str]:
        return sorted(self._links.get(key, _NO_LINKS))

    def trait_names(self, object_type_id: str, group_id: str) -> list[str]:
        return sorted(name for type_id, gid, name in list(self._traits) if (type_id, gid) == (object_type_id, group_id))

    def deleted_at(self, object_type_id: str, group_id: str) -> float | None:
        return max((at for at, _ in self._deletions.get((object_type_id, group_id), ())), default=None)

    def compact(self, horizon: float) -> dict[str, int]:
        before = self.size()
        with self._lock:  # links are identity, not history: all kept
            by_history = lambda e: (e[0], e[1])  # noqa: E731 - (type, group) within one person
            by_time = lambda e: (e[2], e[3])  # noqa: E731
            self._events = defaultdict(list, {person: retained(rows, horizon, by_history, by_time)
                                              for person, rows in self._events.items()})
            self._event_keys = {(person, t, g, at, joined) for person, rows in self._events.items()
                                for t, g, at, _, joined, _ in rows}
            self._deletions = defaultdict(list, {group: retained(times, horizon, lambda _: 0, lambda d: d[:1])
                                                 for group, times in self._deletions.items()})
            self._traits = defaultdict(list, {key: retained(entries, horizon, lambda _: 0, lambda e: e[:2])
                                              for key, entries in self._traits.items()})
            activity = {group: {mid: e for mid, e in log.items() if e.ts >= horizon}
                        for group, log in self._activity.items()}
            self._activity = defaultdict(dict, {group: log for group, log in activity.items() if log})
            self._first = {message_id: at for message_id, at in self._first.items() if at >= horizon}
        after = self.size()
        return {kind: before[kind] - after[kind] for kind in before}

    def size(self) -> dict[str, int]:
        return {
            "arrivals": len(self._first),
            "links": sum(map(len, self._links.values())) // 2,
            "memberships": sum(map(len, self._events.values())),
            "deletions": sum(map(len, self._deletions.values())),
            "traits": sum(map(len, self._traits.values())),
            "activity": sum(map(len, self._activity.values())),
            "pending": len(self._pending),
        }

    def privacy_key(self) -> bytes:
        return self._privacy_key

    def rekey_message_keys(self, hash_key) -> int:
        return 0  # a memory store starts empty: no plain keys from before

    def forget(self, keys: list[str], dry_run: bool = False) -> dict[str, int]:
        doomed = set(keys)
        pairs = {frozenset((key, other)) for key in doomed for other in self._links.get(key, _NO_LINKS)}
        removed = {"links": len(pairs), "memberships": sum(len(self._events.get(key, _NONE)) for key in doomed)}
        if dry_run:
            return removed
        with self._lock:
            for pair in pairs:
                one, two = sorted(pair)
                for key, other in ((one, two), (two, one)):
                    links = self._links.get(key)
                    if links is not None:
                        links.pop(other, None)
                        if not links:
                            del self._links[key]
            for key in doomed:
                self._events.pop(key, None)
            for kept in self._relationships.values():
                for key in doomed & kept.keys():
                    del kept[key]
            self._event_keys = {event for event in self._event_keys if event[0] not in doomed}
        return removed

    def suppress(self, hashes: list[str]) -> None:
        self._forgotten.update(hashes)

    def suppressed(self, hashes: list[str]) -> bool:
        return not self._forgotten.isdisjoint(hashes)

    def transaction(self) -> nullcontext[None]:
        return nullcontext()

    def close(self) -> None:
        pass
