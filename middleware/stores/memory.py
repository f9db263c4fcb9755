"""The in-process store: hermetic replays and tests."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from .base import Membership
from .history import Event, fold_memberships, linked, stale_after

_NONE: tuple = ()


class MemoryStore:
    """Everything in dicts; thread-safe for writes, lock-free reads of immutable snapshots."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[str, set[str]] = {}
        self._events: dict[str, list[Event]] = defaultdict(list)
        self._event_keys: set[tuple] = set()
        self._deletions: dict[tuple[str, str], list[float]] = defaultdict(list)
        self._traits: dict[tuple[str, str, str], list[tuple[float, int, str, Any]]] = defaultdict(list)
        self._seq = 0

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def link(self, key: str, other: str) -> None:
        if key == other or other in self._links.get(key, _NONE):
            return
        with self._lock:
            self._links.setdefault(key, set()).add(other)
            self._links.setdefault(other, set()).add(key)

    def identities(self, key: str) -> list[str]:
        if key not in self._links:
            return [key]
        return linked(key, lambda k: self._links.get(k, _NONE))

    def record_membership(self, person: str, object_type_id: str, group_id: str, ts: float, joined: bool) -> None:
        key = (person, object_type_id, group_id, ts, joined)
        if key in self._event_keys:
            return
        with self._lock:
            self._event_keys.add(key)
            self._events[person].append((object_type_id, group_id, ts, self._next(), joined))

    def record_object_deleted(self, object_type_id: str, group_id: str, ts: float) -> None:
        with self._lock:
            times = self._deletions[(object_type_id, group_id)]
            if ts not in times:
                times.append(ts)

    def memberships_at(self, persons: list[str], ts: float) -> list[Membership]:
        events = self._events
        if len(persons) == 1:
            rows = events.get(persons[0], _NONE)
        else:
            rows = [row for person in persons for row in events.get(person, _NONE)]
        if not rows:
            return []
        return fold_memberships(rows, self._deletions, ts)

    def stale_traits(self, object_type_id: str, group_id: str, names: list[str], ts: float, message_id: str) -> set[str]:
        traits = self._traits
        return {
            name for name in names
            if stale_after(((at, seq, mid) for at, seq, mid, _ in traits.get((object_type_id, group_id, name), _NONE)), ts, message_id)
        }

    def apply_traits(self, object_type_id: str, group_id: str, traits: dict[str, Any], ts: float, message_id: str) -> None:
        with self._lock:
            for name, value in traits.items():
                entries = self._traits[(object_type_id, group_id, name)]
                if not any(mid == message_id for _, _, mid, _ in entries):
                    entries.append((ts, self._next(), message_id, value))

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float) -> dict[str, Any]:
        out = {}
        for name in names:
            best = None
            for entry in self._traits.get((object_type_id, group_id, name), _NONE):
                if entry[0] <= ts and (best is None or entry[:2] > best[:2]):
                    best = entry
            if best is not None:
                out[name] = best[3]
        return out

    def close(self) -> None:
        pass
