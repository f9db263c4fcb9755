"""`[customerio] compat = "rudderstack"`: the operations of RudderStack's Customer.io destination
(rudder-transformer `src/v0/destinations/customerio/v2/util.ts` `buildEnvelope`), one row per message kind, plus
groupspec's additions (event ids, group ids on events, object lifecycle events). See docs/parity-reference.md."""

from __future__ import annotations

from typing import Any

from groupspec.middleware.events import STORE_EVENTS, group_action
from groupspec.middleware.message import Message

from . import dates, identifiers
from .common import FIELDS, Builder, event_id, first, group_extra

#: RudderStack's device events (`v2/config.ts` `DEVICE_EVENT_NAMES`; the configured `device_token_event` too)
DEVICE_EVENTS = ("Application Installed", "Application Opened")
DEVICE_DELETE_EVENT = "Application Uninstalled"
#: `isAppleFamily`: these device types are sent as platform "ios"
APPLE_FAMILY = frozenset({"ios", "watchos", "ipados", "tvos"})
#: `v2/data/CustomerIODeviceV2.json`: device attribute -> where it comes from
DEVICE_ATTRIBUTES = {"device_os": "context.os.name", "device_model": "context.device.model",
                     "app_version": "context.app.version", "device_locale": "context.locale"}
#: `populateSpecedTraits`: `traits.address` is sent as these flat attributes
ADDRESS_KEYS = ("city", "state", "country", "postalCode", "street")


def person_ids(msg: Message) -> dict[str, str]:
    """`personIdentifiers`: a userId (`userIdOnly`) is always `id` (no email test, no `cio_` split); else an
    email from the traits or properties; else the anonymousId."""
    user_id = first(msg, FIELDS["rudderstack.user_id"])
    if user_id is not None:
        return {"id": str(user_id)}
    email = first(msg, FIELDS["rudderstack.email"])
    if email is not None:
        return {"email": str(email)}
    return {"anonymous_id": msg.anonymous_id}


def _historical(msg: Message) -> int | None:
    """`historicalTimestamp`: the message's `timestamp`, else `originalTimestamp`, in unix seconds."""
    body = msg.body
    return int(msg.ts) if body.get("timestamp") is not None or body.get("originalTimestamp") is not None else None


def identify(msg: Message) -> list[dict[str, Any]]:
    """`buildIdentify`: traits as they are (no date conversion) but `createdAt` -> `created_at`, `address` flat,
    then `_timestamp` and `anonymous_id`; groupspec adds the op `timestamp`."""
    traits, owned = msg.traits, msg.contract.group_traits
    attrs: dict[str, Any] = {}
    address = traits.get("address")
    if isinstance(address, dict):
        attrs.update({k: address[k] for k in ADDRESS_KEYS if address.get(k) is not None})
    attrs.update({k: v for k, v in traits.items()
                  if k not in ("address", "createdAt", "userId", "anonymousId") and k not in owned})
    created = first(msg, FIELDS["rudderstack.created_at"])
    if created:
        attrs["created_at"] = dates.unix_seconds(created)
    historical = _historical(msg)
    if historical is not None:
        attrs["_timestamp"] = historical
    ids = person_ids(msg)
    if msg.anonymous_id is not None and "anonymous_id" not in ids:
        attrs["anonymous_id"] = msg.anonymous_id
    return [{"type": "person", "action": "identify", "identifiers": ids, "attributes": attrs,
             "timestamp": int(msg.ts)}]


def _activity(msg: Message, action: str, name: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    attrs = dict(msg.props)
    attrs.update(extra)
    return [{"type": "person", "action": action, "identifiers": person_ids(msg), "name": name,
             "id": event_id(msg.key, msg.stable_ts), "timestamp": int(msg.ts), "attributes": attrs}]


def event(msg: Message) -> list[dict[str, Any]]:
    """`buildTrack`: properties as they are; groupspec adds `id`, `group_id`, `group_traits`."""
    return _activity(msg, "event", msg.body["event"], group_extra(msg))


def page(msg: Message) -> list[dict[str, Any]]:
    """`buildPage`: named by `name`, else `properties.url`."""
    name = first(msg, FIELDS["rudderstack.page.name"])
    return _activity(msg, "page", name if isinstance(name, str) else "", {})


def screen(msg: Message) -> list[dict[str, Any]]:
    """`buildScreen`: `Viewed <event or properties.name> Screen` (the top-level `name` is not read)."""
    name = first(msg, FIELDS["rudderstack.screen.name"])
    return _activity(msg, "screen", f"Viewed {name} Screen" if isinstance(name, str) else "", {})


def _has_person(msg: Message) -> bool:
    return first(msg, FIELDS["rudderstack.user_id"]) is not None or first(msg, FIELDS["rudderstack.email"]) is not None


def add_device(msg: Message) -> list[dict[str, Any]]:
    """`buildDevice` add_device, instead of the event; without a person or a token, the plain event
    (`deviceActionFor`)."""
    token = first(msg, FIELDS["device.token"])
    if not _has_person(msg) or not isinstance(token, str):
        return event(msg)
    device: dict[str, Any] = {"token": token}
    historical = _historical(msg)
    if historical is not None:
        device["last_used"] = historical
    found = {name: first(msg, (path,)) for name, path in DEVICE_ATTRIBUTES.items()}
    device["attributes"] = {**{k: v for k, v in found.items() if v is not None}, **msg.props}
    kind = first(msg, FIELDS["device.platform"])
    if isinstance(kind, str):
        device["platform"] = "ios" if kind.lower() in APPLE_FAMILY else kind.lower()
    return [{"type": "person", "action": "add_device", "identifiers": person_ids(msg), "device": device}]


def delete_device(msg: Message) -> list[dict[str, Any]]:
    """`buildDevice` delete_device, instead of the event; RudderStack fails without a person or a token, so the
    message is quarantined as `malformed`."""
    token = first(msg, FIELDS["device.token"])
    if not _has_person(msg):
        msg.drop("malformed", "userId", f"{DEVICE_DELETE_EVENT} without a userId or an email")
        return []
    if not isinstance(token, str) or not token:
        msg.drop("malformed", "context.device.token", f"{DEVICE_DELETE_EVENT} without context.device.token")
        return []
    return [{"type": "person", "action": "delete_device", "identifiers": person_ids(msg), "device": {"token": token}}]


def object_op(msg: Message) -> list[dict[str, Any]]:
    """`buildObject`: the action from `traits.action` (identify by default), every trait but `action` as an
    attribute, the person related by `email` or `id` (`validator.isEmail`). groupspec: an anonymous call
    relates the anonymousId (`identify_anonymous`), relationship attributes from `traits.relationshipAttributes`,
    no empty `cio_relationships`."""
    traits = msg.traits
    action = group_action(msg)
    op: dict[str, Any] = {"type": "object", "action": action,
                          "identifiers": {"object_type_id": msg.object_type, "object_id": msg.group_id},
                          "attributes": {k: v for k, v in traits.items() if k != "action"}}
    person = first(msg, FIELDS["rudderstack.user_id"]) or first(msg, ("context.traits.email", "properties.email",
                                                                      "context.externalId.0.id"))
    if person is not None:
        link: dict[str, Any] = {"identifiers": identifiers.email_or_id(str(person))}
    elif msg.anonymous_id is not None and action == "identify":
        op["action"] = "identify_anonymous"
        link = {"identifiers": {"anonymous_id": msg.anonymous_id}}
    else:
        return [op]
    relationship = traits.get("relationshipAttributes")
    if isinstance(relationship, dict) and relationship:
        link["relationship_attributes"] = relationship
    op["cio_relationships"] = [link]
    return [op]


def delete_relationships(msg: Message) -> list[dict[str, Any]]:
    """groupspec's object lifecycle (RudderStack sends a plain event), with RudderStack's identifiers."""
    return [{"type": "object", "action": "delete_relationships",
             "identifiers": {"object_type_id": msg.object_type, "object_id": msg.group_id},
             "cio_relationships": [{"identifiers": person_ids(msg)}]}]


def delete_object(msg: Message) -> list[dict[str, Any]]:
    return [{"type": "object", "action": "delete",
             "identifiers": {"object_type_id": msg.object_type, "object_id": msg.group_id}}]


def merge(msg: Message) -> list[dict[str, Any]]:
    """`buildMerge`: `email` or `id` by `validator.isEmail`, no `cio_` split."""
    return [{"type": "person", "action": "merge", "primary": identifiers.email_or_id(msg.user_id),
             "secondary": identifiers.email_or_id(msg.body["previousId"])}]


_OBJECT_EVENTS: dict[str, Builder] = {"leave": delete_relationships, "delete_object": delete_object}

#: the rows of the rudderstack profile (see `mapping.ROUTES`): one builder per message type, RudderStack's device
#: events (`DEVICE_EVENTS`, `DEVICE_DELETE_EVENT`) and groupspec's object events; `User Deleted`, `User
#: Suppressed` and `User Unsuppressed` have no row: plain events, as RudderStack sends them
ROUTES: dict[tuple[str, str | None], Builder] = {
    **{(kind, None): build for kind, build in (("identify", identify), ("track", event), ("page", page),
                                               ("screen", screen), ("group", object_op), ("alias", merge))},
    **{("track", name): add_device for name in DEVICE_EVENTS},
    ("track", DEVICE_DELETE_EVENT): delete_device,
    **{("track", name): _OBJECT_EVENTS[effect] for name, effect in STORE_EVENTS.items()},
}


def device_route(msg: Message, routes: dict[tuple[str, str | None], Builder]) -> Builder | None:
    """The configured `device_token_event` (RudderStack's `deviceTokenEventName`) registers a device too."""
    if routes is ROUTES and msg.body["event"] == msg.contract.device_token_event:
        return add_device
    return None
