"""Spec messages -> Customer.io Track API v2 operations: a routing table (`ROUTES`), a field-path table
(`FIELDS`) and one small builder per operation."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

from groupspec.middleware.contract import object_attributes
from groupspec.middleware.message import Message, parse_time
from groupspec.middleware.rollups import Update

from . import identifiers, limits

_ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


_NO_TRAITS: dict[str, Any] = {}
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_TRIPLES = [a + b + c for a in _CROCKFORD for b in _CROCKFORD for c in _CROCKFORD]  # 15 bits -> 3 characters


def event_id(message_id: str, ts: float) -> str:
    """A ULID whose time part is the event's time and whose rest derives from `messageId`: retries dedupe.

    The text form is the 128 bits in Crockford base32, 26 characters: 10 bits, then eight 15-bit groups
    (tests check it against python-ulid).
    """
    millis = max(0, min(int(ts * 1000), (1 << 48) - 1))
    v = (millis << 80) | int.from_bytes(hashlib.sha256(message_id.encode()).digest()[:10], "big")
    t = _TRIPLES
    return (_PAIRS[v >> 120] + t[(v >> 105) & 32767] + t[(v >> 90) & 32767] + t[(v >> 75) & 32767]
            + t[(v >> 60) & 32767] + t[(v >> 45) & 32767] + t[(v >> 30) & 32767] + t[(v >> 15) & 32767]
            + t[v & 32767])


def attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Attribute values as Customer.io wants them: ISO-8601 times become unix seconds."""
    out = {}
    for key, value in values.items():
        if value.__class__ is str and value[4:5] == "-" and _ISO_TIME.match(value):
            ts = parse_time(value)
            if ts is not None:
                value = int(ts)
        out[key] = value
    return out


def _person_ids(msg: Message) -> dict[str, str]:
    return identifiers.person(msg.user_id, msg.anonymous_id, msg.traits if msg.user_id is None else _NO_TRAITS)


def identify(msg: Message) -> list[dict[str, Any]]:
    owned = msg.contract.group_traits
    attrs = attributes({k: v for k, v in msg.traits.items() if k not in owned})
    if msg.anonymous_id is not None and msg.user_id is not None:
        attrs["anonymous_id"] = msg.anonymous_id
    return [{"type": "person", "action": "identify", "identifiers": _person_ids(msg),
             "attributes": attrs, "timestamp": int(msg.ts)}]


def _activity(msg: Message, action: str, name: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    attrs = attributes(msg.props)
    attrs.update(extra)
    return [{"type": "person", "action": action, "identifiers": _person_ids(msg), "name": name,
             "id": event_id(msg.body["messageId"], msg.ts), "timestamp": int(msg.ts), "attributes": attrs}]


def first(msg: Message, paths: tuple[str, ...]) -> Any:
    """The first non-empty value found at `paths` (dotted paths into the message body)."""
    for path in paths:
        value: Any = msg.body
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value not in (None, ""):
            return value
    return None


#: where each mapped field comes from, in order of preference (Segment's field defaults, as data)
FIELDS: dict[str, tuple[str, ...]] = {
    "page.name": ("properties.url", "context.page.url", "name"),
    "screen.name": ("name", "properties.name"),
}


def event(msg: Message) -> list[dict[str, Any]]:
    extra: dict[str, Any] = {}
    if msg.group_id is not None:
        extra["group_id"] = msg.group_id
    if msg.snapshot is not None:
        extra["group_traits"] = msg.snapshot
    return _activity(msg, "event", msg.body["event"], extra)


def page(msg: Message) -> list[dict[str, Any]]:
    return _activity(msg, "page", str(first(msg, FIELDS["page.name"]) or ""), {})


def screen(msg: Message) -> list[dict[str, Any]]:
    return _activity(msg, "screen", str(first(msg, FIELDS["screen.name"]) or ""), {})


def _object_ids(msg: Message) -> dict[str, str]:
    return {"object_type_id": msg.object_type, "object_id": msg.group_id}


def identify_object(msg: Message) -> list[dict[str, Any]]:
    traits = msg.traits
    values = object_attributes(traits)
    values.pop("anonymous_id", None)  # a person's identifier never becomes an object attribute
    op: dict[str, Any] = {"type": "object", "action": "identify", "identifiers": _object_ids(msg),
                          "attributes": attributes(values)}
    if msg.person_key is None:  # a person-less group call updates the object alone
        return [op]
    link: dict[str, Any] = {"identifiers": identifiers.person(msg.user_id, msg.anonymous_id, {})}  # traits: the group's
    relationship = traits.get("relationshipAttributes")
    if isinstance(relationship, dict) and relationship:
        link["relationship_attributes"] = attributes(relationship)
    if msg.user_id is None:
        op["action"] = "identify_anonymous"
    op["cio_relationships"] = [link]
    return [op]


def delete_relationships(msg: Message) -> list[dict[str, Any]]:
    return [{"type": "object", "action": "delete_relationships", "identifiers": _object_ids(msg),
             "cio_relationships": [{"identifiers": _person_ids(msg)}]}]


def delete_object(msg: Message) -> list[dict[str, Any]]:
    return [{"type": "object", "action": "delete", "identifiers": _object_ids(msg)}]


def merge(msg: Message) -> list[dict[str, Any]]:
    return [{"type": "person", "action": "merge", "primary": identifiers.of_id(msg.user_id),
             "secondary": identifiers.of_id(msg.body["previousId"])}]


#: which message becomes which Track API v2 operation: (type, event name or None for any) -> builder.
#: The most specific row wins, like the presets of Segment's Customer.io (Actions) destination.
ROUTES: dict[tuple[str, str | None], Callable[[Message], list[dict[str, Any]]]] = {
    ("identify", None): identify,
    ("track", None): event,
    ("track", "Relationship Deleted"): delete_relationships,
    ("track", "Object Deleted"): delete_object,
    ("page", None): page,
    ("screen", None): screen,
    ("group", None): identify_object,
    ("alias", None): merge,
}


def operations(msg: Message) -> list[dict[str, Any]]:
    """The Track API v2 operations of a forwarded message, by the first matching row of `ROUTES`."""
    build = ROUTES.get((msg.type, msg.body.get("event"))) if msg.type == "track" else None
    return (build or ROUTES[msg.type, None])(msg)


def object_update(update: Update) -> dict[str, Any]:
    """An object `identify` carrying a group's rollup attributes."""
    type_id, group_id, values = update
    return {"type": "object", "action": "identify",
            "identifiers": {"object_type_id": type_id, "object_id": group_id}, "attributes": attributes(values)}


class CustomerIO:
    """The Customer.io destination the engine maps forwarded messages with (`groupspec.middleware.engine`)."""

    operations = staticmethod(operations)
    object_update = staticmethod(object_update)
    problem = staticmethod(limits.problem)


CUSTOMERIO = CustomerIO()
