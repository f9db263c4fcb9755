"""Group resolution: explicit `context.groupId` -> `properties[group_key]` -> membership -> unresolved."""

from __future__ import annotations

from typing import Any

from .events import object_attributes, object_type_source
from .message import Message, message_key
from .stores import Store


class Resolve:
    """Finds the candidate group of a message and the memberships of its person at the message's time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, msg: Message) -> Message:
        person = msg.person_key
        msg.key = message_key(msg.source, person, msg.type, msg.body["messageId"])
        named = named_group(msg)
        persons = [] if person is None else [person]
        if msg.user_id is not None and msg.anonymous_id is not None:
            persons.append("a:" + msg.anonymous_id)
        # one store call: the arrival number (reads see the facts known when it first arrived), the linked
        # persons' memberships at the message's time, (where the store can) the traits `Attach` snapshots, and
        # for a group call the names of its traits that have a newer value (`check_stale`)
        names = msg.contract.attach_group_traits if msg.type == "track" and not msg.object_event else ()
        hint = (msg.contract.default_object_type_id, named[0]) if named and isinstance(named[0], str) else None
        own, own_names = group_call_target(msg)
        timeless = msg.device_ts is None
        found = self.store.lookup(msg.key, persons, msg.as_of, names, hint, event_ts=msg.ts,
                                  stale_group=own, stale_names=own_names, timeless=timeless)
        if timeless and found.first_ts is not None and found.first_ts != msg.ts:
            # a re-send of a message without a time of its own: it happened when it first arrived (its id too)
            msg.ts = found.first_ts
            found = self.store.lookup(msg.key, persons, msg.as_of, names, hint, event_ts=msg.ts,
                                      stale_group=own, stale_names=own_names, timeless=timeless)
        msg.arrival, msg.memberships, msg.group_traits = found.arrival, found.memberships, found.traits
        msg.stale = None if found.stale is None else (own, found.stale)
        if named is not None:
            msg.group_id, msg.resolution = named
            return msg
        return use_membership(msg)


def named_group(msg: Message) -> tuple[object, str] | None:
    """``(group id, resolution)`` when the message names its group (explicit, else by property); None when its
    person's memberships decide."""
    body = msg.body
    if msg.type == "group":
        return body["groupId"], "explicit"
    if msg.object_event:
        return msg.props.get("objectId"), "explicit"
    context = body.get("context")
    explicit = context.get("groupId") if context else None
    if explicit not in (None, ""):
        return explicit, "explicit"
    carrier = msg.traits if msg.type == "identify" else msg.props
    found = carrier.get(msg.contract.group_key)
    if found not in (None, ""):
        return found, "property"
    return None


def group_call_target(msg: Message) -> tuple[tuple[str, Any] | None, list[str]]:
    """``((object type, group id), trait names)`` of a group call with traits, as `check_object_target`,
    `check_group_id` and `check_stale` will read them; ``(None, [])`` for anything else (or an id that is no
    string or number: such a call is dropped)."""
    group_id = msg.body.get("groupId") if msg.type == "group" else None
    names = list(object_attributes(msg.traits)) if group_id is not None else []
    if not names or not isinstance(group_id, (str, int)) or isinstance(group_id, bool):
        return None, []
    raw, _ = object_type_source(msg)
    return (msg.contract.default_object_type_id if raw is None else str(raw), str(group_id)), names


def use_membership(msg: Message) -> Message:
    """Resolve from the person's memberships: the default object type's latest join, else any type's."""
    memberships = msg.memberships
    msg.group_id, msg.resolution = None, "unresolved"
    if memberships:
        default = msg.contract.default_object_type_id
        chosen = next((m for m in memberships if m.object_type_id == default), memberships[0])
        msg.group_id, msg.resolution = chosen.group_id, "membership"
    return msg
