"""What a migration does, read from the store before it is recorded: the members it moves, the traits it carries
(and their conflicts), the rollups it combines, and the Customer.io operations that make it true there:

1. object `identify` of the new id with its attributes (its traits and rollups once the migration is recorded);
2. object `add_relationships` for every current member (with the relationship attributes the store kept), and an
   `identify_anonymous` per member known only by an anonymous id;
3. the old object: `delete` (Customer.io removes its relationships with it), or with `keep_old` the old
   relationships deleted and the object kept with `migrated_to`.

The same plan is what `--dry-run` writes, what `--deliver` sends and what `replay --migrations` writes at the row's
time; `record` makes the migration a fact of the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from groupspec.middleware.config import Config
from groupspec.middleware.migrations import Migration, arrival_key
from groupspec.middleware.quarantine import iso
from groupspec.middleware.rollups import SOURCE, evaluate
from groupspec.middleware.stores.migrated import Migrated

from ..customerio import identifiers
from ..customerio.mapping import attributes, object_deleted, object_unrelated, object_update

LINKS_PER_OPERATION = 100  # relationships per add/delete_relationships operation (each operation stays far under 32 KB)


@dataclass
class RowPlan:
    """One row's migration: what `migration.json` says about it and the operations it sends."""

    migration: Migration
    report: dict[str, Any]
    ops: list[dict[str, Any]]


def plan(store: Migrated, config: Config, rows: list[tuple[str, Migration]], now: float,
         before: int | None = None) -> list[RowPlan]:
    """The plan of each ``(where, migration)`` in order (a chain's later rows see the earlier ones), read from the
    facts known `before` an arrival number (default every fact): the members moved and the traits compared at the
    migration's `at`, the new object's members and attributes as they are `now` (or at `at`, when later). The store's
    own map is left as it was."""
    saved = store.map
    out = []
    try:
        for where, migration in rows:
            out.append(_plan_row(store, config, where, migration, max(now, migration.at), before))
            store.map = store.map.with_rows([migration._replace(arrived=None)])
    finally:
        store.map = saved
    return out


def _plan_row(store: Migrated, config: Config, where: str, m: Migration, now: float, before: int | None) -> RowPlan:
    type_id, at = m.object_type_id, m.at
    moved = store.members_at(type_id, m.old_id, at, before)
    old_traits = _traits(store, type_id, m.old_id, at, before)
    new_traits = _traits(store, type_id, m.new_id, at, before)
    carried_entries = [e for e in store.activity_since(type_id, m.old_id, -math.inf) if e.ts <= at]
    saved = store.map
    store.map = saved.with_rows([m._replace(arrived=None)])
    try:
        merged = _traits(store, type_id, m.new_id, at, before)
        members = store.members_at(type_id, m.new_id, now, before)
        traits = _traits(store, type_id, m.new_id, now, before)
        relations = store.relationship_attributes(type_id, m.new_id)
        entries = store.activity_since(type_id, m.new_id, -math.inf)
        people = {key: _user(store, key, before) for key in {*members, *moved}}
    finally:
        store.map = saved
    latest = max(entries, key=lambda e: (e.ts, e.seq)) if entries else None
    rollups = evaluate(config.contract_for(latest.values.get(SOURCE) if latest else None).rollups, entries)
    ops = _operations(config, m, traits, rollups, members, moved, relations, people)
    conflicts = [{"trait": name, "old": value, "new": new_traits[name], "kept": merged.get(name)}
                 for name, value in sorted(old_traits.items()) if name in new_traits and new_traits[name] != value]
    report = {
        "row": where, "object_type_id": type_id, "old_id": m.old_id, "new_id": m.new_id, "mode": m.mode,
        "at": iso(at), "keep_old": m.keep_old,
        "members_moved": sorted(moved), "members": len(members),
        "traits": {"carried": {name: value for name, value in sorted(old_traits.items())
                               if name not in new_traits and merged.get(name) == value},
                   "conflicting": conflicts},
        "rollups": {"entries_carried": len(carried_entries), "values": rollups},
        "operations": len(ops),
    }
    return RowPlan(m, report, ops)


def _traits(store: Migrated, type_id: str, group_id: str, at: float, before: int | None) -> dict[str, Any]:
    return store.traits_at(type_id, group_id, store.trait_names(type_id, group_id), at, before)


def _user(store: Migrated, key: str, before: int | None) -> str | None:
    """The userId a person key is (or is linked to); None for a person known only anonymously."""
    return next((k[2:] for k in store.identities(key, before=before) if k.startswith("u:")), None)


def _operations(config: Config, m: Migration, traits: dict[str, Any], rollups: dict[str, Any], members: list[str],
                moved: list[str], relations: dict[str, dict[str, Any]],
                people: dict[str, str | None]) -> list[dict[str, Any]]:
    type_id, compat = m.object_type_id, config.customerio.compat
    new = {"object_type_id": type_id, "object_id": m.new_id}
    ops = [object_update((type_id, m.new_id, {**traits, **rollups}))]
    links = []
    for key in members:
        if people[key] is None:
            continue
        link: dict[str, Any] = {"identifiers": identifiers.member(people[key], compat)}
        if relations.get(key) and compat == "segment":  # RudderStack's destination writes none
            link["relationship_attributes"] = attributes(relations[key])
        links.append(link)
    for start in range(0, len(links), LINKS_PER_OPERATION):
        ops.append({"type": "object", "action": "add_relationships", "identifiers": new,
                    "cio_relationships": links[start:start + LINKS_PER_OPERATION]})
    for key in members:
        if people[key] is None:
            ops.append({"type": "object", "action": "identify_anonymous", "identifiers": new, "attributes": {},
                        "cio_relationships": [{"identifiers": {"anonymous_id": key[2:]}}]})
    if not m.keep_old:
        return [*ops, object_deleted(type_id, m.old_id)]
    gone = [identifiers.member(people[key], compat) for key in moved if people[key] is not None]
    for start in range(0, len(gone), LINKS_PER_OPERATION):
        ops.append(object_unrelated(type_id, m.old_id, gone[start:start + LINKS_PER_OPERATION]))
    return [*ops, object_update((type_id, m.old_id, {"migrated_to": m.new_id}))]


def admit(store: Migrated, migration: Migration) -> Migration:
    """The migration with its arrival number (`Store.admit`): the same on every replay of a persistent store."""
    return migration._replace(arrived=store.admit(arrival_key(migration.object_type_id, migration.old_id), migration.at))


def record(store: Migrated, migrations: list[Migration]) -> None:
    """Make the migrations facts of the store (the counter moves: every process re-reads its map at its next chunk);
    the old ids' pending rollup updates are dropped (the new id's combined log is what goes out)."""
    for migration in migrations:
        if store.record_migration(migration):
            store.clear_rollup_pending(migration.object_type_id, migration.old_id, 2**62)
    store.refresh()
