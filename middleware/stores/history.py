"""Point-in-time folding of recorded events, shared by every store.

A membership event is ``(object_type_id, group_id, ts, seq, joined)``; the newest event at or before the
asked time decides (ties broken by `seq`, the order of recording), and an object deletion after the join ends it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import Membership

Event = tuple[str, str, float, int, bool]


def fold_memberships(events: Iterable[Event], deletions: dict[tuple[str, str], list[float]], ts: float) -> list[Membership]:
    """The memberships in force at `ts`, latest joined first."""
    latest: dict[tuple[str, str], tuple[float, int, bool]] = {}
    for type_id, group_id, at, seq, joined in events:
        if at > ts:
            continue
        key = (type_id, group_id)
        current = latest.get(key)
        if current is None or (at, seq) > current[:2]:
            latest[key] = (at, seq, joined)
    out = [
        Membership(type_id, group_id, at)
        for (type_id, group_id), (at, _, joined) in latest.items()
        if joined and not any(at <= gone <= ts for gone in deletions.get((type_id, group_id), ()))
    ]
    out.sort(key=lambda m: (-m.since, m.object_type_id, m.group_id))  # latest joined first; ties by id: stores agree
    return out


def stale_after(entries: Iterable[tuple[float, int, str]], ts: float, message_id: str) -> bool:
    """Whether a value newer than `ts` was recorded before this message's own entry (if it has one).

    `entries` are ``(ts, seq, message_id)`` of one attribute.
    """
    entries = list(entries)
    own = min((seq for _, seq, mid in entries if mid == message_id), default=None)
    return any(at > ts for at, seq, _ in entries if own is None or seq < own)


def latest_at(entries: Iterable[tuple[float, int, Any]], ts: float) -> tuple[float, int, Any] | None:
    """The newest ``(ts, seq, value)`` entry written at or before `ts` (ties broken by `seq`), or None."""
    best = None
    for entry in entries:
        if entry[0] <= ts and (best is None or entry[:2] > best[:2]):
            best = entry
    return best


def linked(start: str, neighbours) -> list[str]:
    """Breadth-first walk of the identity graph from `start` (`neighbours(key) -> iterable`)."""
    seen = [start]
    index = 0
    while index < len(seen) and len(seen) < 1000:
        for other in neighbours(seen[index]):
            if other not in seen:
                seen.append(other)
        index += 1
    return seen
