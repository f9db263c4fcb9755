"""The last step of the chain: what a forwarded message teaches the store (identity links, memberships, group
traits). It runs after every step that may still drop the message, so a dropped message teaches nothing."""

from __future__ import annotations

from . import contract
from .message import Message
from .stores import Store


class Learn:
    """Apply what a forwarded message teaches the store."""

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
        elif msg.effect == "delete_object":
            store.record_object_deleted(msg.object_type, msg.group_id, msg.ts, arrived=msg.arrival)
        elif msg.effect == "leave":
            store.record_membership(msg.person_key, msg.object_type, msg.group_id, msg.ts, False,
                                    arrived=msg.arrival)
        return msg
