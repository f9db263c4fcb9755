"""What resolution writes onto a forwarded message: the group traits snapshot, then `context.groupId`,
`context.groups` and `context.groupspec`."""

from __future__ import annotations

from typing import Any

from .message import Message
from .quarantine import iso
from .step import only
from .stores import Store


@only("track", when=lambda c: bool(c.attach_group_traits))
class Attach:
    """Snapshot the `attach_group_traits` of the resolved group, as known at the event's time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __call__(self, msg: Message) -> Message:
        names = msg.contract.attach_group_traits
        if msg.group_id is not None and not msg.object_event:
            group = (msg.group_type(), msg.group_id)
            known = msg.group_traits.get(group) if isinstance(msg.group_id, str) else None  # given by the lookup
            msg.snapshot = known if known is not None else self.store.traits_at(*group, names, msg.as_of, before=msg.arrival)
        return msg


def annotate(msg: Message) -> Message:
    """Write the resolution onto the forwarded message: `context.groupId`, `context.groups`, `context.groupspec`."""
    context = msg.own("context")
    groups: dict[str, str] = {}
    for m in reversed(msg.memberships):  # latest joined wins per type
        groups[m.object_type_id] = m.group_id
    if msg.type != "group" and not msg.object_event:
        group_id = msg.group_id
        if group_id is not None:
            if msg.resolution != "membership":  # an explicit id: under its group's type when the person is a member
                groups[msg.group_type()] = group_id
            context["groupId"] = group_id
        if groups:
            context["groups"] = groups
    msg.groups = groups
    info: dict[str, Any] = {"resolution": msg.resolution, "contract": msg.contract.version, "violations": msg.violations}
    if msg.snapshot is not None:
        info["group_traits"] = msg.snapshot
    if msg.migrated_from is not None:
        info["migrated_from"] = msg.migrated_from
    horizon = msg.horizon
    if horizon is not None and msg.ts < horizon:  # older than `[store] retention`: resolved as at the window's start
        info["resolved_as_of"] = iso(horizon)
    context["groupspec"] = info
    return msg
