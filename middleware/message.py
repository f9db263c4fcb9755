"""Parsing: raw lines and dicts -> normalised `Message`s, with envelope merging and the Segment size limits.

A `Message` carries the caller's original payload untouched (`original`) and a working copy (`body`) that the
chain enriches; the copy shares nothing mutable with the original except nested dicts it never writes to.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import orjson

from .events import STORE_EVENTS
from .violations import violation

MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_DEPTH = 64  # levels of objects and arrays a message may nest (orjson writes at most 255)
MAX_BATCH_MESSAGES = 2_500  # members of one batch: a 500 KB batch of valid messages holds far fewer
MIN_TIME = 0.0  # 1970-01-01T00:00:00Z: a message time before it is malformed
MAX_TIME = 253402300799.0  # 9999-12-31T23:59:59Z: the last time ISO-8601 (and every reader of it) can write
#: a line's shape for `input_problem`'s scan: digits as "0", "-" kept, "{" and "[" as "[", anything else " "
_SHAPE = bytes(48 if 48 <= i <= 57 else 91 if i in (91, 123) else i if i == 45 else 32 for i in range(256))
_BIG_INTS = (b"0" * 20, b"-" + b"0" * 19)  # 2**64 has 20 digits, -2**63 19: orjson reads what lies beyond as floats
_DIGITS_19 = b"0" * 19  # in both of `_BIG_INTS`: one search rules both out
TYPES = frozenset({"identify", "track", "page", "screen", "group", "alias"})
TIME_KEYS = (  # where a message may carry its time, in order of preference
    "timestamp", "originalTimestamp", "sentAt", "receivedAt")
AMBIGUOUS_BATCH = ("both a type and a batch list: it is neither one message nor a batch; send the messages in "
                   "batch without a top-level type")
_ID_KEYS = ("userId", "anonymousId", "groupId", "previousId")
_ABSENT = object()
_DICT_KEYS = ("context", "properties", "traits", "integrations")


class Message:
    """One message on its way through the chain: the caller's `original` untouched, the working `body`, and what
    the steps decided about it."""

    # immutable defaults, shadowed per instance when a step sets them (the mutable ones are made per instance)
    type = user_id = anonymous_id = contract = group_id = object_type = snapshot = arrival = effect = key = None
    stored_key: str | None = None  # `key` as the store keeps it: its keyed hash (`privacy.KeyedHash`)
    erasure = None  # the `privacy.Erasure` an `[privacy] erase_on` event made
    suppressed = False  # dropped for naming a forgotten id (`privacy.Suppress`): written nowhere
    horizon: float | None = None  # the start of the retention window (`[store] retention`), None without one
    device_ts: float | None = None  # `originalTimestamp`, else `timestamp`, as sent (None: it carries neither)
    # what the door supplied, kept in a quarantine record so that a replay takes the same message: the type a
    # single-type endpoint gave it, the batch envelope merged into it, whether `received_at` is a receipt
    endpoint_type: str | None = None
    envelope: dict[str, Any] | None = None
    receipt = False
    quarantined = object_event = live = False  # live: `received_at` is a real receipt time (not stream time)  # object_event: a track event that changes groups (`events.STORE_EVENTS`)
    resolution = "unresolved"
    memberships: tuple = ()
    group_traits: dict = {}  # never mutated: (type, group) -> trait values the store gave with the memberships
    stale: tuple[tuple[str, Any], set[str]] | None = None  # a group call's (group, stale trait names) from the lookup
    migrated_from: str | None = None  # the migrated group id the message named (`migrated_ids.MapMigrated`)
    late_traits: dict = {}  # never mutated: a group call's stale values, stripped (not sent) but recorded in history
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
    def as_of(self) -> float:
        """The time the store is read at: the message's own, or the start of the retention window when it is
        older (what the store forgot before then is gone)."""
        return self.ts if self.horizon is None or self.ts >= self.horizon else self.horizon

    @property
    def stable_ts(self) -> float:
        """The time that does not move between re-sends of the message (what its Customer.io event id is made
        of): `device_ts`, never `sentAt` nor the skew-corrected time; without one, the event time, which for a
        message the store has seen before is its first arrival's (`Resolve`)."""
        return self.ts if self.device_ts is None else self.device_ts

    @property
    def person_key(self) -> str | None:
        """``u:<userId>``, else ``a:<anonymousId>``; None for a person-less group call (object-only update)."""
        if self.user_id is not None:
            return "u:" + self.user_id
        return "a:" + self.anonymous_id if self.anonymous_id is not None else None

    def group_type(self) -> str:
        """The object type of the resolved group: its membership's, else the contract's default."""
        group_id = self.group_id
        for m in self.memberships:
            if m.group_id == group_id:
                return m.object_type_id
        return self.contract.default_object_type_id

    def suppress(self) -> Message:
        """Drop this message as a forgotten person's: no later step runs, and no record of it is written."""
        self.quarantined = self.suppressed = True
        return self

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
            if len(path) == 1:  # the first write, one level deep (`annotate`'s context): the short way
                value = self.body.get(path[0])
                value = self.body[path[0]] = dict(value) if isinstance(value, dict) else {}
                self._copied = {path}
                return value
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
    """ISO-8601 (RFC 3339 with a lowercase `t`/`z` too) -> unix seconds (float); None when it is not one."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:  # RFC 3339 allows "t" and "z"; Python reads only "T" and "Z"
            moment = datetime.fromisoformat(value[:10] + value[10:].upper())
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


def _event_time(times: dict[str, float], received: float | None) -> float:
    """When the message happened, corrected for the sender's clock the way Segment does: a time taken on the
    device (`originalTimestamp`, else `timestamp`) moves by `receivedAt - sentAt` when both are known (the
    `receivedAt` field, else the moment the service received it)."""
    device = times.get("originalTimestamp", times.get("timestamp"))
    received = times.get("receivedAt", received)
    if device is None or received is None or "sentAt" not in times:
        return next(iter(times.values()))
    if "originalTimestamp" not in times and "receivedAt" in times:
        return device  # a recorded stream: the collector already corrected `timestamp`
    return device + (received - times["sentAt"])


def normalise(msg: Message, received: bool = False) -> Message:
    """Check the spec shape of `msg.body` and normalise it in place (ids as strings, timestamp parsed).
    `received`: `msg.received_at` is when a collector received it (the wall clock), so clock skew can be
    corrected."""
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
    stamp = body.get("timestamp")
    if stamp.__class__ is str and "sentAt" not in body and "originalTimestamp" not in body \
            and "receivedAt" not in body:  # the common case: one time, nothing to correct
        ts = parse_time(stamp)
        if ts is None or not MIN_TIME <= ts <= MAX_TIME:
            _times(msg, body, received)  # says what is wrong
            return msg
        msg.ts = msg.device_ts = ts
    else:
        _times(msg, body, received)
        if msg.quarantined:
            return msg
    if not isinstance(body.get("messageId"), str) or not body["messageId"]:
        body["messageId"] = _message_id(msg.original if isinstance(msg.original, dict) else body)
    return msg


def _times(msg: Message, body: dict[str, Any], received: bool) -> None:
    """Every time the message carries must be ISO-8601 from 1970 to 9999; `msg.ts` is its event time."""
    times = {}
    for key in TIME_KEYS:
        if body.get(key) is not None:
            ts = times[key] = parse_time(body[key])
            if ts is None:
                msg.drop("malformed", key, f"{key} is not an ISO-8601 time: {body[key]!r}")
                return
            if not MIN_TIME <= ts <= MAX_TIME:
                msg.drop("malformed", key, f"{key} {body[key]!r} is outside 1970-01-01 to 9999-12-31 (UTC)")
                return
    if not times:
        return
    msg.device_ts = times.get("originalTimestamp", times.get("timestamp"))
    ts = _event_time(times, msg.received_at if received else None)
    if not MIN_TIME <= ts <= MAX_TIME:  # the correction moved a time in range out of it
        msg.drop("malformed", "sentAt", f"corrected for the sender's clock by sentAt {body['sentAt']!r}, the time "
                                        "lies outside 1970-01-01 to 9999-12-31 (UTC)")
        return
    msg.ts = ts


ENVELOPE_KEYS = ("context", "integrations", "writeKey", "sentAt")  # what a batch envelope gives its members


def _merge_envelope(member: Any, envelope: dict[str, Any]) -> Any:
    if not isinstance(member, dict):
        return member
    merged = dict(member)
    for key in ("context", "integrations"):
        outer = envelope.get(key)
        inner = member.get(key)
        if isinstance(outer, dict) and (inner is None or isinstance(inner, dict)):  # a bad inner one stays: malformed
            merged[key] = {**outer, **(inner or {})}
    for key in ("writeKey", "sentAt"):  # analytics.js' batches carry `sentAt` on the envelope alone
        if key in envelope and key not in merged:
            merged[key] = envelope[key]
    return merged


Split = tuple[Any, "dict | None", "str | None", "dict[str, Any] | None"]


def split(payload: bytes | str | dict[str, Any], size: int | None = None, *, batch: bool = True) -> list[Split]:
    """A line or decoded object -> [(original, body or None, error or None, envelope or None)], one per message
    it holds.

    A batch envelope yields one entry per member with the envelope's `context`/`integrations` (and `writeKey`,
    `sentAt`) merged in; `envelope` is those keys of the batch (a quarantine record keeps them for a replay).
    `batch=False`: the payload is one message whatever its keys (it came to a single-type endpoint).
    """
    if isinstance(payload, (bytes, str)):
        raw = payload if isinstance(payload, bytes) else payload.encode()
        size = len(raw)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return [(raw.decode("utf-8", "replace"), None, "not valid JSON", None)]
        problem = input_problem(obj, raw)
    else:
        obj = payload
        problem = input_problem(obj)
    if problem is not None:
        return [(obj if not isinstance(payload, (bytes, str)) else payload_text(payload), None, problem, None)]
    if not isinstance(obj, dict):
        return [(obj, None, f"expected a JSON object, got {type(obj).__name__}", None)]
    if batch and "type" in obj and isinstance(obj.get("batch"), list):
        return [(obj, None, AMBIGUOUS_BATCH, None)]
    if batch and "batch" in obj and "type" not in obj:
        members = obj["batch"]
        if not isinstance(members, list):
            return [(obj, None, "batch must be a list of messages", None)]
        if len(members) > MAX_BATCH_MESSAGES:  # one bad request must not cost more than a good one
            return [(obj, None, f"batch of {len(members)} members is over the limit of {MAX_BATCH_MESSAGES}", None)]
        if size is None:
            try:
                size = len(orjson.dumps(obj))
            except TypeError:  # a member that cannot be written out: that member alone is malformed, below
                size = 0
        too_big = f"batch of {size} bytes is over the 500 KB limit" if size > MAX_BATCH_BYTES else None
        out: list[Split] = []
        envelope = {key: obj[key] for key in ENVELOPE_KEYS if key in obj} or None
        strays, at = [], 0  # members that are not objects: together one malformed message (where the first was)
        for member in members:
            if not isinstance(member, dict):
                at = at if strays else len(out)
                strays.append(member)
                continue
            merged = _merge_envelope(member, obj)
            out.append((member, merged, too_big or _shape_error(merged, None), envelope))
        if strays:
            what = type(strays[0]).__name__ if len(strays) == 1 else f"{len(strays)} members that are not objects"
            out.insert(at, (strays[0] if len(strays) == 1 else strays, None, f"expected a JSON object, got {what}",
                            None))
        return out
    return [(obj, obj, _shape_error(obj, size), None)]


def input_problem(obj: Any, raw: bytes | None = None) -> str | None:
    """Why a parsed payload cannot be taken as it is, or None: nested deeper than `MAX_DEPTH`, or an integer
    beyond 64 bits in either sign, below -2**63 or above 2**64 - 1 (orjson reads it as a float: the value would
    change silently). With the `raw` bytes, both are looked for only when a cheap scan of the bytes says they may
    be there (a run of 20 digits, or of 19 after a minus sign)."""
    shape = None if raw is None else raw.translate(_SHAPE)
    if shape is None or shape.count(b"[") > MAX_DEPTH:
        if isinstance(obj, (dict, list)) and _deeper_than(obj, MAX_DEPTH):
            return f"nested deeper than {MAX_DEPTH} levels"
    if shape is None:
        return None
    if _DIGITS_19 in shape and (_BIG_INTS[0] in shape or _BIG_INTS[1] in shape):
        big = _big_int(json.loads(raw))
        if big is not None:
            return f"integer {big} is beyond 64 bits and would lose its value; send it as a string"
    return None


def payload_text(payload: bytes | str) -> str:
    """A payload that cannot be kept as JSON, as text for its quarantine record."""
    return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else payload


def _deeper_than(value: Any, budget: int) -> bool:
    """Whether the container `value` nests more than `budget` levels (itself the first)."""
    if budget == 0:
        return True
    for child in (value.values() if value.__class__ is dict else value):
        kind = child.__class__
        if (kind is dict or kind is list) and _deeper_than(child, budget - 1):
            return True
    return False


def _big_int(obj: Any) -> int | None:
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, int) and not -(2**63) <= value < 2**64:
            return value
    return None


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
