"""Group activity rollups: group attributes computed from members' events, point-in-time and coalesced.

Each track event named by a `[contract.rollups]` entry that resolved a group is appended, once per
message (`Message.stored_key`), to the group's activity log in the store. The attributes are a pure function of that log:

- a `value` rollup is the value of the newest event (by event time); `"timestamp"` is its time in unix seconds;
- a `count_window` rollup counts the events in the window ending at the group's latest event time (so a late
  event never rolls an object back to an older view).

Coalescing works on event time, never the wall clock: time is cut into `rollup_interval` slots; an event marks its
group pending until the end of its slot, and the update goes out with the first message at or after that time
(`due`), or at the end of a replay (`flush`); a long-running service also calls `due` with the clock. An update
shows the log as it was up to the last event that marked it pending, so replaying a stream twice against a
persistent store gives the same updates.
"""

from __future__ import annotations

from typing import Any

from .config import Config, Contract, Rollup, duration_seconds
from .message import Message
from .stores import Activity, Store

#: (object_type_id, group_id, attributes) of one object update
Update = tuple[str, str, dict[str, Any]]
SOURCE = "@source"  # the activity entry's key for the source whose contract the event was held to


def contributions(msg: Message) -> dict[str, Any]:
    """What a forwarded message contributes to the rollups of its contract (a count contributes 1)."""
    rollups = msg.contract.rollups
    if not rollups or msg.type != "track" or msg.object_event or msg.group_id is None:
        return {}
    out: dict[str, Any] = {}
    event, props = msg.body["event"], msg.props
    for name, rule in rollups.items():
        if rule.event != event:
            continue
        if rule.count_window is not None:
            out[name] = 1
        elif rule.value == "timestamp":
            out[name] = int(msg.ts)
        elif props.get(rule.value.removeprefix("properties.")) not in (None, ""):  # "" would erase it in Customer.io
            out[name] = props[rule.value.removeprefix("properties.")]
    return out


def evaluate(rollups: dict[str, Rollup], entries: list[Activity]) -> dict[str, Any]:
    """A group's rollup attributes from its activity entries, as of the latest entry's time."""
    if not entries:
        return {}
    now = max(entry.ts for entry in entries)
    out: dict[str, Any] = {}
    for name, rule in rollups.items():
        feeding = [entry for entry in entries if name in entry.values]
        if rule.count_window is not None:
            start = now - duration_seconds(rule.count_window)
            out[name] = sum(1 for entry in feeding if entry.ts > start)
        elif feeding:
            out[name] = max(feeding, key=lambda entry: (entry.ts, entry.seq)).values[name]
    return out


def _horizon(contract: Contract) -> int:
    """How far before a due time the entries that decide its update can lie."""
    windows = [duration_seconds(r.count_window) for r in contract.rollups.values() if r.count_window is not None]
    return duration_seconds(contract.rollup_interval) + max(windows, default=0)


class Rollups:
    """Maintains the rollups of every contract of `config` in a store and says which group updates are due.
    Each update is computed under the contract of the source whose event marked the group pending."""

    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.horizon = max(_horizon(config.contract_for(name)) for name in (None, *config.sources))

    def record(self, msg: Message, values: dict[str, Any]) -> None:
        """Append a forwarded event's `contributions` to its group's log and mark the group pending."""
        type_id, interval = msg.group_type(), duration_seconds(msg.contract.rollup_interval)
        entry = {**values, SOURCE: msg.source}
        seq = self.store.record_activity(type_id, msg.group_id, msg.stored_key, msg.ts, entry)
        self.store.mark_rollup_pending(type_id, msg.group_id, (msg.ts // interval + 1) * interval, seq)

    def due(self, until: float) -> list[Update]:
        """The updates of the pending groups due at or before `until` (by due time), which are then sent."""
        out = []
        for type_id, group_id, due, seq in self.store.due_rollups(until):
            entries = [e for e in self.store.activity_since(type_id, group_id, due - self.horizon) if e.seq <= seq]
            marking = max(entries, key=lambda e: e.seq).values.get(SOURCE) if entries else None
            out.append((type_id, group_id, evaluate(self.config.contract_for(marking).rollups, entries)))
            self.store.clear_rollup_pending(type_id, group_id, seq)
        return out

    def flush(self) -> list[Update]:
        """Every pending update, due or not (the end of a replay or of a stream)."""
        return self.due(float("inf"))
