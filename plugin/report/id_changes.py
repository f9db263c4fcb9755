"""Likely unmigrated group id changes: a group whose members (two or more) all joined one other group of the same
type within a window and never came back to it — what a sender that switched id schemes, or two households that
merged, look like when nobody ran `groupspec groups migrate`. Pure functions over the joins a report read."""

from __future__ import annotations

from collections.abc import Callable, Iterable

#: fewer members than this is a person moving, not a group changing its id
MIN_MEMBERS = 2

Join = tuple[str, str, str, float]  # (person key, object type id, group id, time)


def id_changes(joins: Iterable[Join], window: float, person: Callable[[str], str] = lambda key: key,
               migrated: set[str] = frozenset()) -> list[tuple[str, str, str, int, float, float]]:
    """``(object type, old id, new id, members, first move, last move)`` of every likely id change, by old id;
    `person` names a person key by its identity (linked keys are one person); ids in `migrated` were migrated."""
    by_person: dict[str, list[tuple[float, str, str]]] = {}
    members: dict[tuple[str, str], set[str]] = {}
    for key, type_id, group_id, ts in joins:
        who = person(key)
        by_person.setdefault(who, []).append((ts, type_id, group_id))
        members.setdefault((type_id, group_id), set()).add(who)
    found = []
    for (type_id, group_id), people in sorted(members.items()):
        if len(people) < MIN_MEMBERS or group_id in migrated:
            continue
        moves = [_move(by_person[who], type_id, group_id) for who in sorted(people)]
        if None in moves or len({target for _, target in moves}) != 1:
            continue
        times = [ts for ts, _ in moves]
        if max(times) - min(times) <= window:
            found.append((type_id, group_id, moves[0][1], len(people), min(times), max(times)))
    return found


def _move(joins: list[tuple[float, str, str]], type_id: str, group_id: str) -> tuple[float, str] | None:
    """When and to which group of the same type a person first went after their last join of `group_id`."""
    last = max(ts for ts, t, g in joins if (t, g) == (type_id, group_id))
    later = [(ts, g) for ts, t, g in joins if t == type_id and g != group_id and ts > last]
    return min(later) if later else None
