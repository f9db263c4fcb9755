"""How fresh group data is in Customer.io: the lag from a message's event time to the moment Customer.io accepted
the object and relationship operations it became (`groupspec_group_update_lag_seconds`). "Subscription
cancelled but the household still shows active for 6 hours" is this lag."""

from __future__ import annotations

from typing import Any

from groupspec.middleware import Outcome


def changes_group(op: dict[str, Any]) -> bool:
    """An operation that changes a group in Customer.io: on an object, or relating a person to objects."""
    return op.get("type") == "object" or "cio_relationships" in op


def group_op_times(outcome: Outcome) -> dict[int, float]:
    """`id(op)` -> the event time of the message it came from, for the group-changing operations of `outcome`'s
    forwarded messages (rollup updates a message made due included; those sent when idle have no message)."""
    return {id(op): ts for op, ts in zip(outcome.ops, outcome.op_times) if ts is not None and changes_group(op)}
