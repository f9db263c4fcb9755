"""Track events that change groups rather than record a person's activity: the one table every layer reads
(resolution, contract, learning, counting); what each becomes in Customer.io is the destination's mapping table.

The tables below the first depend on the `[customerio] compat` profile's conventions (`Contract.conventions`:
"segment", or "rudderstack" for both RudderStack paths): which conventions a message follows decides where its
object type is and what a group call or a lifecycle event does to the store, and the mapping reads the same
tables, so the store and Customer.io never disagree."""

from __future__ import annotations

from typing import Any

#: event name -> its effect on the store: "leave" ends the person's membership, "delete_object" ends the group
STORE_EVENTS: dict[str, str] = {
    "Relationship Deleted": "leave",
    "Object Deleted": "delete_object",
}

#: (conventions, event name) -> its effect on the person in the store: "delete_person" ends every membership.
#: Segment's destination deletes the person on `User Deleted`; RudderStack's sends a plain event.
PERSON_EVENTS: dict[tuple[str, str], str] = {
    ("segment", "User Deleted"): "delete_person",
}

#: (conventions, message type) -> the keys naming the object type, first present wins (then the contract's
#: default).
#: Segment reads `object_type_id` before `objectTypeId` on group calls and object events; RudderStack's group
#: call reads `traits.objectTypeId` only. Object events are groupspec's own operations in both profiles.
OBJECT_TYPE_KEYS: dict[tuple[str, str], tuple[str, ...]] = {
    ("segment", "group"): ("object_type_id", "objectTypeId"),
    ("segment", "track"): ("object_type_id", "objectTypeId"),
    ("rudderstack", "group"): ("objectTypeId",),
    ("rudderstack", "track"): ("object_type_id", "objectTypeId"),
}

#: RudderStack's object actions a group call may choose with `traits.action` (or `properties.action`), and the
#: effect of each on the store: "join" records the membership, "leave" ends it, "delete_object" ends the group
GROUP_ACTIONS: dict[str, str] = {
    "identify": "join",
    "add_relationships": "join",
    "delete_relationships": "leave",
    "delete": "delete_object",
}


#: keys of group traits that configure the object rather than describe it
OBJECT_CONTROL_KEYS = ("objectTypeId", "object_type_id", "relationshipAttributes", "objectAttributes")


def object_attributes(traits: dict[str, Any]) -> dict[str, Any]:
    """A group call's object attributes: traits, Segment's nested `objectAttributes` flattened in."""
    out = {k: v for k, v in traits.items() if k not in OBJECT_CONTROL_KEYS}
    nested = traits.get("objectAttributes")
    if isinstance(nested, dict):
        out.update(nested)
    return out


def object_type_source(msg: Any) -> tuple[Any, str]:
    """(raw object type, its field) of a group call or an object event, as its profile's conventions read it; the
    raw value is None when none is given (the contract's default applies)."""
    group = msg.type == "group"
    holder, prefix = (msg.traits, "traits.") if group else (msg.props, "properties.")
    keys = OBJECT_TYPE_KEYS[msg.contract.conventions, "group" if group else "track"]
    for key in keys:
        if holder.get(key) is not None:
            return holder[key], prefix + key
    return None, prefix + keys[-1]


def relationship_type(traits: dict[str, Any], contract: Any) -> str:
    """The object type of an identify's `traits.objectId` (Segment's `createUpdatePerson`): read like a group
    call's, else the contract's default."""
    for key in OBJECT_TYPE_KEYS["segment", "group"]:
        if traits.get(key) is not None:
            return str(traits[key])
    return contract.default_object_type_id


def group_action(msg: Any) -> str:
    """The object action of a group call: `traits.action` / `properties.action` under RudderStack's conventions
    when it is one of `GROUP_ACTIONS`, else "identify"."""
    if msg.contract.conventions == "rudderstack":
        action = msg.traits.get("action") or msg.props.get("action")
        if isinstance(action, str) and action in GROUP_ACTIONS:
            return action
    return "identify"


def person_effect(msg: Any) -> str | None:
    """The effect of a track event on its person in the store (`PERSON_EVENTS`), or None."""
    if msg.type != "track":
        return None
    return PERSON_EVENTS.get((msg.contract.conventions, msg.body.get("event")))
