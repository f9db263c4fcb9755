"""The one counting model: what every door reports (`summary.json`, `/metrics`, `/report.json`, `groupspec
report`). A message is counted once, as forwarded, quarantined or suppressed (a forgotten person's, under
`[privacy] suppress_forgotten`), so `received == forwarded + quarantined + suppressed` holds by construction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

RESOLUTIONS = ("explicit", "property", "membership", "unresolved")
OTHER_EVENTS = "(other)"  # the row that takes the event names past `max_events`
MAX_EVENTS = 500
NO_SOURCE = "-"


class Counts:
    """Message counts by outcome, violation, resolution and track event name (the first `max_events` names
    each get a row; later names share `OTHER_EVENTS`, so hostile traffic cannot grow the counters)."""

    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self.forwarded = 0
        self.suppressed = 0  # a forgotten person's messages, dropped unrecorded (no violation, no event row)
        self.quarantined: Counter[str] = Counter()  # by the code that dropped the message
        self.violations: Counter[tuple[str, str, str]] = Counter()  # (code, source, forwarded|quarantined)
        self.resolution: Counter[str] = Counter(dict.fromkeys(RESOLUTIONS, 0))
        self.events: dict[str, dict[str, Any]] = {}
        self.latest: float | None = None  # the newest message time counted

    @property
    def received(self) -> int:
        return self.forwarded + sum(self.quarantined.values()) + self.suppressed

    def __repr__(self) -> str:
        by_code: Counter[str] = Counter()
        for (code, _source, _where), n in self.violations.items():
            by_code[code] += n
        return (f"Counts(received={self.received}, forwarded={self.forwarded}, "
                f"quarantined={sum(self.quarantined.values())}, violations={dict(by_code)}, "
                f"resolution={dict(self.resolution)})")

    def add(self, *, quarantined: bool, violations: Iterable[dict[str, str]], source: str | None,
            resolution: str | None = None, event: str | None = None, ts: float | None = None) -> None:
        """Count one message: its outcome, its violations (the last one dropped it, if quarantined), the
        resolution of a forwarded one and, for a track event, its name."""
        where = "quarantined" if quarantined else "forwarded"
        violations = list(violations)
        for v in violations:
            self.violations[v["code"], source or NO_SOURCE, where] += 1
        if quarantined:
            self.quarantined[violations[-1]["code"] if violations else "malformed"] += 1
        else:
            self.forwarded += 1
            self.resolution[resolution or "unresolved"] += 1
        if ts is not None and (self.latest is None or ts > self.latest):
            self.latest = ts
        if event is not None:
            row = self.events.get(event)
            if row is None:
                if len(self.events) >= self.max_events:
                    event = OTHER_EVENTS
                row = self.events.setdefault(event, _event_row(event))
            _tally(row, where, resolution, quarantined)

    def count(self, msg: Any) -> None:
        """Count one `Message` that has been through the chain."""
        if msg.quarantined or msg.violations:  # a suppressed message is quarantined too
            self._count_other(msg)
            return
        resolution = msg.resolution
        if msg.type == "track" and not msg.object_event:  # the common case, short: a known event row
            event = msg.body.get("event")
            row = self.events.get(event) if event.__class__ is str else None
            if row is None:
                self._count_other(msg)
                return
            row["received"] += 1
            row["forwarded"] += 1
            row["resolution"][resolution] += 1
        self.forwarded += 1
        self.resolution[resolution] += 1
        ts = msg.ts
        if self.latest is None or ts > self.latest:
            self.latest = ts

    def _count_other(self, msg: Any) -> None:
        if msg.suppressed:
            self.suppressed += 1
            return
        event = msg.body.get("event") if msg.type == "track" and not msg.object_event else None
        self.add(quarantined=msg.quarantined, violations=msg.violations, source=msg.source,
                 resolution=msg.resolution, event=event if isinstance(event, str) else None, ts=msg.ts)

    def merge(self, other: Counts) -> None:
        """Add `other`'s counts to these."""
        self.forwarded += other.forwarded
        self.suppressed += other.suppressed
        self.quarantined.update(other.quarantined)
        self.violations.update(other.violations)
        self.resolution.update(other.resolution)
        if other.latest is not None and (self.latest is None or other.latest > self.latest):
            self.latest = other.latest
        for name, row in other.events.items():
            if name not in self.events and len(self.events) >= self.max_events:
                name = OTHER_EVENTS
            mine = self.events.setdefault(name, _event_row(name))
            for key in ("received", "forwarded", "quarantined"):
                mine[key] += row[key]
            for key, n in row["resolution"].items():
                mine["resolution"][key] += n

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state (`from_dict` reads it back)."""
        return {"forwarded": self.forwarded, "suppressed": self.suppressed, "quarantined": dict(self.quarantined),
                "violations": [[*key, n] for key, n in self.violations.items()],
                "resolution": dict(self.resolution), "events": [_copy(row) for row in self.events.values()],
                "latest": self.latest}

    @classmethod
    def from_dict(cls, data: dict[str, Any], max_events: int = MAX_EVENTS) -> Counts:
        counts = cls(max_events)
        if not data:
            return counts
        counts.forwarded = data["forwarded"]
        counts.suppressed = data.get("suppressed", 0)  # absent from state written before it existed
        counts.quarantined = Counter(data["quarantined"])
        counts.violations = Counter({tuple(row[:3]): row[3] for row in data["violations"]})
        counts.resolution = Counter(data["resolution"])
        counts.events = {row["event"]: _copy(row) for row in data["events"]}
        counts.latest = data["latest"]
        return counts

    def summary(self) -> dict[str, Any]:
        """`summary.json`: the totals, every violation code (forwarded or not), the resolution of forwarded ones;
        `suppressed` only when a message was (so a run without `[privacy] suppress_forgotten` keeps its shape)."""
        by_code: Counter[str] = Counter()
        for (code, _, _), n in self.violations.items():
            by_code[code] += n
        totals = {"received": self.received, "forwarded": self.forwarded, "quarantined": sum(self.quarantined.values())}
        if self.suppressed:
            totals["suppressed"] = self.suppressed
        return {**totals, "violations": dict(sorted(by_code.items())),
                "resolution": {r: self.resolution[r] for r in RESOLUTIONS}}

    def event_rows(self) -> list[dict[str, Any]]:
        """Per track event name, most received first."""
        return sorted(self.events.values(), key=lambda r: (-r["received"], r["event"]))

    def violation_rows(self) -> list[dict[str, Any]]:
        """Per (code, source): how many were forwarded (flag/strip) and quarantined, most first."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for (code, source, where), n in self.violations.items():
            rows.setdefault((code, source), {"code": code, "source": source, "forwarded": 0, "quarantined": 0})[where] += n
        return sorted(rows.values(), key=lambda r: (-(r["forwarded"] + r["quarantined"]), r["code"], r["source"]))


def _event_row(event: str) -> dict[str, Any]:
    return {"event": event, "received": 0, "forwarded": 0, "quarantined": 0,
            "resolution": dict.fromkeys(RESOLUTIONS, 0)}


def _copy(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "resolution": dict(row["resolution"])}


def _tally(row: dict[str, Any], where: str, resolution: str | None, quarantined: bool) -> None:
    row["received"] += 1
    row[where] += 1
    if not quarantined:
        row["resolution"][resolution or "unresolved"] += 1
