"""The one small interface every membership store implements (memory, SQLite, Redis).

Persons are keys: ``"u:<userId>"`` or ``"a:<anonymousId>"``. Everything is event-sourced with timestamps so
that every answer is point-in-time: a late or replayed message sees the state valid at its own time.

A persistent store also remembers the order in which it first saw each message (`admit`). Every fact carries
the arrival number of the message that recorded it (`arrived`), and a read made for a message passes its own
number (`before`) and ignores the facts recorded on or after it: a replayed message sees exactly what it saw the
first time, an unseen message sees everything known. None means no order (always known / no filter).

Retention (`compact(horizon)`): every answer for a time at or after the horizon stays as it was. Each history (a
person's membership of a group, a group's trait by name, an object's deletions) keeps its facts at or after the
horizon and the latest one before it (the one in force at the horizon); arrival records and activity entries whose
event time is before the horizon are removed. An identity link is identity, not history: it holds at every time,
so `compact` keeps every one (links are bounded by pairs of ids, not by time). A replay of a message whose arrival
record was removed is numbered as new (and a re-send of a message without a time of its own gets a new time).

Privacy (`middleware/privacy.py`): message ids reach a store as keyed hashes, never as the plain message key (which
names the person); `forget(keys)` removes every record naming a person key (its links, both ways, and its
membership history); `suppress` / `suppressed` keep the keyed hashes of forgotten ids.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..errors import StoreError

if TYPE_CHECKING:
    from ..migrations import Migration

__all__ = ["Activity", "Lookup", "Membership", "Store", "StoreError", "TraitEntry"]


class Membership(NamedTuple):
    object_type_id: str
    group_id: str
    since: float  # time of the join that is in force


class Activity(NamedTuple):
    """One member event in a group's activity log (what the rollups are computed from)."""

    ts: float
    seq: int  # order of recording within the group
    message_id: str
    values: dict[str, Any]  # rollup name -> the value this event contributes


class TraitEntry(NamedTuple):
    """One recorded value of a group trait (`Store.trait_history`)."""

    ts: float
    seq: int  # order of recording within the store (Redis: within the group)
    message_id: str
    value: Any
    arrived: int | None
    source: str | None  # the source that wrote it (None: written before sources were recorded)


class Lookup(NamedTuple):
    """What a message needs from the store before it is resolved (`Store.lookup`)."""

    arrival: int | None  # the message's arrival number (`admit`)
    persons: list[str]  # every key linked to the message's persons, theirs first
    memberships: list[Membership]  # of those persons at the message's time
    traits: dict[tuple[str, Any], dict[str, Any]]  # (type, group) -> trait values at that time, where prefetched
    stale: set[str] | None = None  # the `stale_traits` of the group asked by `stale_group`; None when not asked
    first_ts: float | None = None  # the event time of the message's first arrival (`arrive`); None: not kept


class Store(Protocol):
    """What every store implements. `lookup` and `batch` have a default here (a store that subclasses `Store`
    inherits it); a store that talks to a server does each in one round trip."""

    def link(self, key: str, other: str, arrived: int | None = None) -> None:
        """Record that two person keys are the same person (identify with both ids, alias); the first `arrived`
        stays. A link holds at every time: `compact` never removes it."""

    def identities(self, key: str, before: int | None = None) -> list[str]:
        """Every person key linked to `key` (by links known `before`), `key` first."""

    def admit(self, message_id: str, ts: float = 0.0) -> int | None:
        """The arrival number of a message (event time `ts`): a new, store-wide increasing one the first time
        `message_id` is seen, the same one on every later call (a replay) while its arrival record is kept (a `ts` of 0
        is older than any horizon); None from a store without per-message memory."""

    def arrive(self, message_id: str, ts: float = 0.0, timeless: bool = False) -> tuple[int | None, float | None]:
        """`admit`, and the event time the message's arrival record holds: its first arrival's, which a re-send
        gets back (None: no record, or one written before records had a time). `timeless`: the message carries
        no time of its own; a store without per-message memory (memory) keeps the first time of those alone."""
        return self.admit(message_id, ts), None

    def lookup(self, message_id: str, persons: list[str], ts: float, names: list[str] = (),
               group: tuple[str, Any] | None = None, event_ts: float | None = None,
               stale_group: tuple[str, Any] | None = None, stale_names: list[str] = (),
               timeless: bool = False) -> Lookup:
        """Admit `message_id` (event time `event_ts`, default `ts`), then the keys linked to `persons` and their
        memberships at `ts`, as known before its arrival. Where a store can in the same round trip, it also gives
        the trait values `names` at `ts` of `group` and of every membership's group (`Lookup.traits`); what it
        leaves out, the caller asks `traits_at`. With `stale_group` (a group call's own ``(type, id)``), it
        gives `Lookup.stale`: ``stale_traits(*stale_group, stale_names, event_ts, message_id, before=arrival)``.
        `Lookup.first_ts` is `arrive`'s time (`timeless` as there).
        This default composes the calls above and prefetches no traits."""
        event_ts = ts if event_ts is None else event_ts
        arrival, first_ts = self.arrive(message_id, event_ts, timeless)
        linked: list[str] = []
        for person in persons:
            linked += [key for key in self.identities(person, before=arrival) if key not in linked]
        memberships = self.memberships_at(linked, ts, before=arrival) if linked else []
        stale = None if stale_group is None else self.stale_traits(
            *stale_group, list(stale_names), event_ts, message_id, before=arrival)
        return Lookup(arrival, linked, memberships, {}, stale, first_ts)

    #: whether `prefetch` does anything (a door's engine reads a chunk's payloads for it only then)
    prefetches = False

    def prefetch(self, message_ids: list[str], persons: list[str], groups: list[tuple[str, Any]],
                 names: list[str]) -> None:
        """A hint, inside `transaction()`, of what the chunk's messages will `lookup`: their (keyed) message ids,
        persons, the groups they name and the trait names asked. A store that talks to a server reads it all in a
        few round trips and answers those lookups from it, each exactly as alone (its own earlier writes seen);
        what it did not read, it asks for then. This default does nothing."""

    def record_membership(self, person: str, object_type_id: str, group_id: str, ts: float, joined: bool,
                          arrived: int | None = None) -> None:
        """A person joined (group call) or left (Relationship Deleted) a group at `ts`."""

    def record_object_deleted(self, object_type_id: str, group_id: str, ts: float, arrived: int | None = None) -> None:
        """A group ceased to exist at `ts`: it has no members from then on."""

    def memberships_at(self, persons: list[str], ts: float, before: int | None = None) -> list[Membership]:
        """The groups any of `persons` belonged to at `ts`, latest joined first (facts known `before`)."""

    def stale_traits(self, object_type_id: str, group_id: str, names: list[str], ts: float, message_id: str,
                     before: int | None = None) -> set[str]:
        """The names whose stored value is newer than `ts`, among the values known `before` an arrival number
        (a re-applied message compares as it did first)."""

    def apply_traits(self, object_type_id: str, group_id: str, traits: dict[str, Any], ts: float, message_id: str,
                     arrived: int | None = None, source: str | None = None) -> None:
        """Record group trait values written at `ts` by message `message_id` of `source` (kept in its own field)."""

    def trait_history(self, object_type_id: str, group_id: str, name: str) -> list[TraitEntry]:
        """Every recorded value of one trait of a group (every fact known), in recording order."""

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float,
                  before: int | None = None) -> dict[str, Any]:
        """The latest value of each of `names` written at or before `ts` (facts known `before`)."""

    def record_activity(self, object_type_id: str, group_id: str, message_id: str, ts: float, values: dict[str, Any]) -> int:
        """Append a member's event to the group's activity log, once per message; its seq (the first one's)."""

    def activity_since(self, object_type_id: str, group_id: str, since: float) -> list[Activity]:
        """The group's activity entries with a time at or after `since`, in (ts, seq) order."""

    def mark_rollup_pending(self, object_type_id: str, group_id: str, due: float, seq: int) -> None:
        """Note unsent rollup changes of a group up to entry `seq`, due at `due` (keeps the earliest due, the
        highest seq)."""

    def clear_rollup_pending(self, object_type_id: str, group_id: str, seq: int) -> None:
        """Forget the pending changes once sent up to `seq` (a newer pending entry stays)."""

    def due_rollups(self, until: float) -> list[tuple[str, str, float, int]]:
        """``(object_type_id, group_id, due, seq)`` of the pending groups due at or before `until`, by due time."""

    def record_relationship(self, person: str, object_type_id: str, group_id: str, attributes: dict[str, Any],
                            ts: float) -> None:
        """The relationship attributes a group call at `ts` gave the person's membership (the latest by `ts` is
        kept; memberships learned before they were kept have none)."""

    def relationship_attributes(self, object_type_id: str, group_id: str) -> dict[str, dict[str, Any]]:
        """person key -> the latest relationship attributes of the group's members that have some."""

    # group id migrations (`middleware/migrations.py`): one fact each, read through `stores/migrated.py`

    def record_migration(self, migration: Migration) -> bool:
        """Record a migration; True when it is new (the migration counter moves), False when its old id already
        has one (recorded before: nothing changes)."""

    def migrations(self) -> list[Migration]:
        """Every recorded migration, in recording order."""

    def migration_count(self) -> int:
        """The migration counter (one cheap read): a process re-reads `migrations` when it moves."""

    def membership_events(self, persons: list[str]) -> list[tuple]:
        """Every membership event (`history.Event`) of `persons`, whatever its time."""

    def deletions(self, groups: list[tuple[str, str]]) -> dict[tuple[str, str], list[tuple[float, int | None]]]:
        """The deletions ``(ts, arrived)`` of each of `groups` that has any."""

    def groups(self) -> list[tuple[str, str]]:
        """Every group the store knows of (by a membership, a trait or a deletion): sorted
        ``(object_type_id, group_id)`` pairs. Read-only, for tools (`groupspec verify`)."""

    def members_at(self, object_type_id: str, group_id: str, ts: float) -> list[str]:
        """The person keys that belonged to the group at `ts` (every fact known), sorted."""

    def persons_seen(self, object_type_id: str, group_id: str) -> list[str]:
        """Every person key with a membership fact of the group (members and former members), sorted."""

    def linked_to(self, key: str) -> list[str]:
        """The person keys linked to `key` directly (by a link of their own, every fact known), sorted."""

    def trait_names(self, object_type_id: str, group_id: str) -> list[str]:
        """The names of every trait ever recorded for the group, sorted."""

    def deleted_at(self, object_type_id: str, group_id: str) -> float | None:
        """The time of the object's latest deletion (every fact known); None when it was never deleted."""

    def transaction(self) -> AbstractContextManager[None]:
        """Group the writes of many messages into one commit, where the store has commits (SQLite); the
        caller is the only writer while it lasts. Elsewhere it does nothing."""

    def compact(self, horizon: float) -> dict[str, int]:
        """Remove what no answer for a time at or after `horizon` needs (see the module docstring); the records
        removed, by kind."""

    def size(self) -> dict[str, int]:
        """The records held, by kind: arrivals, links, memberships, deletions, traits, activity, pending."""

    def batch(self) -> AbstractContextManager[None]:
        """Send the writes made inside (one message's) together, in one round trip, where the store talks to a
        server; reads inside still see them. This default does nothing."""
        return nullcontext()

    def privacy_key(self) -> bytes:
        """The store's own key for keyed hashes (used when `[privacy] key` is unset): random, generated once and
        kept with the data, the same for every process that opens the store."""

    def rekey_message_keys(self, hash_key: Callable[[str], str]) -> int:
        """Replace plain message keys (written before they were hashed) by `hash_key` of them, once: a store that
        holds none is marked done without a scan. The ids re-keyed."""

    def forget(self, keys: list[str], dry_run: bool = False) -> dict[str, int]:
        """Remove every record naming one of the person `keys`: their identity links (the other side's too) and
        membership history; the records removed (or, `dry_run`, that would be), by kind: links, memberships."""

    def suppress(self, hashes: list[str]) -> None:
        """Remember keyed hashes of forgotten person keys (`[privacy] suppress_forgotten`)."""

    def suppressed(self, hashes: list[str]) -> bool:
        """Whether any of these keyed hashes was remembered by `suppress`."""

    def scrub(self) -> bool:
        """Make what `forget` removed unreadable in the store's own files, off the hot path (SQLite: free pages
        were zeroed by the erasing statements; the WAL is checkpointed and truncated); False when that could not
        be finished now (a reader held the WAL). Elsewhere it has nothing to do."""
        return True

    def close(self) -> None:
        """Release connections and files."""
