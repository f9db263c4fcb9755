"""The RudderStack profiles: the operations of RudderStack's Customer.io destination (rudder-transformer
`src/v0/destinations/customerio/`), plus groupspec's additions (event ids, group ids on events, object lifecycle
events). See docs/parity-reference.md.

- `compat = "rudderstack"`: the default path (`transform.ts` + `util.ts`, Track API v1, only group calls batched):
  the person is named in the URL (`_path_ids`), a screen is a custom event `Viewed <name> Screen`, a device
  carries the message's properties.
- `compat = "rudderstack-v2"`: the opt-in v2 path (`routerTransform.ts` + `v2/util.ts` `buildEnvelope`): the
  person is named in the body (`_body_ids`, `userId` always `id`), a screen is a `screen` view, a device carries
  the context's device attributes too.
"""

from __future__ import annotations

from typing import Any

from groupspec.middleware.events import STORE_EVENTS, group_action
from groupspec.middleware.message import Message

from . import dates, identifiers
from .common import FIELDS, Builder, event_id, first, group_extra, not_mapped

#: RudderStack's device events (`util.ts` `deviceRelatedEventNames`, `v2/config.ts` `DEVICE_EVENT_NAMES`; the
#: configured `device_token_event` too)
DEVICE_EVENTS = ("Application Installed", "Application Opened")
DEVICE_DELETE_EVENT = "Application Uninstalled"
#: `isAppleFamily`: these device types are sent as platform "ios"
APPLE_FAMILY = frozenset({"ios", "watchos", "ipados", "tvos"})
#: `v2/data/CustomerIODeviceV2.json`: device attribute -> where it comes from (v2 path only)
DEVICE_ATTRIBUTES = {"device_os": "context.os.name", "device_model": "context.device.model",
                     "app_version": "context.app.version", "device_locale": "context.locale"}
#: `populateSpecedTraits`: `traits.address` is sent as these flat attributes
ADDRESS_KEYS = ("city", "state", "country", "postalCode", "street")


def _body_ids(msg: Message) -> dict[str, str]:
    """v2 `personIdentifiers`: a userId (`userIdOnly`) is always `id` (no email test, no `cio_` split); else an
    email from the traits or properties; else the anonymousId."""
    user_id = first(msg, FIELDS["rudderstack.user_id"])
    if user_id is not None:
        return {"id": str(user_id)}
    email = first(msg, FIELDS["rudderstack.email"])
    if email is not None:
        return {"email": str(email)}
    return {"anonymous_id": msg.anonymous_id}


def _path_ids(msg: Message) -> dict[str, str]:
    """The v1 path's person, `/customers/{userId or email}`, as Customer.io reads a path identifier: `cio_<x>` is
    the cio_id `<x>` (Customer.io's Track API docs: "when you reference people by cio_id, you must prefix the
    value with cio_"); an email-shaped userId is read as `[customerio] email_user_id` says (the docs leave it to
    the workspace's settings; `id` by default); an email from the traits stays an email."""
    user_id = first(msg, FIELDS["rudderstack.user_id"])
    if user_id is None:
        return _body_ids(msg)
    user_id = str(user_id)
    if user_id.startswith("cio_") and len(user_id) > 4:
        return {"cio_id": user_id[4:]}
    if msg.contract.email_user_id == "email" and identifiers.is_email(user_id):
        return {"email": user_id}
    return {"id": user_id}


#: `[customerio] compat` -> how the profile names a person
_PERSON_IDS = {"rudderstack": _path_ids, "rudderstack-v2": _body_ids}


def person_ids(msg: Message) -> dict[str, str]:
    return _PERSON_IDS[msg.contract.compat](msg)


def _has_person(msg: Message) -> bool:
    return first(msg, FIELDS["rudderstack.user_id"]) is not None or first(msg, FIELDS["rudderstack.email"]) is not None


def _historical(msg: Message) -> int | None:
    """`historicalTimestamp`: the message's `timestamp`, else `originalTimestamp`, in unix seconds."""
    body = msg.body
    return int(msg.ts) if body.get("timestamp") is not None or body.get("originalTimestamp") is not None else None


def identify(msg: Message) -> list[dict[str, Any]]:
    """`identifyResponseBuilder` / `buildIdentify`: traits as they are (no date conversion) but `createdAt` ->
    `created_at` (seconds), `address` flat, then `_timestamp` and `anonymous_id`; groupspec adds the op
    `timestamp`. Without a userId or an email RudderStack fails and sends nothing."""
    if not _has_person(msg):
        return not_mapped(msg, "userId", "an identify without a userId or an email: RudderStack sends nothing "
                          "(\"userId or email is not present\")")
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
    """`defaultResponseBuilder` / `buildTrack`: properties as they are; groupspec adds `id`, `group_id`,
    `group_traits`."""
    return _activity(msg, "event", msg.body["event"], group_extra(msg))


def page(msg: Message) -> list[dict[str, Any]]:
    """`processSingleMessage` / `buildPage`: named by `name`, else `properties.url`; without either nothing goes."""
    name = first(msg, FIELDS["rudderstack.page.name"])
    if not isinstance(name, str):
        return not_mapped(msg, "name", "a page without a name or properties.url: RudderStack sends no page view")
    return _activity(msg, "page", name, {})


def _screen_name(msg: Message) -> str | None:
    """`Viewed <event or properties.name> Screen` (the top-level `name` is not read)."""
    name = first(msg, FIELDS["rudderstack.screen.name"])
    return f"Viewed {name} Screen" if isinstance(name, str) else None


def screen(msg: Message) -> list[dict[str, Any]]:
    """v2 `buildScreen`: a `screen` view named `Viewed <name> Screen`."""
    name = _screen_name(msg)
    if name is None:
        return not_mapped(msg, "properties.name", "a screen without event or properties.name: RudderStack's v2 "
                          "path fails on it")
    return _activity(msg, "screen", name, {})


def screen_event(msg: Message) -> list[dict[str, Any]]:
    """v1 `processSingleMessage`: a screen is the custom event `Viewed <name> Screen` (event-triggered campaigns
    on those names keep matching). Without a name RudderStack sends `Viewed undefined Screen`; groupspec sends
    nothing rather than that name."""
    name = _screen_name(msg)
    if name is None:
        return not_mapped(msg, "properties.name", "a screen without event or properties.name: RudderStack's v1 "
                          "path would send the event \"Viewed undefined Screen\"")
    return _activity(msg, "event", name, {})


def _platform(msg: Message) -> str | None:
    kind = first(msg, FIELDS["device.platform"])
    if not isinstance(kind, str):
        return None
    return "ios" if kind.lower() in APPLE_FAMILY else kind.lower()


def _device(msg: Message, attributes: dict[str, Any], order_v2: bool) -> list[dict[str, Any]]:
    """An `add_device` instead of the event; without a person or a token the plain event (`deviceActionFor`,
    `defaultResponseBuilder`); without a platform nothing (Customer.io refuses a device without one)."""
    token = first(msg, FIELDS["device.token"])
    if not _has_person(msg) or not isinstance(token, str):
        return event(msg)
    platform = _platform(msg)
    if platform is None:
        return not_mapped(msg, "context.device.type", f"{msg.body['event']} without context.device.type: "
                          "Customer.io refuses a device without a platform")
    device: dict[str, Any] = {"token": token}
    historical = _historical(msg)
    if historical is not None:
        device["last_used"] = historical
    if order_v2:  # buildDevice: attributes, then platform
        device.update(attributes=attributes, platform=platform)
    else:  # the v1 device: the properties, id (token), last_used, platform
        device["platform"] = platform
        if attributes:
            device["attributes"] = attributes
    return [{"type": "person", "action": "add_device", "identifiers": person_ids(msg), "device": device}]


def add_device(msg: Message) -> list[dict[str, Any]]:
    """v2 `buildDevice`: device attributes from the context (`CustomerIODeviceV2.json`), then the properties."""
    found = {name: first(msg, (path,)) for name, path in DEVICE_ATTRIBUTES.items()}
    return _device(msg, {**{k: v for k, v in found.items() if v is not None}, **msg.props}, order_v2=True)


def add_device_v1(msg: Message) -> list[dict[str, Any]]:
    """v1 `defaultResponseBuilder`: `PUT /customers/{id}/devices` with the message's properties on the device
    (sent here as its attributes) and no context attributes."""
    return _device(msg, dict(msg.props), order_v2=False)


def delete_device(msg: Message) -> list[dict[str, Any]]:
    """`DELETE /customers/{id}/devices/{token}` / v2 `buildDevice` delete_device, instead of the event; RudderStack
    fails without a person or a token and sends nothing."""
    token = first(msg, FIELDS["device.token"])
    if not _has_person(msg):
        return not_mapped(msg, "userId", f"{DEVICE_DELETE_EVENT} without a userId or an email: RudderStack sends "
                          "nothing (\"userId/email or device_token not present\")")
    if not isinstance(token, str) or not token:
        return not_mapped(msg, "context.device.token", f"{DEVICE_DELETE_EVENT} without context.device.token: "
                          "RudderStack sends nothing (\"userId/email or device_token not present\")")
    return [{"type": "person", "action": "delete_device", "identifiers": person_ids(msg), "device": {"token": token}}]


def object_op(msg: Message) -> list[dict[str, Any]]:
    """`groupResponseBuilder` / `buildObject` (both paths batch group calls to v2): the action from
    `traits.action` (identify by default), every trait but `action` as an attribute, the person related by
    `email` or `id` (`validator.isEmail`). groupspec: an anonymous call relates the anonymousId
    (`identify_anonymous`), relationship attributes from `traits.relationshipAttributes`, no empty
    `cio_relationships`."""
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
    """groupspec's object lifecycle (RudderStack sends a plain event), with the profile's person identifiers."""
    return [{"type": "object", "action": "delete_relationships",
             "identifiers": {"object_type_id": msg.object_type, "object_id": msg.group_id},
             "cio_relationships": [{"identifiers": person_ids(msg)}]}]


def delete_object(msg: Message) -> list[dict[str, Any]]:
    return [{"type": "object", "action": "delete",
             "identifiers": {"object_type_id": msg.object_type, "object_id": msg.group_id}}]


def merge(msg: Message) -> list[dict[str, Any]]:
    """`aliasResponseBuilder` / `buildMerge`: `email` or `id` by `validator.isEmail`, no `cio_` split."""
    return [{"type": "person", "action": "merge", "primary": identifiers.email_or_id(msg.user_id),
             "secondary": identifiers.email_or_id(msg.body["previousId"])}]


_OBJECT_EVENTS: dict[str, Builder] = {"leave": delete_relationships, "delete_object": delete_object}

#: the rows of `compat = "rudderstack-v2"` (see `mapping.ROUTES`): one builder per message type, RudderStack's
#: device events (`DEVICE_EVENTS`, `DEVICE_DELETE_EVENT`) and groupspec's object events; `User Deleted`, `User
#: Suppressed` and `User Unsuppressed` have no row: plain events, as RudderStack sends them
ROUTES_V2: dict[tuple[str, str | None], Builder] = {
    **{(kind, None): build for kind, build in (("identify", identify), ("track", event), ("page", page),
                                               ("screen", screen), ("group", object_op), ("alias", merge))},
    **{("track", name): add_device for name in DEVICE_EVENTS},
    ("track", DEVICE_DELETE_EVENT): delete_device,
    **{("track", name): _OBJECT_EVENTS[effect] for name, effect in STORE_EVENTS.items()},
}

#: the rows of `compat = "rudderstack"` (the default v1 path): the v2 rows but screens and devices
ROUTES_V1: dict[tuple[str, str | None], Builder] = {
    **ROUTES_V2,
    ("screen", None): screen_event,
    **{("track", name): add_device_v1 for name in DEVICE_EVENTS},
}


def device_route(msg: Message, routes: dict[tuple[str, str | None], Builder]) -> Builder | None:
    """The configured `device_token_event` (RudderStack's `deviceTokenEventName`) registers a device as the
    profile's device events do."""
    if msg.contract.device_token_event is not None and msg.body["event"] == msg.contract.device_token_event:
        return routes[("track", DEVICE_EVENTS[0])]
    return None
