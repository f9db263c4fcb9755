"""What Customer.io should hold for a group, from the store's current view: its attributes as the destination
sends them, its identified members as the mapping identifies them, and which attributes the contract gives to
groups (they must not sit on people)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from groupspec.middleware.config import Config
from groupspec.middleware.stores import Store

from ..customerio import identifiers
from ..customerio.mapping import CUSTOMERIO


@dataclass(frozen=True)
class GroupView:
    """One group as the store knows it now."""

    object_type_id: str
    group_id: str
    traits: dict[str, Any]  # latest value of every trait, as recorded
    attributes: dict[str, Any]  # the object attributes those traits become in Customer.io (removals left out)
    members: list[dict[str, str]]  # Customer.io identifiers of the identified members, in store order
    anonymous: list[str]  # members known only by an anonymous id: the App API cannot look them up
    deleted: bool = False  # deleted (`Object Deleted`) and not written to since: Customer.io should not hold it


def owned_attributes(config: Config) -> set[str]:
    """Every attribute a contract (the base one or a source's) declares in `group_traits`."""
    owned = set(config.contract.group_traits)
    for name in config.sources:
        owned.update(config.contract_for(name).group_traits)
    return owned


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
    members: list[dict[str, str]] = []
    anonymous: list[str] = []
    for key in store.members_at(object_type_id, group_id, now):
        user = next((k[2:] for k in store.identities(key) if k.startswith("u:")), None)
        if user is None:
            anonymous.append(key[2:])
            continue
        ids = identifiers.member(user, config.customerio.compat)
        if ids not in members:
            members.append(ids)
    deleted = gone is not None and not traits and not members and not anonymous
    return GroupView(object_type_id, group_id, traits, attributes, members, anonymous, deleted)


def choose(store: Store, wanted: list[tuple[str, str]] | None, sample: int | None,
           rng: random.Random | None = None) -> list[tuple[str, str]]:
    """The groups to check: `wanted` ones, else a random `sample` of the known ones, else all of them."""
    if wanted:
        return list(dict.fromkeys(wanted))
    known = store.groups()
    if sample is not None and sample < len(known):
        return sorted((rng or random.Random()).sample(known, sample))
    return known
