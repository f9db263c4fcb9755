"""The last step of the chain: what a forwarded message teaches the store (identity links, memberships, group
traits), or, for an `[privacy] erase_on` event, what it makes the store forget. It runs after every step that may
still drop the message, so a dropped message teaches nothing; a forwarded group call's trait values all go into
history at the call's time, the stale ones (`check_stale`) too."""

from __future__ import annotations

from .config import Privacy
from .events import GROUP_ACTIONS, group_action, object_attributes, person_effect, relationship_type
from .message import Message
from .privacy import KeyedHash, forget_message
from .stores import Store

_ACTIVITY = frozenset({"track", "page", "screen"})  # what these teach: a link (both ids) or their event's effect


class Learn:
    """Apply what a forwarded message teaches the store. Without `privacy` (and its `hasher`) no event erases."""

    def __init__(self, store: Store, privacy: Privacy | None = None, hasher: KeyedHash | None = None) -> None:
        self.store = store
        self.privacy, self.hasher = privacy, hasher
        self.erase_on = frozenset(privacy.erase_on) if privacy is not None and hasher is not None else frozenset()

    def __call__(self, msg: Message) -> Message:
        if msg.type in _ACTIVITY and (msg.user_id is None or msg.anonymous_id is None) and msg.effect is None \
                and person_effect(msg) is None:  # most events: nothing to learn, no round trip
            return msg
        with self.store.batch():  # one round trip where the store talks to a server
            return self._learn(msg)

    def _learn(self, msg: Message) -> Message:
        store, body = self.store, msg.body
        if msg.user_id is not None and msg.anonymous_id is not None:
            store.link("a:" + msg.anonymous_id, "u:" + msg.user_id, arrived=msg.arrival)
        if msg.type == "alias":
            for key in ("u:", "a:"):
                store.link(key + body["previousId"], "u:" + msg.user_id, arrived=msg.arrival)
        elif msg.type == "group":
            action = group_action(msg)
            effect = GROUP_ACTIONS[action]
            if effect == "delete_object":
                store.record_object_deleted(msg.object_type, msg.group_id, msg.ts, arrived=msg.arrival)
                return msg
            if msg.person_key is not None:
                store.record_membership(msg.person_key, msg.object_type, msg.group_id, msg.ts, effect == "join",
                                        arrived=msg.arrival)
                relationship = msg.traits.get("relationshipAttributes")
                if effect == "join" and isinstance(relationship, dict) and relationship:
                    store.record_relationship(msg.person_key, msg.object_type, msg.group_id, relationship, msg.ts)
            attributes = {**msg.late_traits, **object_attributes(msg.traits)}  # stale or not: each at its time
            if msg.contract.conventions == "rudderstack":  # RudderStack's object action, not an attribute
                attributes.pop("action", None)
            if attributes and action == "identify":
                store.apply_traits(msg.object_type, msg.group_id, attributes, msg.ts, msg.stored_key,
                                   arrived=msg.arrival, source=msg.source)
        elif msg.type == "identify":
            self._relate(msg)
        elif msg.type == "track" and msg.body.get("event") in self.erase_on:
            msg.erasure = forget_message(store, self.hasher, msg, self.privacy.suppress_forgotten)
        elif person_effect(msg) == "delete_person":
            self._forget(msg)
        elif msg.effect == "delete_object":
            store.record_object_deleted(msg.object_type, msg.group_id, msg.ts, arrived=msg.arrival)
        elif msg.effect == "leave":
            store.record_membership(msg.person_key, msg.object_type, msg.group_id, msg.ts, False,
                                    arrived=msg.arrival)
        return msg

    def _relate(self, msg: Message) -> None:
        """Segment's identify with `traits.objectId` relates the person to that object (`cio_relationships`); like
        the mapping, it reads `traits` only, never `context.traits`."""
        traits = msg.body.get("traits")
        if msg.contract.conventions != "segment" or not isinstance(traits, dict):
            return
        object_id = traits.get("objectId")
        if not object_id or not isinstance(object_id, (str, int)) or isinstance(object_id, bool):
            return
        type_id = relationship_type(traits, msg.contract)
        if type_id.isdigit() and not type_id.startswith("0"):
            self.store.record_membership(msg.person_key, type_id, str(object_id), msg.ts, True, arrived=msg.arrival)

    def _forget(self, msg: Message) -> None:
        """A deleted person's memberships end (under every key linked to the person) at the event's time."""
        store = self.store
        persons = store.identities(msg.person_key, before=msg.arrival)
        for m in store.memberships_at(persons, msg.as_of, before=msg.arrival):
            for person in persons:
                store.record_membership(person, m.object_type_id, m.group_id, msg.ts, False, arrived=msg.arrival)

