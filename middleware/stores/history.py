"""Point-in-time folding of recorded events, shared by every store.

A membership event is ``(object_type_id, group_id, ts, seq, joined, arrived)``; the newest event at or before
the asked time decides (ties broken by `seq`, the order of recording), and an object deletion after the join ends
it. `arrived` is the arrival number of the message that recorded a fact (None: always known); a read made for the
message that arrived `before` ignores the facts with ``arrived >= before``, so a replayed message sees what it saw
the first time (`before=None`: every fact).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import Membership

Event = tuple[str, str, float, int, bool, int | None]
Deletion = tuple[float, int | None]  # (ts, arrived)


def unknown(arrived: int | None, before: int | None) -> bool:
    """Whether a fact recorded on arrival `arrived` was not yet known to the message that arrived `before`."""
    return before is not None and arrived is not None and arrived >= before


def fold_memberships(events: Iterable[Event], deletions: dict[tuple[str, str], list[Deletion]], ts: float,
                     before: int | None = None) -> list[Membership]:
    """The memberships in force at `ts` as known `before` an arrival number, latest joined first."""
    latest: dict[tuple[str, str], tuple[float, int, bool]] = {}
    for type_id, group_id, at, seq, joined, arrived in events:
        if at > ts or (before is not None and arrived is not None and arrived >= before):  # `unknown`, inlined
            continue
        key = (type_id, group_id)
        current = latest.get(key)
        if current is None or (at, seq) > current[:2]:
            latest[key] = (at, seq, joined)
    out = [
        Membership(type_id, group_id, at)
        for (type_id, group_id), (at, _, joined) in latest.items()
        if joined and not any(at <= gone <= ts and not unknown(arrived, before)
                              for gone, arrived in deletions.get((type_id, group_id), ()))
    ]
    if len(out) > 1:
        out.sort(key=lambda m: (-m.since, m.object_type_id, m.group_id))  # latest joined first; ties by id: stores agree
    return out


def stale_after(entries: Iterable[tuple[float, int, str, int | None]], ts: float, message_id: str,
                before: int | None = None) -> bool:
    """Whether a value newer than `ts` was recorded before this message's own entry (if it has one) and known
    `before` its arrival number.

    `entries` are ``(ts, seq, message_id, arrived)`` of one attribute.
    """
    entries = [e for e in entries if not unknown(e[3], before)]
    own = min((seq for _, seq, mid, _ in entries if mid == message_id), default=None)
    return any(at > ts for at, seq, _, _ in entries if own is None or seq < own)


def latest_at(entries: Iterable[tuple[float, int, Any, int | None]], ts: float,
              before: int | None = None) -> tuple[float, int, Any, int | None] | None:
    """The newest ``(ts, seq, value, arrived)`` entry written at or before `ts` (ties broken by `seq`) and known
    `before` an arrival number, or None."""
    best = None
    for entry in entries:
        if entry[0] <= ts and (best is None or entry[:2] > best[:2]) and not unknown(entry[3], before):
            best = entry
    return best


def linked(start: str, neighbours, before: int | None = None) -> list[str]:
    """Breadth-first walk of the identity graph from `start` along the links known `before` an arrival number
    (`neighbours(key) -> iterable of (key, arrived)`)."""
    seen = [start]
    index = 0
    while index < len(seen) and len(seen) < 1000:
        for other, arrived in neighbours(seen[index]):
            if other not in seen and not unknown(arrived, before):
                seen.append(other)
        index += 1
    return seen


def retained(entries: Iterable[tuple], horizon: float, history, order) -> list[tuple]:
    """The entries `compact` keeps: those at or after `horizon` and, per history (`history(entry)`), the latest
    one before it (by `order(entry)`, whose first item is the time)."""
    latest: dict[Any, tuple] = {}
    kept = []
    for entry in entries:
        if order(entry)[0] >= horizon:
            kept.append(entry)
        else:
            key = history(entry)
            if key not in latest or order(entry) > order(latest[key]):
                latest[key] = entry
    return [*latest.values(), *kept]
