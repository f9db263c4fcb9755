"""The chain every front door shares: parse -> resolve -> check contract -> (map) -> learn.

Each step is a callable `Message -> Message`; a step drops a message explicitly (`msg.drop(...)`) and the
chain stops there. Front doors add their own steps (the Customer.io mapping, a user's callables) with `extra`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from . import contract
from .config import Config
from .message import Message, normalise, split
from .resolve import Resolve
from .step import Step, chains, only
from .stores import Store, StoreError

log = logging.getLogger("groupspec")


@only("track", when=lambda c: bool(c.attach_group_traits))
class Attach:
    """Snapshot the `attach_group_traits` of the resolved group, as known at the event's time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, msg: Message) -> Message:
        names = msg.contract.attach_group_traits
        if msg.group_id is not None and not msg.object_event:
            msg.snapshot = self.store.traits_at(msg.group_type(), msg.group_id, names, msg.ts, before=msg.arrival)
        return msg


def annotate(msg: Message) -> Message:
    """Write the resolution onto the forwarded message: `context.groupId`, `context.groups`, `context.groupspec`."""
    context = msg.own("context")
    groups: dict[str, str] = {}
    for m in reversed(msg.memberships):  # latest joined wins per type
        groups[m.object_type_id] = m.group_id
    if msg.type != "group" and not msg.object_event:
        if msg.group_id is not None:
            if msg.resolution != "membership":  # an explicit id: under its group's type when the person is a member
                groups[msg.group_type()] = msg.group_id
            context["groupId"] = msg.group_id
        if groups:
            context["groups"] = groups
    msg.groups = groups
    info: dict[str, Any] = {"resolution": msg.resolution, "contract": msg.contract.version, "violations": msg.violations}
    if msg.snapshot is not None:
        info["group_traits"] = msg.snapshot
    context["groupspec"] = info
    return msg


class Learn:
    """Apply what a forwarded message teaches the store: identity links, memberships, group traits."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, msg: Message) -> Message:
        store, body = self.store, msg.body
        if msg.user_id is not None and msg.anonymous_id is not None:
            store.link("a:" + msg.anonymous_id, "u:" + msg.user_id, arrived=msg.arrival)
        if msg.type == "alias":
            for key in ("u:", "a:"):
                store.link(key + body["previousId"], "u:" + msg.user_id, arrived=msg.arrival)
        elif msg.type == "group":
            if msg.person_key is not None:
                store.record_membership(msg.person_key, msg.object_type, msg.group_id, msg.ts, True,
                                        arrived=msg.arrival)
            attributes = contract.object_attributes(msg.traits)
            if attributes:
                store.apply_traits(msg.object_type, msg.group_id, attributes, msg.ts, body["messageId"],
                                   arrived=msg.arrival)
        elif msg.object_event:
            if body["event"] == "Object Deleted":
                store.record_object_deleted(msg.object_type, msg.group_id, msg.ts, arrived=msg.arrival)
            else:
                store.record_membership(msg.person_key, msg.object_type, msg.group_id, msg.ts, False,
                                        arrived=msg.arrival)
        return msg


class Pipeline:
    """One configured chain; `run(payload)` returns a `Message` per message the payload holds."""

    def __init__(self, config: Config, store: Store, *, extra: Iterable[Step] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.steps: list[Step] = [
            Resolve(store),
            *contract.checks(store),
            Attach(store),
            annotate,
            *extra,
            Learn(store),
        ]
        self._chains: dict[int, dict[str, list[Step]]] = {}  # id(contract) -> chains
        self._failures: set[tuple[str, type]] = set()

    def run(self, payload: bytes | str | dict[str, Any], source: str | None = None) -> list[Message]:
        """Parse `payload` (a line, or a decoded message or batch) and take every message through the chain."""
        received_at = self.clock()
        out = []
        for original, body, error in split(payload):
            msg = Message(original, dict(body) if body is not None else None, source, received_at)
            if body is not None and isinstance(body.get("writeKey"), str):
                msg.source = self.config.source_for_key(body["writeKey"]) or source
            msg.contract = self.config.contract_for(msg.source)
            if error is not None:
                msg.drop("malformed", "", error)
            else:
                normalise(msg)
                if not msg.quarantined:
                    self._through(msg)
            out.append(msg)
        return out

    def _through(self, msg: Message) -> None:
        step = None
        by_type = self._chains.get(id(msg.contract))
        if by_type is None:
            by_type = self._chains[id(msg.contract)] = chains(self.steps, msg.contract)
        try:
            for step in by_type[msg.type]:
                if msg.quarantined:
                    return
                step(msg)
        except StoreError as exc:
            msg.drop("store_unavailable", "", str(exc))
        except Exception as exc:  # a bug must not lose the message: quarantine it with the reason
            name = getattr(step, "__name__", type(step).__name__)
            if (name, type(exc)) not in self._failures:  # the traceback once per kind; every record has the reason
                self._failures.add((name, type(exc)))
                log.exception("groupspec step %s failed; messages it fails on are quarantined", name)
            msg.drop("internal_error", name, f"{type(exc).__name__}: {exc}")
