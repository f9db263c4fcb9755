"""The flat path: the front of the chain (normalise, `check_time`, `Resolve`, the contract checks, `Attach`) as one
flat function per message type, for the common message that breaks no rule, and the chain's tail (`annotate`,
the mapping, rollups, `encode`, `learn`) as one function after it (`FlatTail`).

`Engine.through` tries it first for every message: `FlatPath.take(msg)` either leaves `msg` exactly as the
chain's front would (normalised, resolved, checked with no violation, its snapshot attached) and answers True,
then the chain's own tail runs (`annotate`, the door's steps, the mapping, rollups, `encode`, `learn`); or it
answers False as soon as anything is unusual (a violation, a time to correct, an id to convert, an object
event, an alias, a missing `messageId`...) and the message takes the whole chain from the start. Before it
answers False it has only read the store (`lookup`, which a replayed message may repeat: it is idempotent).

Each check below is the predicate "this check would report nothing" of its step in `contract.py`, reading the
same contract fields and tables; resolution is the `Resolve` step itself. `tests/test_fastpath.py` proves the
two roads give the same bytes; a change to a rule of the front changes its predicate here too (or makes it fall
back).

`FlatTail.finish` runs the chain's own tail steps in one function, without the step dispatch, and writes the
forwarded body out inline (`encode`'s work); it runs when the door adds no steps of its own (the SDK hook's
`after` callables take the chain's tail).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from .config import Contract, duration_seconds
from .contract import _OBJECT_TYPE, _TYPE_CHECKS, id_problem
from .enrich import Attach, annotate
from .events import STORE_EVENTS, object_attributes, object_type_source
from .message import MAX_TIME, MIN_TIME, Message, parse_time
from .resolve import Resolve

_DICT_KEYS = ("context", "properties", "traits", "integrations")
_ID_KEYS = ("userId", "anonymousId", "groupId", "previousId")
_CORRECTED = ("sentAt", "originalTimestamp", "receivedAt")  # a time to correct: the chain's `normalise` does it
_ABSENT = object()
_PERSON_TYPES = frozenset({"identify", "track", "page", "screen"})
_MAX_IDS = 100_000  # group ids remembered as well-formed, per contract (cleared when full)


class _Plan:
    """What one contract decides for the flat path, read once."""

    def __init__(self, contract: Contract) -> None:
        self.tolerance = duration_seconds(contract.future_tolerance)
        self.regex = contract.group_id_regex
        self.declared = contract.group_traits
        self.required = bool(contract.require_group)
        self.attach = bool(contract.attach_group_traits)
        self.good_ids: set[str] = set()  # group ids `id_problem` found nothing wrong with (ids recur)

    def good_id(self, value: Any) -> bool:
        if value.__class__ is str and value in self.good_ids:
            return True
        if id_problem(value, self.regex) is not None:
            return False
        if value.__class__ is str:
            if len(self.good_ids) >= _MAX_IDS:
                self.good_ids.clear()
            self.good_ids.add(value)
        return True


class FlatPath:
    """The front of the chain, flat, for the messages that break no rule (see the module docstring)."""

    def __init__(self, resolve: Resolve, attach: Attach) -> None:
        self.resolve = resolve
        self.attach = attach
        self._plans: dict[int, _Plan] = {}

    def take(self, msg: Message) -> bool:
        """Take `msg` (not yet normalised) through the front of the chain; False, with only the store read,
        when the whole chain must take it instead."""
        if self.resolve.store.active:  # a group id migration recorded: `MapMigrated` and the migrated reads
            return False
        body = msg.body
        kind = body.get("type")
        if kind not in _TYPES:
            return False
        for key in _DICT_KEYS:
            value = body.get(key)
            if value is not None and value.__class__ is not dict:
                return False
        for key in _ID_KEYS:
            value = body.get(key, _ABSENT)
            if value is not _ABSENT and (value.__class__ is not str or not value):
                return False
        user_id, anonymous_id = body.get("userId"), body.get("anonymousId")
        if user_id is None and anonymous_id is None and kind != "group":
            return False
        stamp, message_id = body.get("timestamp"), body.get("messageId")
        if stamp.__class__ is not str or message_id.__class__ is not str or not message_id:
            return False
        for key in _CORRECTED:
            if key in body:
                return False
        ts = parse_time(stamp)
        if ts is None or not MIN_TIME <= ts <= MAX_TIME:
            return False
        contract = msg.contract
        plan = self._plans.get(id(contract))
        if plan is None:
            plan = self._plans[id(contract)] = _Plan(contract)
        if msg.live and ts - msg.received_at > plan.tolerance:  # `check_time`: future_timestamp
            return False
        msg.type, msg.user_id, msg.anonymous_id, msg.ts = kind, user_id, anonymous_id, ts
        msg.device_ts = ts  # `timestamp` alone: the device's time (never a time-less re-send)
        return _TYPES[kind](self, plan, msg)

    def _person(self, plan: _Plan, msg: Message) -> bool:
        """identify, track, page, screen: resolved, then `check_group_id`, `check_conflict`, `check_required`,
        `check_person_traits` and `Attach`."""
        body = msg.body
        if msg.type == "track":
            event = body.get("event")
            if event.__class__ is not str or not event.strip() or event in STORE_EVENTS:
                return False  # no name: malformed; an object event: its own checks
        if plan.declared:  # `check_person_traits`
            for holder in (body.get("traits"), (body.get("context") or {}).get("traits")):
                if holder and holder.__class__ is dict and any(name in plan.declared for name in holder):
                    return False
        self.resolve(msg)
        group_id = msg.group_id
        if group_id is not None and msg.resolution != "membership":
            if not plan.good_id(group_id):  # `check_group_id`
                return False
            msg.group_id = group_id = str(group_id)
            memberships = msg.memberships  # `check_conflict`
            if memberships and not any(m.group_id == group_id for m in memberships):
                return False
        if msg.type == "track":
            if group_id is None and plan.required and msg.contract.requires_group(body["event"]):  # `check_required`
                return False
            if plan.attach:
                self.attach(msg)
        return True

    def _group(self, plan: _Plan, msg: Message) -> bool:
        """A group call: resolved, then `check_object_target`, `check_group_id`, `check_group_traits`,
        `check_stale`."""
        if "groupId" not in msg.body:
            return False
        self.resolve(msg)
        raw, _ = object_type_source(msg)
        if raw is None:
            msg.object_type = msg.contract.default_object_type_id
        elif isinstance(raw, (str, int)) and not isinstance(raw, bool) and _OBJECT_TYPE.fullmatch(str(raw)):
            msg.object_type = str(raw)
        else:
            return False
        if not plan.good_id(msg.group_id):
            return False
        msg.group_id = str(msg.group_id)
        attributes = object_attributes(msg.traits)
        if not attributes:
            return True
        for name, value in attributes.items() if plan.declared else ():
            rule = plan.declared.get(name)
            if rule is None:
                continue
            if rule.owner is not None and rule.owner != msg.source:
                return False
            if value is not None and rule.type is not None and not _TYPE_CHECKS[rule.type](value):
                return False
            if value is not None and rule.enum is not None and value not in rule.enum:
                return False
        group = (msg.object_type, msg.group_id)
        if msg.stale is not None and msg.stale[0] == group:
            stale = msg.stale[1].intersection(attributes)
        else:
            stale = self.resolve.store.stale_traits(*group, list(attributes), msg.ts, msg.key, before=msg.arrival)
        return not stale


_TYPES = {"identify": FlatPath._person, "track": FlatPath._person, "page": FlatPath._person,
          "screen": FlatPath._person, "group": FlatPath._group}


class FlatTail:
    """The chain's tail in one function for a message the flat front took (see the module docstring): `annotate`,
    the destination's mapping (its `flat` operations for the common message, else `map_`, the engine's `_map`
    step), `roll_up` when the contract has rollups, the forwarded body written out (`encode`), `learn`.
    `failed(msg, step, exc)` is the engine's: what a step raises quarantines the message alone, named as the chain
    names it."""

    def __init__(self, map_: Callable[[Message], Message], roll_up: Callable[[Message], Message],
                 encode: Callable[[Message], Message], learn: Callable[[Message], Message],
                 failed: Callable[[Message, Any, Exception], None],
                 flat_map: Callable[[Message], tuple[list[dict[str, Any]], list[bytes]] | None] | None = None) -> None:
        self.map, self.roll_up, self.encode, self.learn, self.failed = map_, roll_up, encode, learn, failed
        self.flat_map = flat_map or (lambda msg: None)

    def finish(self, msg: Message) -> None:
        step: Any = annotate
        try:
            annotate(msg)
            step = self.map
            done = self.flat_map(msg)  # the destination's operations for the common message, written out
            if done is not None:
                msg.ops, msg.op_lines = done
            else:
                self.map(msg)
                if msg.quarantined:
                    return
            if msg.contract.rollups:
                step = self.roll_up
                self.roll_up(msg)
                if msg.quarantined:
                    return
            step = self.encode
            if len(msg.op_lines) == len(msg.ops):  # the common case of `encode`: the operations are written out
                try:
                    msg.line = orjson.dumps(msg.body)
                except (TypeError, orjson.JSONEncodeError):
                    self.encode(msg)  # it says why
                    return
            else:
                self.encode(msg)
                if msg.quarantined:
                    return
            step = self.learn
            self.learn(msg)
        except Exception as exc:
            self.failed(msg, step, exc)
