"""The contract checks: small steps that find violations and apply the configured flag / strip / drop."""

from __future__ import annotations

import re
from typing import Any

from .events import object_attributes, object_type_source
from .config import duration_seconds
from .message import Message, parse_time
from .resolve import use_membership
from .step import only
from .stores import Store
from .violations import violation

MAX_ID_BYTES = 150
_MUTABLE_ID = re.compile(r"(?P<email>[^@\s]+@[^@\s]+\.[^@\s]+)|(?P<url>^[A-Za-z][A-Za-z0-9+.-]*://)|(?P<space>\s)")
_MUTABLE_PROBLEM = {"email": "looks like an email address", "url": "looks like a URL", "space": "contains whitespace"}
_OBJECT_TYPE = re.compile(r"[1-9][0-9]*")


def _trait_paths(name: str) -> tuple[tuple[str, ...], ...]:
    """Where a group call may carry trait `name`: directly, or in Segment's nested `objectAttributes`."""
    return ("traits", name), ("traits", "objectAttributes", name)


def check_time(msg: Message) -> Message:
    """A message dated more than `future_tolerance` after it was received (`future_timestamp`) is a broken
    clock, never the newest truth: flagged, it takes the time it was received. The receipt is the `receivedAt`
    field, else the clock of a live door; an offline replay on stream time has none to compare with."""
    stamp = msg.body.get("receivedAt")
    if stamp is None and not msg.live:
        return msg
    reference = parse_time(stamp)
    if reference is None:
        if not msg.live:
            return msg
        reference = msg.received_at
    ahead = msg.ts - reference
    if ahead > duration_seconds(msg.contract.future_tolerance):
        msg.violate("future_timestamp", "timestamp", f"dated {ahead / 86400:.1f} days after it was received "
                    f"(more than future_tolerance = {msg.contract.future_tolerance})")
        msg.ts = reference
    return msg


@only("group", "track")
def check_object_target(msg: Message) -> Message:
    """Group calls and object events name an object: a positive integer type id and an object id."""
    if msg.type == "track" and not msg.object_event:
        return msg
    if msg.object_event and msg.group_id in (None, ""):
        return msg.drop("malformed", "properties.objectId", f"{msg.body['event']} without properties.objectId")
    raw, field = object_type_source(msg)  # the compat profile's keys, the same the mapping reads
    if raw is None:
        msg.object_type = msg.contract.default_object_type_id
    elif isinstance(raw, (str, int)) and not isinstance(raw, bool) and _OBJECT_TYPE.fullmatch(str(raw)):
        msg.object_type = str(raw)
    else:
        msg.object_type = str(raw)
        msg.violate("invalid_object_type", field, f"object type id must be a positive integer, got {raw!r}")
    return msg


def check_anonymous_relationship_delete(msg: Message, store: Store) -> Message:
    """Customer.io's `delete_relationships` takes `id`, `email` or `cio_id`, never `anonymous_id`: an anonymous
    `Relationship Deleted` goes out for the one userId its anonymousId is linked to, else it is quarantined
    (`anonymous_relationship_delete`)."""
    if msg.effect != "leave" or msg.user_id is not None:
        return msg
    users = sorted(k[2:] for k in store.identities("a:" + msg.anonymous_id, before=msg.arrival) if k[:2] == "u:")
    if len(users) == 1:
        msg.user_id = users[0]  # the person it resolves to (the forwarded body stays as sent)
        return msg
    linked = f"linked to several userIds ({', '.join(users)})" if users else "linked to no userId"
    return msg.drop("anonymous_relationship_delete", "anonymousId",
                    f"Relationship Deleted from anonymousId {msg.anonymous_id!r}, which is {linked}: "
                    f"delete_relationships takes id, email or cio_id")


def id_problem(value: Any, pattern: re.Pattern[str] | None) -> str | None:
    """Why `value` is not a usable group id under `pattern` (the `invalid_group_id` message), or None."""
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        return f"group id must be a string, got {type(value).__name__}"
    value = str(value)
    if len(value.encode()) > MAX_ID_BYTES:
        return f"group id is over {MAX_ID_BYTES} bytes"
    found = _MUTABLE_ID.search(value)
    if found:
        return f"group id {value!r} {_MUTABLE_PROBLEM[found.lastgroup]}; use a stable id"
    if pattern and not pattern.fullmatch(value):
        return f"group id {value!r} does not match {pattern.pattern}"
    return None


def check_group_id(msg: Message) -> Message:
    """The candidate group id must be stable and well-formed (`invalid_group_id`).

    A flagged id is still used, unless it is not even a string or a number: then it is always removed (on an
    event) or the message dropped (a group call or object event, whose subject it is); so is a stripped one."""
    if msg.group_id is None or msg.resolution == "membership":
        return msg
    problem = id_problem(msg.group_id, msg.contract.group_id_regex)
    if problem is None:
        msg.group_id = str(msg.group_id)
        return msg
    field = _group_id_field(msg)
    usable = isinstance(msg.group_id, (str, int)) and not isinstance(msg.group_id, bool)
    action = msg.contract.action("invalid_group_id")
    if msg.type == "group" or msg.object_event:
        if not (usable and action == "flag"):
            return msg.drop("invalid_group_id", field, problem)
        msg.group_id = str(msg.group_id)
        msg.violate("invalid_group_id", field, problem)
        return msg
    if not usable:  # an id that is not even a string or a number is never kept, whatever the action
        if action == "drop":
            return msg.drop("invalid_group_id", field, problem)
        msg.violations.append(violation("invalid_group_id", field, problem))
        msg.remove(_field_path(field))
        return use_membership(msg)
    if msg.violate("invalid_group_id", field, problem, strip=(_field_path(field),)):
        use_membership(msg)
    return msg


def _group_id_field(msg: Message) -> str:
    if msg.type == "group":
        return "groupId"
    if msg.object_event:
        return "properties.objectId"
    if msg.resolution == "explicit":
        return "context.groupId"
    return ("traits." if msg.type == "identify" else "properties.") + msg.contract.group_key


def _field_path(field: str) -> tuple[str, ...]:
    """`context.groupId` -> ("context", "groupId"): the body path of a candidate id's field."""
    return tuple(field.split(".", 1))


@only("identify", "track", "page", "screen")
def check_conflict(msg: Message) -> Message:
    """An explicit group id that contradicts the person's known memberships (`group_id_conflict`)."""
    if msg.resolution not in ("explicit", "property") or msg.type == "group" or msg.object_event:
        return msg
    if not msg.memberships or any(m.group_id == msg.group_id for m in msg.memberships):
        return msg
    known = ", ".join(sorted({m.group_id for m in msg.memberships}))
    field = _group_id_field(msg)
    if msg.violate("group_id_conflict", field,
                   f"person is not a member of {msg.group_id!r} at this time (member of {known})",
                   strip=(_field_path(field),)):
        use_membership(msg)
    return msg


@only("track", when=lambda c: bool(c.require_group))
def check_required(msg: Message) -> Message:
    """Events listed in `require_group` must resolve a group (`missing_group_id`)."""
    if msg.group_id is None and msg.contract.requires_group(msg.body["event"]):
        msg.violate("missing_group_id", "context.groupId", f"{msg.body['event']!r} requires a group; none resolved")
    return msg


@only("identify", "track", "page", "screen", "alias", when=lambda c: bool(c.group_traits))
def check_person_traits(msg: Message) -> Message:
    """Group-owned attributes do not belong on people (`group_trait_on_person`)."""
    declared = msg.contract.group_traits
    body = msg.body
    context = body.get("context")
    for where, holder in (("traits", body.get("traits")), ("context.traits", context.get("traits") if context else None)):
        if not holder or not isinstance(holder, dict):
            continue
        for name in [n for n in holder if n in declared]:
            msg.violate(
                "group_trait_on_person", f"{where}.{name}",
                f"{name!r} is owned by the group; set it with a group call",
                strip=((*where.split("."), name),),
            )
            if msg.quarantined:
                return msg
    return msg


_TYPE_CHECKS = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "timestamp": lambda v: parse_time(v) is not None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
}


@only("group", when=lambda c: bool(c.group_traits))
def check_group_traits(msg: Message) -> Message:
    """Declared group traits keep their type and enum (`invalid_group_trait`) and their owner
    (`not_attribute_owner`)."""
    for name, value in object_attributes(msg.traits).items():
        rule = msg.contract.group_traits.get(name)
        if rule is None:
            continue
        strip = _trait_paths(name)
        if rule.owner is not None and rule.owner != msg.source:
            msg.violate("not_attribute_owner", f"traits.{name}",
                        f"{name!r} is owned by source {rule.owner!r}, not {msg.source or 'an unnamed source'!r}", strip=strip)
        elif value is not None and rule.type is not None and not _TYPE_CHECKS[rule.type](value):
            msg.violate("invalid_group_trait", f"traits.{name}", f"{name!r} must be a {rule.type}, got {value!r}", strip=strip)
        elif value is not None and rule.enum is not None and value not in rule.enum:
            msg.violate("invalid_group_trait", f"traits.{name}", f"{name!r} must be one of {rule.enum}, got {value!r}", strip=strip)
        if msg.quarantined:
            return msg
    return msg


def check_stale(msg: Message, store: Store) -> Message:
    """Per attribute, the newest write wins: older group updates are stale (`stale_group_update`). Stale only
    decides what becomes current: a stripped value stays in `Message.late_traits`, which `learn` records in the
    trait's history at its own time."""
    if msg.type != "group":
        return msg
    attributes = object_attributes(msg.traits)
    names = list(attributes)
    if not names:
        return msg
    if msg.stale is not None and msg.stale[0] == (msg.object_type, msg.group_id):  # the lookup's (`Resolve`
        stale = msg.stale[1].intersection(names)  # asks for it), for the names before any was stripped
    else:  # not given, or for another group than the checks settled on: a read of its own
        stale = store.stale_traits(msg.object_type, msg.group_id, names, msg.ts, msg.key, before=msg.arrival)
    late = {}
    for name in sorted(stale):
        if msg.violate("stale_group_update", f"traits.{name}", f"{name!r} has a newer value than this update",
                       strip=_trait_paths(name)):
            late[name] = attributes[name]
        if msg.quarantined:
            return msg
    if late:
        msg.late_traits = late
    return msg


def checks(store: Store) -> list:
    """The contract's steps, in order."""
    return [
        only("track")(lambda msg: check_anonymous_relationship_delete(msg, store)),
        check_object_target,
        check_group_id,
        check_conflict,
        check_required,
        check_person_traits,
        check_group_traits,
        only("group")(lambda msg: check_stale(msg, store)),
    ]
