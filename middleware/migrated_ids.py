"""Senders that keep an old id: a message naming a migrated group id is mapped to the id it became before the
contract checks (an old id may not match the new `group_id_pattern`). After a rename to the new id whatever the
message's time; after a merge by the message's time (dated from `at`: the new id; before: the old one, as it was).
The id is rewritten in the forwarded body, the original kept in `context.groupspec.migrated_from`, and the message
flagged `group_id_migrated` (or dropped, by the contract's action) so that senders can be fixed."""

from __future__ import annotations

from typing import Any

from .events import object_type_source
from .message import Message
from .stores.migrated import Migrated


class MapMigrated:
    """The step after `Resolve`: an explicit or property group id that was migrated becomes the new id."""

    def __init__(self, store: Migrated) -> None:
        self.store = store

    def __call__(self, msg: Message) -> Message:
        if not self.store.active or msg.resolution not in ("explicit", "property"):
            return msg
        old = msg.group_id
        if not isinstance(old, (str, int)) or isinstance(old, bool):
            return msg  # no id at all: the contract checks say so
        old = str(old)
        migrations = self.store.map.known(msg.arrival)
        type_id = _object_type(msg, migrations.types_of(old))
        new = old if type_id is None else migrations.resolve(type_id, old, msg.ts)
        if new == old:
            return msg
        path = _id_path(msg)
        msg.own(*path[:-1])[path[-1]] = new
        msg.group_id, msg.migrated_from = new, old
        msg.violate("group_id_migrated", ".".join(path),
                    f"group id {old!r} was migrated to {new!r}; the message was mapped to it (send the new id)")
        return msg


def _object_type(msg: Message, types: list[str]) -> str | None:
    """The object type the message's group id is of: a group call's or object event's own; for an event the
    default type when the id was migrated there, else the one type it was migrated in."""
    if not types:
        return None
    if msg.type == "group" or msg.object_event:
        raw, _ = object_type_source(msg)
        return msg.contract.default_object_type_id if raw is None else str(raw)
    default = msg.contract.default_object_type_id
    return default if default in types else types[0]


def _id_path(msg: Message) -> tuple[str, ...]:
    """Where the message carries the group id `Resolve` named."""
    if msg.type == "group":
        return ("groupId",)
    if msg.object_event:
        return ("properties", "objectId")
    if msg.resolution == "explicit":
        return ("context", "groupId")
    key = msg.contract.group_key
    if msg.type != "identify":
        return ("properties", key)
    traits: Any = msg.body.get("traits")
    return ("traits", key) if isinstance(traits, dict) and traits.get(key) not in (None, "") else ("context", "traits", key)
