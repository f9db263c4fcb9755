"""The in-process store: hermetic replays and tests. It keeps no per-message memory (`admit` answers None: its
size grows with people, not messages), but honours the `arrived`/`before` a caller passes."""

from __future__ import annotations

import threading
from collections import defaultdict
from contextlib import nullcontext
from typing import Any

from .base import Activity, Lookup, Membership, Store
from .history import Deletion, Event, fold_memberships, latest_at, linked, retained, stale_after

_NONE: tuple = ()
_NO_LINKS: dict = {}


class MemoryStore(Store):
    """Everything in dicts; thread-safe for writes, lock-free reads of immutable snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[str, dict[str, int | None]] = {}  # key -> linked key -> arrived
        self._link_times: dict[tuple[str, str], float] = {}  # (key, other), sorted -> latest event time asserting it
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._event_keys: set[tuple] = set()
        self._deletions: dict[tuple[str, str], list[Deletion]] = defaultdict(list)
        self._traits: dict[tuple[str, str, str], list[tuple[float, int, str, Any, int | None]]] = defaultdict(list)
        self._activity: dict[tuple[str, str], dict[str, Activity]] = defaultdict(dict)
        self._pending: dict[tuple[str, str], tuple[float, int]] = {}
        self._seq = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def link(self, key: str, other: str, arrived: int | None = None, ts: float | None = None) -> None:
        if key == other:
            return
        if ts is not None:
            pair = (key, other) if key < other else (other, key)
            if ts > self._link_times.get(pair, float("-inf")):
                self._link_times[pair] = ts
        if other in self._links.get(key, _NO_LINKS):
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

    def lookup(self, message_id: str, persons: list[str], ts: float, names: list[str] = (),
               group: tuple[str, Any] | None = None, event_ts: float | None = None,
               stale_group: tuple[str, Any] | None = None, stale_names: list[str] = ()) -> Lookup:
        """The base class's lookup; for one person with no links and no stale check (most messages), only
        the person's memberships."""
        if stale_group is None and len(persons) == 1 and persons[0] not in self._links:
            return Lookup(None, [persons[0]], self.memberships_at(persons, ts), {})
        return super().lookup(message_id, persons, ts, names, group, event_ts, stale_group, stale_names)

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
                     arrived: int | None = None) -> None:
        with self._lock:
            for name, value in traits.items():
                entries = self._traits[(object_type_id, group_id, name)]
                if not any(entry[2] == message_id for entry in entries):
                    entries.append((ts, self._next(), message_id, value, arrived))

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float,
                  before: int | None = None) -> dict[str, Any]:
        out = {}
        for name in names:
            history = self._traits.get((object_type_id, group_id, name), _NONE)
            best = latest_at(((at, seq, value, arrived) for at, seq, _, value, arrived in history), ts, before)
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

    def trait_names(self, object_type_id: str, group_id: str) -> list[str]:
        return sorted(name for type_id, gid, name in list(self._traits) if (type_id, gid) == (object_type_id, group_id))

    def deleted_at(self, object_type_id: str, group_id: str) -> float | None:
        return max((at for at, _ in self._deletions.get((object_type_id, group_id), ())), default=None)

    def compact(self, horizon: float) -> dict[str, int]:
        before = self.size()
        with self._lock:
            for pair, at in list(self._link_times.items()):
                if at < horizon:
                    del self._link_times[pair]
                    for one, two in (pair, pair[::-1]):
                        self._links[one].pop(two, None)
                        if not self._links[one]:
                            del self._links[one]
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
        after = self.size()
        return {kind: before[kind] - after[kind] for kind in before}

    def size(self) -> dict[str, int]:
        return {
            "arrivals": 0,
            "links": sum(map(len, self._links.values())) // 2,
            "memberships": sum(map(len, self._events.values())),
            "deletions": sum(map(len, self._deletions.values())),
            "traits": sum(map(len, self._traits.values())),
            "activity": sum(map(len, self._activity.values())),
            "pending": len(self._pending),
        }

    def transaction(self) -> nullcontext[None]:
        return nullcontext()

    def close(self) -> None:
        pass
