"""Parsing: raw lines and dicts -> normalised `Message`s, with envelope merging and the Segment size limits.

A `Message` carries the caller's original payload untouched (`original`) and a working copy (`body`) that the
chain enriches; the copy shares nothing mutable with the original except nested dicts it never writes to.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson

from .events import STORE_EVENTS
from .violations import violation

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
TIME_KEYS = (  # where a message may carry its time, in order of preference
    "timestamp", "originalTimestamp", "sentAt", "receivedAt")
_ID_KEYS = ("userId", "anonymousId", "groupId", "previousId")
_ABSENT = object()
_DICT_KEYS = ("context", "properties", "traits", "integrations")


class Message:
    """One message on its way through the chain: the caller's `original` untouched, the working `body`, and what
    the steps decided about it."""

    # immutable defaults, shadowed per instance when a step sets them (the mutable ones are made per instance)
    type = user_id = anonymous_id = contract = group_id = object_type = snapshot = arrival = effect = key = None
    quarantined = object_event = False  # object_event: a track event that changes groups (`events.STORE_EVENTS`)
    resolution = "unresolved"
    memberships: tuple = ()
    line = b""  # the forwarded body serialised once (`engine.encode`), and its operations
    op_lines: list[bytes] | tuple = ()
    _copied: frozenset[tuple[str, ...]] | set[tuple[str, ...]] = frozenset()  # paths of `body` already copied

    def __init__(self, original: Any, body: dict[str, Any] | None, source: str | None, received_at: float):
        self.original = original
        self.body = body
        self.source = source
        self.received_at = self.ts = received_at
        self.violations: list[dict[str, str]] = []
        self.groups: dict[str, str] = {}
        self.ops: list[dict[str, Any]] = []

    @property
    def person_key(self) -> str | None:
        """``u:<userId>``, else ``a:<anonymousId>``; None for a person-less group call (object-only update)."""
        if self.user_id is not None:
            return "u:" + self.user_id
        return "a:" + self.anonymous_id if self.anonymous_id is not None else None

    def group_type(self) -> str:
        """The object type of the resolved group: its membership's, else the contract's default."""
        return next((m.object_type_id for m in self.memberships if m.group_id == self.group_id),
                    self.contract.default_object_type_id)

    def drop(self, code: str, field: str, message: str) -> Message:
        """Send this message to quarantine; no later step runs."""
        self.violations.append(violation(code, field, message))
        self.quarantined = True
        return self

    def violate(self, code: str, field: str, message: str, strip: tuple[tuple[str, ...], ...] = ()) -> bool:
        """Record a contract violation and apply the contract's action for it: `drop` quarantines, `strip`
        removes the body paths in `strip`. True when something was stripped."""
        action = self.contract.action(code)
        if action == "drop":
            self.drop(code, field, message)
            return False
        self.violations.append(violation(code, field, message))
        if action != "strip" or not strip:
            return False
        for path in strip:
            self.remove(path)
        return True

    def own(self, *path: str) -> dict[str, Any]:
        """The body's dict at `path`, copied on first write so the original stays untouched."""
        if path in self._copied:
            return self._at(path)
        if not self._copied:
            self._copied = set()
        holder = self.body
        for depth in range(1, len(path) + 1):
            key, here = path[depth - 1], path[:depth]
            value = holder.get(key)
            if here not in self._copied:
                value = dict(value) if isinstance(value, dict) else {}
                holder[key] = value
                self._copied.add(here)
            holder = value
        return holder

    def _at(self, path: tuple[str, ...]) -> dict[str, Any]:
        holder = self.body
        for key in path:
            holder = holder[key]
        return holder

    def remove(self, path: tuple[str, ...]) -> None:
        """Remove the value at `path` from the body (copying the dicts on the way), if it is there."""
        holder: Any = self.body
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and path[-1] in holder:
            self.own(*path[:-1]).pop(path[-1], None)

    @property
    def props(self) -> dict[str, Any]:
        return self.body.get("properties") or {}

    @property
    def traits(self) -> dict[str, Any]:
        """Person or group traits; RudderStack puts identify traits in `context.traits`."""
        traits = self.body.get("traits")
        if traits:
            return traits
        if self.type == "identify":
            return (self.body.get("context") or {}).get("traits") or {}
        return {}


def message_key(source: str | None, person: str | None, kind: str, message_id: str) -> str:
    """What identifies a message (`Message.key`): its source, person key, type and `messageId`. Another source's
    or person's message with the same `messageId` is another message; a re-send of a message is the same one."""
    return "\x1f".join((source or "", person or "", kind, message_id))


def parse_time(value: Any) -> float | None:
    """ISO-8601 -> unix seconds (float); None when it is not an ISO-8601 string."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _as_id(value: Any) -> str | None | bool:
    """An id as the SDKs send it: strings as they are, numbers stringified; False when of a wrong type."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _message_id(obj: dict[str, Any]) -> str:
    digest = hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def normalise(msg: Message) -> Message:
    """Check the spec shape of `msg.body` and normalise it in place (ids as strings, timestamp parsed)."""
    body = msg.body
    kind = body.get("type")
    if not isinstance(kind, str) or kind.lower() not in TYPES:
        return msg.drop("malformed", "type", f"unknown message type {kind!r}")
    kind = msg.type = kind.lower()
    body["type"] = kind
    for key in _DICT_KEYS:
        value = body.get(key)
        if value is not None and not isinstance(value, dict):
            return msg.drop("malformed", key, f"{key} must be an object, got {type(value).__name__}")
    for key in _ID_KEYS:
        value = body.get(key, _ABSENT)
        if value is _ABSENT or (value.__class__ is str and value):
            continue
        if key in body:
            value = _as_id(value)
            if value is False:
                return msg.drop("malformed", key, f"{key} must be a string or a number")
            if value is None:
                del body[key]
            else:
                body[key] = value
    msg.user_id = body.get("userId")
    msg.anonymous_id = body.get("anonymousId")
    if msg.user_id is None and msg.anonymous_id is None and kind != "group":  # Customer.io: a group call may
        return msg.drop("malformed", "userId", "neither userId nor anonymousId is set")  # update the object alone
    if kind == "track":
        event = body.get("event")
        if not isinstance(event, str) or not event.strip():
            return msg.drop("malformed", "event", "track call without an event name")
        msg.effect = STORE_EVENTS.get(event)
        msg.object_event = msg.effect is not None
    elif kind == "group" and "groupId" not in body:
        return msg.drop("malformed", "groupId", "group call without a groupId")
    elif kind == "alias" and ("previousId" not in body or msg.user_id is None):
        return msg.drop("malformed", "previousId", "alias call needs previousId and userId")
    for key in TIME_KEYS:
        if body.get(key) is not None:
            ts = parse_time(body[key])
            if ts is None:
                return msg.drop("malformed", key, f"{key} is not an ISO-8601 time: {body[key]!r}")
            msg.ts = ts
            break
    if not isinstance(body.get("messageId"), str) or not body["messageId"]:
        body["messageId"] = _message_id(msg.original if isinstance(msg.original, dict) else body)
    return msg


def _merge_envelope(member: Any, envelope: dict[str, Any]) -> Any:
    if not isinstance(member, dict):
        return member
    merged = dict(member)
    for key in ("context", "integrations"):
        outer = envelope.get(key)
        inner = member.get(key)
        if isinstance(outer, dict) and (inner is None or isinstance(inner, dict)):  # a bad inner one stays: malformed
            merged[key] = {**outer, **(inner or {})}
    if "writeKey" in envelope and "writeKey" not in merged:
        merged["writeKey"] = envelope["writeKey"]
    return merged


def split(payload: bytes | str | dict[str, Any], size: int | None = None) -> list[tuple[Any, dict | None, str | None]]:
    """A line or decoded object -> [(original, body or None, error or None)], one per message it holds.

    A batch envelope yields one entry per member with the envelope's `context`/`integrations` merged in.
    """
    if isinstance(payload, (bytes, str)):
        size = len(payload) if isinstance(payload, bytes) else len(payload.encode())
        try:
            obj = orjson.loads(payload)
        except orjson.JSONDecodeError:
            raw = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload
            return [(raw, None, "not valid JSON")]
    else:
        obj = payload
    if not isinstance(obj, dict):
        return [(obj, None, f"expected a JSON object, got {type(obj).__name__}")]
    if "batch" in obj and "type" not in obj:
        members = obj["batch"]
        if not isinstance(members, list):
            return [(obj, None, "batch must be a list of messages")]
        if size is None:
            try:
                size = len(orjson.dumps(obj))
            except TypeError:  # a member that cannot be written out: that member alone is malformed, below
                size = 0
        too_big = f"batch of {size} bytes is over the 500 KB limit" if size > MAX_BATCH_BYTES else None
        out = []
        for member in members:
            merged = _merge_envelope(member, obj)
            out.append((member, merged if isinstance(merged, dict) else None, too_big or _shape_error(merged, None)))
        return out
    return [(obj, obj, _shape_error(obj, size))]


def _shape_error(obj: Any, size: int | None) -> str | None:
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    if size is None:
        try:
            size = len(orjson.dumps(obj))
        except TypeError as exc:  # orjson.JSONEncodeError: e.g. nested deeper than orjson writes (255 levels)
            return f"cannot be serialised: {exc}"
    if size > MAX_MESSAGE_BYTES:
        return f"message of {size} bytes is over the 32 KB limit"
    return None
