"""What a chunk's messages will ask the store, read from their payloads before they are processed
(`Engine.prefetch`), so that a store that talks to a server (Redis) reads it for the whole chunk in a few round
trips (`Store.prefetch`).

A hint, never a decision: it reads each message as `normalise` and `Resolve` will for the common message (string
ids, a `messageId` of its own, the contract's default object type); a message it reads otherwise, or skips, is
asked of the store when it is looked up, so no outcome depends on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .config import Config
from .events import object_attributes
from .message import message_key, split


def plan(config: Config, hasher: Callable[[str], str], payloads: Iterable[tuple[Any, str | None]],
         authenticated: bool = False) -> tuple[list[str], list[str], list[tuple[str, str]], list[str]]:
    """``(message ids as the store keeps them, persons, groups named, trait names)`` of the messages of
    `payloads` (``(payload, source)`` pairs, as `Engine.process` gets them; `authenticated` as there)."""
    ids: list[str] = []
    persons: list[str] = []
    groups: list[tuple[str, str]] = []
    names: list[str] = []
    for payload, given in payloads:
        try:
            parts = split(payload)
        except Exception:  # the engine says what is wrong with it
            continue
        for _, body, _, _ in parts:
            kind = body.get("type") if body is not None else None
            message_id = body.get("messageId") if body is not None else None
            if kind.__class__ is not str or message_id.__class__ is not str or not message_id:
                continue
            kind = kind.lower()
            user, anonymous = _id(body.get("userId")), _id(body.get("anonymousId"))
            source, write_key = given, body.get("writeKey")
            if not authenticated and isinstance(write_key, str):
                source = config.source_for_key(write_key) or given
            contract = config.contract_for(source)
            person = "u:" + user if user is not None else "a:" + anonymous if anonymous is not None else None
            ids.append(hasher(message_key(source, person, kind, message_id)))
            if person is not None:
                persons.append(person)
            if user is not None and anonymous is not None:  # both ids: `Resolve` looks both up
                persons.append("a:" + anonymous)
            if kind == "group":
                named, traits = body.get("groupId"), body.get("traits")
                if isinstance(traits, dict):
                    names += object_attributes(traits)
            else:
                context, carrier = body.get("context"), body.get("traits" if kind == "identify" else "properties")
                named = context.get("groupId") if isinstance(context, dict) else None
                if named in (None, "") and isinstance(carrier, dict):
                    named = carrier.get(contract.group_key)
                if kind == "track":
                    names += contract.attach_group_traits
            if isinstance(named, (str, int)) and not isinstance(named, bool) and named != "":
                groups.append((contract.default_object_type_id, str(named)))
    return ids, persons, groups, names


def _id(value: Any) -> str | None:
    """An id as `normalise` makes it (a string as it is, an integer as its digits); None for anything else (not
    foreseen: such a message is looked up as usual)."""
    if value.__class__ is str:
        return value or None
    return str(value) if value.__class__ is int else None
