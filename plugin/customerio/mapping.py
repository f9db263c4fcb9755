"""Spec messages -> Customer.io Track API v2 operations: a routing table per `[customerio] compat` profile
(`ROUTES`, Segment's destination, the default; `rudderstack.ROUTES_V1` and `ROUTES_V2`), a field-path table
(`common.FIELDS`) and one small builder per operation, each naming the reference action it reproduces
(docs/parity-reference.md). A message the reference sends nothing for gets no operation and is flagged
`not_mapped`; so is one whose operation Customer.io's schema would refuse (`limits.missing`)."""

from __future__ import annotations

from typing import Any

import orjson
from groupspec.middleware.events import object_attributes, relationship_type
from groupspec.middleware.message import Message
from groupspec.middleware.rollups import Update

from . import dates, identifiers, limits, rudderstack
from .common import FIELDS, Builder, event_id, first, group_extra, not_mapped

__all__ = ["CUSTOMERIO", "FIELDS", "PROFILES", "ROUTES", "attributes", "event_id", "first", "operations"]


def attributes(values: dict[str, Any]) -> dict[str, Any]:
    """Attribute values as Segment's destination sends them: ISO-8601 strings become unix seconds, at any depth of
    objects (`dates.segment`)."""
    return dates.segment(values)


#: Segment's relationship keys on identify (`createUpdatePerson`): they configure `cio_relationships`
_RELATIONSHIP_KEYS = ("createdAt", "created_at", "object_type_id", "objectTypeId", "relationshipAttributes")


def _traits(msg: Message) -> dict[str, Any]:
    """The person traits Segment's actions read: `$.traits` only (never `context.traits`, which `Message.traits`
    falls back to for RudderStack's identify)."""
    traits = msg.body.get("traits")
    return traits if isinstance(traits, dict) else {}


def _person_id(msg: Message, email_fallback: bool) -> str | None:
    """Segment's person id: `userId`, else (identify, delete, unsuppress) `traits.email`."""
    if msg.user_id is not None or not email_fallback:
        return msg.user_id
    email = _traits(msg).get("email")
    return email if isinstance(email, str) and email else None


def _person_ids(msg: Message, email_fallback: bool = False) -> dict[str, str]:
    return identifiers.person(_person_id(msg, email_fallback), msg.anonymous_id)


def _with_anonymous_id(msg: Message, ids: dict[str, str], attrs: dict[str, Any]) -> dict[str, Any]:
    """Segment's `buildPayload`: the anonymousId rides along as an attribute unless it is the identifier."""
    if msg.anonymous_id is not None and "anonymous_id" not in ids:
        attrs["anonymous_id"] = msg.anonymous_id
    return attrs


def identify(msg: Message) -> list[dict[str, Any]]:
    """Segment `createUpdatePerson`: `traits` as attributes (relationship keys out, `created_at` from
    `created_at`/`createdAt`), dates converted; `traits.objectId` relates the person to that object. Nothing is
    read from `context.traits`."""
    traits, owned = _traits(msg), msg.contract.group_traits
    values = {k: v for k, v in traits.items() if k not in owned and k not in _RELATIONSHIP_KEYS}
    created = traits.get("created_at") if traits.get("created_at") is not None else traits.get("createdAt")
    if created:
        values["created_at"] = created
    ids = _person_ids(msg, email_fallback=True)
    op: dict[str, Any] = {"type": "person", "action": "identify", "identifiers": ids,
                          "attributes": _with_anonymous_id(msg, ids, attributes(values))}
    object_id = traits.get("objectId")
    if object_id:
        target = {"object_type_id": relationship_type(traits, msg.contract), "object_id": str(object_id)}
        link: dict[str, Any] = {"identifiers": target}
        if traits.get("relationshipAttributes"):  # as sent: Segment's conversion does not enter the list
            link["relationship_attributes"] = traits["relationshipAttributes"]
        op["cio_relationships"] = [link]
    op["timestamp"] = int(msg.ts)
    return [op]


def activity(action: str, name: str, user_id: str | None, anonymous_id: str | None, props: dict[str, Any],
             key: str, stable_ts: float, ts: float, extra: dict[str, Any]) -> dict[str, Any]:
    """A person activity (Segment `trackEvent`, `trackPageView`, `trackScreenView`) over plain values: `props` as
    attributes, dates converted, the anonymousId along unless it is the identifier, then groupspec's `extra`."""
    ids = identifiers.person(user_id, anonymous_id)
    attrs = attributes(props)
    if anonymous_id is not None and "anonymous_id" not in ids:
        attrs["anonymous_id"] = anonymous_id
    attrs.update(extra)
    return {"type": "person", "action": action, "identifiers": ids, "name": name, "id": event_id(key, stable_ts),
            "timestamp": int(ts), "attributes": attrs}


def _activity(msg: Message, action: str, name: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    return [activity(action, name, msg.user_id, msg.anonymous_id, msg.props, msg.key, msg.stable_ts, msg.ts, extra)]


def event(msg: Message) -> list[dict[str, Any]]:
    """Segment `trackEvent`."""
    return _activity(msg, "event", msg.body["event"], group_extra(msg))


def _device_refused(msg: Message, action: str, token: Any) -> list[dict[str, Any]] | None:
    """Segment's device actions require `userId` and a token (`context.device.token`): without them the action
    fails and, the Track Event preset excluding device events, nothing is sent."""
    if msg.user_id is None:
        return not_mapped(msg, "userId", f"{msg.body['event']} without a userId: Segment's {action} requires one")
    if not isinstance(token, str) or not token:
        return not_mapped(msg, "context.device.token",
                          f"{msg.body['event']} without context.device.token: Segment's {action} requires one")
    return None


def add_device(msg: Message) -> list[dict[str, Any]]:
    """Segment `createUpdateDevice` alone (userId, token and platform required): the Track Event preset excludes
    device events."""
    token, platform = first(msg, FIELDS["device.token"]), first(msg, FIELDS["device.platform"])
    refused = _device_refused(msg, "createUpdateDevice", token)
    if refused is not None:
        return refused
    if platform is None:
        return not_mapped(msg, "context.device.type", f"{msg.body['event']} without context.device.type: "
                          "Segment's createUpdateDevice requires the platform")
    attrs = attributes(msg.props)
    version = first(msg, FIELDS["device.app_version"])
    if version:
        attrs["app_version"] = version
    device = {"token": token, "platform": platform, "last_used": int(msg.ts), "attributes": attrs}
    return [{"type": "person", "action": "add_device", "identifiers": identifiers.of_id(msg.user_id),
             "device": device}]


def delete_device(msg: Message) -> list[dict[str, Any]]:
    """Segment `deleteDevice` alone (userId and token required): the Track Event preset excludes device events."""
    token = first(msg, FIELDS["device.token"])
    refused = _device_refused(msg, "deleteDevice", token)
    if refused is not None:
        return refused
    return [{"type": "person", "action": "delete_device", "identifiers": identifiers.of_id(msg.user_id),
             "device": {"token": token}}]


def _lifecycle(action: str, email_fallback: bool) -> Builder:
    def build(msg: Message) -> list[dict[str, Any]]:
        person_id = _person_id(msg, email_fallback)
        if person_id is None:  # Segment's action requires the person id: nothing goes out
            wanted = "a userId or traits.email" if email_fallback else "a userId"
            return not_mapped(msg, "userId", f"{msg.body['event']} without {wanted}: Segment's {action} requires it")
        return [{"type": "person", "action": action, "identifiers": identifiers.person(person_id)}]

    build.__name__ = action
    build.__doc__ = f"Segment's person `{action}` (person id: userId{', else traits.email' if email_fallback else ''})."
    return build


delete_person = _lifecycle("delete", email_fallback=True)
suppress = _lifecycle("suppress", email_fallback=False)
unsuppress = _lifecycle("unsuppress", email_fallback=True)


def page(msg: Message) -> list[dict[str, Any]]:
    """Segment `trackPageView`: named by `properties.url` (groupspec: else `context.page.url`); without a URL
    Segment's action fails, so nothing is sent."""
    name = first(msg, FIELDS["page.name"])
    if name is None:
        return not_mapped(msg, "properties.url", "a page without properties.url or context.page.url: Segment's "
                          "trackPageView requires the URL")
    return _activity(msg, "page", str(name), {})


def screen(msg: Message) -> list[dict[str, Any]]:
    """Segment `trackScreenView`: named by `name` (required; nothing is sent without one)."""
    name = first(msg, FIELDS["screen.name"])
    if name is None:
        return not_mapped(msg, "name", "a screen without a name: Segment's trackScreenView requires it")
    return _activity(msg, "screen", str(name), {})


def _object_ids(msg: Message) -> dict[str, str]:
    return {"object_type_id": msg.object_type, "object_id": msg.group_id}


def identify_object(msg: Message) -> list[dict[str, Any]]:
    """Segment `createUpdateObject` (groupspec: attributes from all group traits, no anonymous_id on objects)."""
    traits = msg.traits
    values = object_attributes(traits)
    values.pop("anonymous_id", None)  # a person's identifier never becomes an object attribute
    op: dict[str, Any] = {"type": "object", "action": "identify", "identifiers": _object_ids(msg),
                          "attributes": attributes(values)}
    if msg.person_key is None:  # a person-less group call updates the object alone
        return [op]
    link: dict[str, Any] = {"identifiers": identifiers.person(msg.user_id, msg.anonymous_id)}
    relationship = traits.get("relationshipAttributes")
    if isinstance(relationship, dict) and relationship:
        link["relationship_attributes"] = attributes(relationship)
    if msg.user_id is None:
        op["action"] = "identify_anonymous"
    op["cio_relationships"] = [link]
    return [op]


def delete_relationships(msg: Message) -> list[dict[str, Any]]:
    """Segment `deleteRelationship`; an anonymous one was resolved to its userId or quarantined before (contract)."""
    return [{"type": "object", "action": "delete_relationships", "identifiers": _object_ids(msg),
             "cio_relationships": [{"identifiers": _person_ids(msg)}]}]


def delete_object(msg: Message) -> list[dict[str, Any]]:
    """Segment `deleteObject`."""
    return [{"type": "object", "action": "delete", "identifiers": _object_ids(msg)}]


def merge(msg: Message) -> list[dict[str, Any]]:
    """Segment `mergePeople`."""
    return [{"type": "person", "action": "merge", "primary": identifiers.of_id(msg.user_id),
             "secondary": identifiers.of_id(msg.body["previousId"])}]


#: which message becomes which Track API v2 operation: (type, event name or None for any) -> builder.
#: The most specific row wins. Together the rows are every preset and every action's default subscription of
#: Segment's Customer.io (Actions) destination (`compat = "segment"`, the default); docs/compatibility.md has the table.
ROUTES: dict[tuple[str, str | None], Builder] = {
    ("identify", None): identify,
    ("track", None): event,
    ("track", "Application Installed"): add_device,
    ("track", "Application Opened"): add_device,
    ("track", "Device Created or Updated"): add_device,
    ("track", "Application Uninstalled"): delete_device,
    ("track", "Device Deleted"): delete_device,
    ("track", "User Deleted"): delete_person,
    ("track", "User Suppressed"): suppress,
    ("track", "User Unsuppressed"): unsuppress,
    ("track", "Relationship Deleted"): delete_relationships,
    ("track", "Object Deleted"): delete_object,
    ("page", None): page,
    ("screen", None): screen,
    ("group", None): identify_object,
    ("alias", None): merge,
}

#: `[customerio] compat` -> its routing table
PROFILES: dict[str, dict[tuple[str, str | None], Builder]] = {
    "segment": ROUTES,
    "rudderstack": rudderstack.ROUTES_V1,
    "rudderstack-v2": rudderstack.ROUTES_V2,
}


def operations(msg: Message) -> list[dict[str, Any]]:
    """The Track API v2 operations of a forwarded message, by the most specific row of its profile's table; none,
    flagged `not_mapped`, when one of them lacks a field Customer.io requires."""
    routes = PROFILES[msg.contract.compat]
    build = None
    if msg.type == "track":
        build = routes.get(("track", msg.body["event"])) or rudderstack.device_route(msg, routes)
    ops = (build or routes[msg.type, None])(msg)
    for op in ops:
        refused = limits.missing(op)
        if refused is not None:
            return not_mapped(msg, *refused)
    return ops


def flat(msg: Message) -> tuple[list[dict[str, Any]], list[bytes]] | None:
    """The operations of a message the engine's flat path took, written out, when they are one Segment `trackEvent`
    (the row `("track", None)` of `ROUTES`) that `limits.activity_accepted` passes; None otherwise: `operations`
    and the limits decide (the same builder, `activity`, makes the operation on both roads)."""
    if msg.type != "track" or msg.contract.compat != "segment" or ("track", msg.body["event"]) in ROUTES:
        return None
    op = activity("event", msg.body["event"], msg.user_id, msg.anonymous_id, msg.props, msg.key, msg.stable_ts,
                  msg.ts, group_extra(msg))
    try:
        line = orjson.dumps(op)
    except TypeError:  # orjson.JSONEncodeError: `operations` and the limits say why
        return None
    return ([op], [line]) if limits.activity_accepted(op, line) else None


def object_update(update: Update) -> dict[str, Any]:
    """An object `identify` carrying a group's rollup attributes."""
    type_id, group_id, values = update
    return {"type": "object", "action": "identify",
            "identifiers": {"object_type_id": type_id, "object_id": group_id}, "attributes": attributes(values)}


def object_state(type_id: str, group_id: str, values: dict[str, Any],
                 people: list[dict[str, str]]) -> dict[str, Any]:
    """An object `identify` re-sending a group's attributes and its relationships to `people` (person
    identifiers): how `groupspec verify --repair` restores an object."""
    op = object_update((type_id, group_id, values))
    if people:
        op["cio_relationships"] = [{"identifiers": ids} for ids in people]
    return op


def object_unrelated(type_id: str, group_id: str, people: list[dict[str, str]]) -> dict[str, Any]:
    """Segment `deleteRelationship` for people the object should not be related to."""
    return {"type": "object", "action": "delete_relationships",
            "identifiers": {"object_type_id": type_id, "object_id": group_id},
            "cio_relationships": [{"identifiers": ids} for ids in people]}


def object_deleted(type_id: str, group_id: str) -> dict[str, Any]:
    """Segment `deleteObject` for an object that should no longer exist."""
    return {"type": "object", "action": "delete", "identifiers": {"object_type_id": type_id, "object_id": group_id}}


def person_attributes_removed(ids: dict[str, str], names: list[str]) -> dict[str, Any]:
    """A person `identify` removing attributes: Customer.io removes an attribute sent as null."""
    return {"type": "person", "action": "identify", "identifiers": ids, "attributes": dict.fromkeys(names)}


class CustomerIO:
    """The Customer.io destination the engine maps forwarded messages with (`groupspec.middleware.engine`)."""

    operations = staticmethod(operations)
    flat = staticmethod(flat)
    object_update = staticmethod(object_update)
    problem = staticmethod(limits.problem)


CUSTOMERIO = CustomerIO()
