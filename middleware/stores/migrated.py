"""A store read through its group id migrations (`middleware/migrations.py`): the one place where a migrated id's
facts count for the id it became. Writes and every other call go to the store unchanged.

While no migration is recorded (the usual case) each read is the store's own. Otherwise a read that meets a
migrated id takes the slow path: memberships are folded again from the persons' raw events (one read more, only for
persons who belong to a migrated group); a trait's value, a stale check, the trait names, the activity log, the
members and the relationship attributes of a group that ids were migrated into combine that group's own facts with
those of its sources. In a merged group a trait's newest value wins, from the trait's owner source when one of its
values was written by it (`owners`).
"""

from __future__ import annotations

from typing import Any

from ..migrations import MigrationMap
from .base import Activity, Lookup, Membership, Store, TraitEntry
from .history import latest_at, stale_after


#: the reads a message makes: the store's own, bound directly, while no migration is recorded
_HOT_READS = ("lookup", "memberships_at", "traits_at", "stale_traits", "activity_since")


class Migrated:
    """`store` read through `map` (its migrations as last read by `refresh`)."""

    def __init__(self, store: Store, owners: dict[str, str] | None = None) -> None:
        self.raw = store
        self.owners = owners or {}  # trait name -> the source that owns it
        self.map = MigrationMap()

    @property
    def map(self) -> MigrationMap:
        return self._map

    @map.setter
    def map(self, value: MigrationMap) -> None:
        self._map, self.active = value, bool(value)  # `active`: read on every message, a plain attribute
        for name in _HOT_READS:  # no migration: a message's reads cost nothing more than the store's own
            if self.active:
                self.__dict__.pop(name, None)
            else:
                self.__dict__[name] = getattr(self.raw, name)

    def __getattr__(self, name: str) -> Any:  # every other call is the store's own (bound once, then direct)
        value = getattr(self.raw, name)
        if callable(value):
            self.__dict__[name] = value
        return value

    def refresh(self) -> bool:
        """Re-read the migrations when the store's migration counter moved (one cheap read); True when it did."""
        count = self.raw.migration_count()
        if count == self.map.version:
            return False
        self.map = MigrationMap(self.raw.migrations(), count)
        return True

    # memberships

    def lookup(self, message_id: str, persons: list[str], ts: float, names: list[str] = (),
               group: tuple[str, Any] | None = None, event_ts: float | None = None,
               stale_group: tuple[str, Any] | None = None, stale_names: list[str] = (),
               timeless: bool = False) -> Lookup:
        found = self.raw.lookup(message_id, persons, ts, names, group, event_ts=event_ts, stale_group=stale_group,
                                stale_names=stale_names, timeless=timeless)
        if not self.active:
            return found
        migrations = self.map.known(found.arrival)
        if any(migrations.migrated(m.object_type_id, m.group_id) for m in found.memberships):
            found = found._replace(memberships=self._fold(migrations, found.persons, ts, found.arrival))
        traits = {group: values for group, values in found.traits.items() if not migrations.has_sources(*group)}
        if stale_group is not None and migrations.has_sources(*stale_group):
            stale = self.stale_traits(*stale_group, list(stale_names), ts if event_ts is None else event_ts,
                                      message_id, before=found.arrival)
            return found._replace(traits=traits, stale=stale)
        return found._replace(traits=traits)

    def memberships_at(self, persons: list[str], ts: float, before: int | None = None) -> list[Membership]:
        found = self.raw.memberships_at(persons, ts, before)
        if not self.active:
            return found
        migrations = self.map.known(before)
        if any(migrations.migrated(m.object_type_id, m.group_id) for m in found):
            return self._fold(migrations, persons, ts, before)
        return found

    def _fold(self, migrations: MigrationMap, persons: list[str], ts: float, before: int | None) -> list[Membership]:
        events = self.raw.membership_events(persons)
        groups = {(t, gid) for t, g, *_ in events for gid in migrations.chain(t, g)}
        return migrations.fold(events, self.raw.deletions(sorted(groups)), ts, before)

    def members_at(self, object_type_id: str, group_id: str, ts: float, before: int | None = None) -> list[str]:
        """The group's members at `ts` (facts known `before`, default every fact), its sources' included."""
        migrations = self.map.known(before)
        sources = migrations.sources(object_type_id, group_id)
        if not sources and not migrations.migrated(object_type_id, group_id) and before is None:
            return self.raw.members_at(object_type_id, group_id, ts)
        candidates = set(self.raw.members_at(object_type_id, group_id, ts))
        for source in sources:
            candidates.update(self.raw.members_at(object_type_id, source.group_id, min(ts, source.until)))
        group = (object_type_id, group_id)
        return sorted(person for person in candidates
                      if any((m.object_type_id, m.group_id) == group for m in self.memberships_at([person], ts, before)))

    def persons_seen(self, object_type_id: str, group_id: str) -> list[str]:
        """Every person key with a membership fact of the group or of the ids migrated into it (a renamed id's
        history is the new id's; a merged id's former members are known not to be the new group's)."""
        sources = self.map.sources(object_type_id, group_id) if self.active else ()
        seen = set(self.raw.persons_seen(object_type_id, group_id))
        for source in sources:
            seen.update(self.raw.persons_seen(object_type_id, source.group_id))
        return sorted(seen)

    def groups(self) -> list[tuple[str, str]]:
        """Every group the store knows of, the ids migrated to included (a rename's new id has no facts of its own)."""
        return sorted({*self.raw.groups(), *((m.object_type_id, m.new_id) for m in self.map.rows)})

    # traits, activity and relationships of a group ids were migrated into

    def _history(self, object_type_id: str, group_id: str, name: str, ts: float,
                 before: int | None) -> list[TraitEntry] | None:
        """The trait's entries with those of the group's sources that count at `ts`; None when it has none."""
        sources = self.map.known(before).sources(object_type_id, group_id) if self.active else ()
        if not sources:
            return None
        entries = list(self.raw.trait_history(object_type_id, group_id, name))
        for source in sources:
            if ts >= source.since:
                entries += [e for e in self.raw.trait_history(object_type_id, source.group_id, name)
                            if e.ts <= source.until]
        owner = self.owners.get(name)
        if owner is not None and any(e.source == owner for e in entries):
            entries = [e for e in entries if e.source == owner]
        return entries

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float,
                  before: int | None = None) -> dict[str, Any]:
        if not self.active or not self.map.has_sources(object_type_id, group_id):
            return self.raw.traits_at(object_type_id, group_id, names, ts, before)
        out = {}
        for name in names:
            entries = self._history(object_type_id, group_id, name, ts, before) or ()
            best = latest_at(((e.ts, e.seq, e.value, e.arrived) for e in entries), ts, before)
            if best is not None:
                out[name] = best[2]
        return out

    def stale_traits(self, object_type_id: str, group_id: str, names: list[str], ts: float, message_id: str,
                     before: int | None = None) -> set[str]:
        if not self.active or not self.map.has_sources(object_type_id, group_id):
            return self.raw.stale_traits(object_type_id, group_id, names, ts, message_id, before)
        return {name for name in names
                if stale_after(((e.ts, e.seq, e.message_id, e.arrived)
                                for e in self._history(object_type_id, group_id, name, ts, before) or ()),
                               ts, message_id, before)}

    def trait_names(self, object_type_id: str, group_id: str) -> list[str]:
        names = set(self.raw.trait_names(object_type_id, group_id))
        for source in self.map.sources(object_type_id, group_id):
            names.update(self.raw.trait_names(object_type_id, source.group_id))
        return sorted(names)

    def activity_since(self, object_type_id: str, group_id: str, since: float) -> list[Activity]:
        """The group's activity log and its sources' (up to each one's `until`; numbered 0, before the group's own
        entries), once per message."""
        own = self.raw.activity_since(object_type_id, group_id, since)
        sources = self.map.sources(object_type_id, group_id) if self.active else ()
        if not sources:
            return own
        seen = {entry.message_id for entry in own}
        for source in sources:
            for entry in self.raw.activity_since(object_type_id, source.group_id, since):
                if entry.ts <= source.until and entry.message_id not in seen:
                    seen.add(entry.message_id)
                    own.append(entry._replace(seq=0))
        return sorted(own)

    def relationship_attributes(self, object_type_id: str, group_id: str) -> dict[str, dict[str, Any]]:
        """The members' relationship attributes; a member's own in the group win over a source's."""
        out: dict[str, dict[str, Any]] = {}
        for source in reversed(self.map.sources(object_type_id, group_id)):
            out.update(self.raw.relationship_attributes(object_type_id, source.group_id))
        out.update(self.raw.relationship_attributes(object_type_id, group_id))
        return out


def migrated(store: Store | Migrated, owners: dict[str, str] | None = None) -> Migrated:
    """`store` read through its migrations (itself when it already is)."""
    return store if isinstance(store, Migrated) else Migrated(store, owners)


__all__ = ["Migrated", "migrated"]
