"""Group resolution: explicit `context.groupId` -> `properties[group_key]` -> membership -> unresolved."""

from __future__ import annotations

from .message import Message, message_key
from .stores import Store


class Resolve:
    """Finds the candidate group of a message and the memberships of its person at the message's time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, msg: Message) -> Message:
        store = self.store
        person = msg.person_key
        msg.key = message_key(msg.source, person, msg.type, msg.body["messageId"])
        msg.arrival = store.admit(msg.key, msg.ts)  # reads see the facts known when it first arrived
        if person is not None:
            persons = store.identities(person, before=msg.arrival)
            if msg.user_id is not None and msg.anonymous_id is not None:
                persons += [k for k in store.identities("a:" + msg.anonymous_id, before=msg.arrival) if k not in persons]
            msg.memberships = store.memberships_at(persons, msg.as_of, before=msg.arrival)
        body = msg.body
        if msg.type == "group":
            msg.group_id, msg.resolution = body["groupId"], "explicit"
            return msg
        if msg.object_event:
            msg.group_id, msg.resolution = msg.props.get("objectId"), "explicit"
            return msg
        context = body.get("context")
        explicit = context.get("groupId") if context else None
        if explicit not in (None, ""):
            msg.group_id, msg.resolution = explicit, "explicit"
            return msg
        carrier = msg.traits if msg.type == "identify" else msg.props
        found = carrier.get(msg.contract.group_key)
        if found not in (None, ""):
            msg.group_id, msg.resolution = found, "property"
            return msg
        return use_membership(msg)


def use_membership(msg: Message) -> Message:
    """Resolve from the person's memberships: the default object type's latest join, else any type's."""
    memberships = msg.memberships
    msg.group_id, msg.resolution = None, "unresolved"
    if memberships:
        default = msg.contract.default_object_type_id
        chosen = next((m for m in memberships if m.object_type_id == default), memberships[0])
        msg.group_id, msg.resolution = chosen.group_id, "membership"
    return msg
