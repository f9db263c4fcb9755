"""What Customer.io should hold for a group, from the store's current view: its attributes as the destination
sends them, its identified members as Customer.io names them after the merges the store has seen, who the store
holds left the group (the only relationships a repair deletes), and which attributes the contract gives to
groups (they must not sit on people)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

from groupspec.middleware.config import Config
from groupspec.middleware.stores import Store

from ..customerio import identifiers
from ..customerio.mapping import CUSTOMERIO

_CHAIN_LIMIT = 1000  # the most ids one alias chain is followed through (as the stores' identity walk)


@dataclass(frozen=True)
class GroupView:
    """One group as the store knows it now."""

    object_type_id: str
    group_id: str
    traits: dict[str, Any]  # latest value of every trait, as recorded
    attributes: dict[str, Any]  # the object attributes those traits become in Customer.io (removals left out)
    members: list[dict[str, str]]  # Customer.io identifiers of the identified members (after merges), store order
    anonymous: list[str]  # members known by an anonymous id only (or identified as several users): unchecked
    deleted: bool = False  # deleted (`Object Deleted`) and not written to since: Customer.io should not hold it
    earlier: list[list[dict[str, str]]] = field(default_factory=list)  # per member: its ids before its merges
    left: list[dict[str, str]] = field(default_factory=list)  # how the people the store holds left are named
    unsure: list[dict[str, str]] = field(default_factory=list)  # who an anonymous member identified twice may be

    def names(self, index: int) -> list[dict[str, str]]:
        """Every identifier member `index` may be related under: its name now, then the ids merged into it."""
        return [self.members[index], *(self.earlier[index] if self.earlier else ())]


def owned_attributes(config: Config) -> set[str]:
    """Every attribute a contract (the base one or a source's) declares in `group_traits`."""
    owned = set(config.contract.group_traits)
    for name in config.sources:
        owned.update(config.contract_for(name).group_traits)
    return owned


def merged_into(store: Store, user: str) -> list[str]:
    """The user ids `user` was merged into: an alias (`previousId` → `userId`, sent as a merge whose primary is
    the userId) links both `u:previousId` and `a:previousId` to `u:userId`; an identify links only `a:` to `u:`."""
    return [other[2:] for other in store.linked_to("u:" + user)
            if other.startswith("u:") and "a:" + user in store.linked_to(other)]


def alias_chain(store: Store, user: str) -> list[str]:
    """The ids Customer.io may know `user` by, the one it names them by now first: `user` and every id it was
    merged into (breadth-first); the name now is the one chain end, else (a cycle, two ends) `user` itself."""
    chain, ends = [user], []
    for name in chain:
        onward = merged_into(store, name)
        if not onward:
            ends.append(name)
        chain += [other for other in onward if other not in chain][:_CHAIN_LIMIT - len(chain)]
    now = ends[0] if len(ends) == 1 else user
    return [now, *(name for name in chain if name != now)]


def identified(store: Store, key: str) -> list[str]:
    """The user ids a person key is known by: `u:` its own, `a:` the users it was identified (or aliased) as."""
    if key.startswith("u:"):
        return [key[2:]]
    return [other[2:] for other in store.linked_to(key) if other.startswith("u:")]


def view(store: Store, config: Config, object_type_id: str, group_id: str, now: float = math.inf) -> GroupView:
    """The group at `now` (default: every fact known). After a deletion only what was written since counts: a
    group call after `Object Deleted` creates the object anew, with only its new attributes. A migrated id (read
    through `stores.migrated`) has no members and no object, or with `--keep-old` an object with `migrated_to`."""
    migration = store.map.migrated(object_type_id, group_id) if hasattr(store, "map") else None
    if migration is not None and (migration.mode == "rename" or migration.at <= now):
        kept = {"migrated_to": migration.new_id} if migration.keep_old else {}
        return GroupView(object_type_id, group_id, {}, kept, [], [], deleted=not migration.keep_old)
    names = store.trait_names(object_type_id, group_id)
    gone = store.deleted_at(object_type_id, group_id)
    if gone is not None:
        names = sorted(store.stale_traits(object_type_id, group_id, names, gone, ""))
    traits = store.traits_at(object_type_id, group_id, names, now)
    sent = CUSTOMERIO.object_update((object_type_id, group_id, traits))["attributes"]
    attributes = {name: value for name, value in sent.items() if value is not None and value != ""}
    compat = config.customerio.compat
    members: list[dict[str, str]] = []
    earlier: list[list[dict[str, str]]] = []
    anonymous: list[str] = []
    unsure: list[dict[str, str]] = []
    current = store.members_at(object_type_id, group_id, now)
    for key in current:
        users = identified(store, key)
        if len(users) != 1:  # never identified, or as several users (a shared device): not named with certainty
            anonymous.append(key[2:])
            unsure += [identifiers.member(name, compat) for user in users for name in alias_chain(store, user)]
            continue
        ids, *before = (identifiers.member(name, compat) for name in alias_chain(store, users[0]))
        if ids not in members:
            members.append(ids)
            earlier.append([])
        known = earlier[members.index(ids)]
        known += [name for name in before if name not in known]
    left: list[dict[str, str]] = []
    for key in store.persons_seen(object_type_id, group_id):
        users = identified(store, key) if key not in current else []
        if len(users) == 1:  # a person the store names with certainty, whose membership ended
            left += [identifiers.member(name, compat) for name in alias_chain(store, users[0])]
    deleted = gone is not None and not traits and not members and not anonymous
    return GroupView(object_type_id, group_id, traits, attributes, members, anonymous, deleted, earlier, left, unsure)


def choose(store: Store, wanted: list[tuple[str, str]] | None, sample: int | None,
           rng: random.Random | None = None) -> list[tuple[str, str]]:
    """The groups to check: `wanted` ones, else a random `sample` of the known ones, else all of them."""
    if wanted:
        return list(dict.fromkeys(wanted))
    known = store.groups()
    if sample is not None and sample < len(known):
        return sorted((rng or random.Random()).sample(known, sample))
    return known
