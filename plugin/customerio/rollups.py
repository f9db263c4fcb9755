"""Group rollups as Customer.io object updates: a chain step plus the final flush."""

from __future__ import annotations

from typing import Any

from groupspec.middleware.config import Contract
from groupspec.middleware.message import Message
from groupspec.middleware.rollups import Rollups, Update, contributions
from groupspec.middleware.step import only
from groupspec.middleware.stores import Store

from . import limits
from .mapping import attributes


def object_update(update: Update) -> dict[str, Any]:
    """An object `identify` carrying a group's rollup attributes."""
    type_id, group_id, values = update
    return {"type": "object", "action": "identify",
            "identifiers": {"object_type_id": type_id, "object_id": group_id}, "attributes": attributes(values)}


@only(when=lambda contract: bool(contract.rollups))
class RollupUpdates:
    """Chain step (after `to_customerio`): records a member's event for its group's rollups, then appends the
    object updates that are due by the message's time to its ops."""

    def __init__(self, store: Store) -> None:
        self.rollups = Rollups(store)

    def __call__(self, msg: Message) -> Message:
        values = contributions(msg)
        if values:
            problem = limits.problem(object_update((msg.group_type(), msg.group_id, values)))
            if problem is not None:  # e.g. a `properties.NAME` value over 1000 bytes: the event's own fault
                return msg.drop("customerio_limit", "rollups." + problem[0], problem[1])
            self.rollups.record(msg, values)
        updates = self.rollups.due(msg.contract, msg.ts)
        if updates:
            msg.ops = [*msg.ops, *map(object_update, updates)]
        return msg

    def flush(self, contract: Contract) -> list[dict[str, Any]]:
        """Every pending object update (the end of a replay or stream)."""
        return [object_update(update) for update in self.rollups.flush(contract)]
