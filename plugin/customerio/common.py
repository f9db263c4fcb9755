"""What the mapping profiles share: the event ULID, the field-path table and its reader, groupspec's event
additions, and how a message the reference sends nothing for is recorded (`not_mapped`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from groupspec.middleware.message import Message

Builder = Callable[[Message], list[dict[str, Any]]]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> 2 characters
_TRIPLES = [a + b + c for a in _CROCKFORD for b in _CROCKFORD for c in _CROCKFORD]  # 15 bits -> 3 characters
_MAX_MILLIS = (1 << 48) - 1
_sha256, _from_bytes = hashlib.sha256, int.from_bytes


def event_id(key: str, ts: float) -> str:
    """A ULID whose time part is `ts` and whose rest derives from the message's key (source, person, type and
    `messageId`, see `Message.key`). Given the message's `stable_ts` (a time no re-send moves), re-sends dedupe
    in Customer.io, another source's or person's message with the same `messageId` does not.

    The text form is the 128 bits in Crockford base32, 26 characters: the 48-bit time as 10, the 80 bits of the
    hash as 16 (tests check it against python-ulid).
    """
    m = int(ts * 1000)
    if not 0 <= m <= _MAX_MILLIS:  # clamped only when out of range (rare): two builtin calls cost a tenth
        m = 0 if m < 0 else _MAX_MILLIS
    h = _from_bytes(_sha256(key.encode()).digest()[:10], "big")  # the hash's 80 bits
    p, t = _PAIRS, _TRIPLES  # the time's 50 bits, then the hash's 80: small ints, one f-string
    return (f"{p[m >> 40]}{t[(m >> 25) & 32767]}{t[(m >> 10) & 32767]}{p[m & 1023]}"
            f"{t[h >> 65]}{t[(h >> 50) & 32767]}{p[(h >> 40) & 1023]}{t[(h >> 25) & 32767]}{t[(h >> 10) & 32767]}"
            f"{p[h & 1023]}")


def first(msg: Message, paths: tuple[str, ...]) -> Any:
    """The first non-empty value found at `paths` (dotted paths into the message body; a number is a list index)."""
    for path in paths:
        value: Any = msg.body
        for key in path.split("."):
            if isinstance(value, dict):
                value = value.get(key)
            elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            else:
                value = None
        if value not in (None, ""):
            return value
    return None


#: where each mapped field comes from, in order of preference (the reference destinations' field defaults, as
#: data); `rudderstack.*` rows are read under both RudderStack profiles
FIELDS: dict[str, tuple[str, ...]] = {
    "page.name": ("properties.url", "context.page.url"),
    "screen.name": ("name",),
    "device.token": ("context.device.token",),
    "device.platform": ("context.device.type",),
    "device.app_version": ("context.app.version",),
    "rudderstack.user_id": ("userId", "traits.userId", "traits.id", "context.traits.userId", "context.traits.id"),
    "rudderstack.email": ("traits.email", "context.traits.email", "properties.email", "context.externalId.0.id"),
    "rudderstack.created_at": ("traits.createdAt", "context.traits.createdAt"),
    "rudderstack.page.name": ("name", "properties.url"),
    "rudderstack.screen.name": ("event", "properties.name"),
}


def not_mapped(msg: Message, field: str, reason: str) -> list[dict[str, Any]]:
    """No operation for `msg`: the reference destination sends nothing for it (or Customer.io would refuse what it
    sends). The message is flagged `not_mapped` with the reason and still forwarded (or dropped, as the contract
    says); nothing is invented in its place."""
    msg.violate("not_mapped", field, reason)
    return []


def group_extra(msg: Message) -> dict[str, Any]:
    """What groupspec adds to an event's attributes: the resolved `group_id` and the group traits snapshot."""
    extra: dict[str, Any] = {}
    if msg.group_id is not None:
        extra["group_id"] = msg.group_id
    if msg.snapshot is not None:
        extra["group_traits"] = msg.snapshot
    return extra
