"""The numbers of the coverage report, from a replay output folder (or a service's `report.json`).

`collect(outdir, config)` reads `forwarded.jsonl` and `quarantine.jsonl` once each and returns a `Coverage`.
Times are relative to the latest message time in the data, never the wall clock, so a report is reproducible.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware.config import Config, ConfigError, Contract, duration_seconds
from groupspec.middleware.counts import RESOLUTIONS, Counts
from groupspec.middleware.events import STORE_EVENTS
from groupspec.middleware.jsonl import read_lines
from groupspec.middleware.message import TIME_KEYS, parse_time
from groupspec.middleware.quarantine import iso
from pydantic import BaseModel, ConfigDict, Field

from .id_changes import id_changes

#: how many people without a group and stale groups a report lists by name (the counts are always whole)
EXAMPLES = 50
#: the event table's column of each resolution: a track's explicit group is its `context.groupId`
#: (`summary.json`'s `resolution.explicit` counts group calls too, so the report does not call it that)
COLUMNS = {"explicit": "context.groupId", "property": "property", "membership": "membership",
           "unresolved": "unresolved"}


class ReportError(Exception):
    """Report input that cannot be read: a corrupt output folder or an unexpected service answer."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class EventRow(_Model):
    """One track event name: how many arrived, were forwarded or quarantined, and how their group resolved."""

    event: str
    received: int = 0
    forwarded: int = 0
    quarantined: int = 0
    resolution: dict[str, int] = Field(default_factory=lambda: dict.fromkeys(RESOLUTIONS, 0))

    @property
    def with_group(self) -> int:
        return self.forwarded - self.resolution.get("unresolved", 0)

    @property
    def share(self) -> float | None:
        """Share of forwarded events that carry a group (None when none was forwarded)."""
        return self.with_group / self.forwarded if self.forwarded else None


class ViolationRow(_Model):
    code: str
    source: str
    forwarded: int = 0  # flagged or stripped, then forwarded
    quarantined: int = 0


class People(_Model):
    total: int = 0
    without_group: int = 0
    examples: list[str] = Field(default_factory=list)


class StaleGroup(_Model):
    object_type_id: str
    group_id: str
    last_update: str
    age_seconds: int


class Groups(_Model):
    total: int = 0
    freshness: str | None = None
    stale_count: int = 0
    stale: list[StaleGroup] = Field(default_factory=list)  # oldest first, at most EXAMPLES


class IdChange(_Model):
    """A likely group id change nobody migrated (`id_changes.py`)."""

    object_type_id: str
    old_id: str
    new_id: str
    members: int
    first_move: str
    last_move: str


class Coverage(_Model):
    """The whole report; also the JSON shape a service's `GET /report.json` returns."""

    origin: str
    contract: str | None = None
    as_of: str | None = None
    received: int = 0
    forwarded: int = 0
    quarantined: int = 0
    events: list[EventRow] = Field(default_factory=list)
    violations: list[ViolationRow] = Field(default_factory=list)
    people: People | None = None  # None: the origin does not track people (a service's counters)
    groups: Groups | None = None
    id_changes: list[IdChange] | None = None  # None: the origin does not track joins (a service's counters)


class _Identities:
    """People as connected identities: an anonymousId and a userId seen together (or an alias) are one person."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.grouped: set[str] = set()

    def find(self, key: str) -> str:
        parent = self.parent
        root = parent.setdefault(key, key)
        while parent[root] != root:
            root = parent[root]
        while parent[key] != root:  # path compression
            parent[key], key = root, parent[key]
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if rb.startswith("a:") and ra.startswith("u:"):
                ra, rb = rb, ra
            self.parent[ra] = rb  # a userId is the better name for a person

    def people(self) -> People:
        roots = {key: self.find(key) for key in self.parent}
        grouped = {roots[key] for key in self.grouped}
        alone = sorted(root[2:] for root in set(roots.values()) - grouped)
        return People(total=len(set(roots.values())), without_group=len(alone), examples=alone[:EXAMPLES])


def message_time(body: dict[str, Any]) -> float | None:
    for key in TIME_KEYS:
        if body.get(key) is not None:
            return parse_time(body[key])
    return None


def _activity(kind: Any, event: Any) -> str | None:
    """The event name a track message counts under (None: not a person's activity)."""
    if str(kind).lower() == "track" and isinstance(event, str) and event.strip() and event not in STORE_EVENTS:
        return event
    return None


class _Collector:
    """Messages and quarantine records in, the counts (`Counts`, as every door counts) plus people and groups."""

    def __init__(self, config: Config | None) -> None:
        self.config = config
        self.counts = Counts(max_events=1_000_000)  # a report lists every event name it reads
        self.identities = _Identities()
        self.groups: dict[tuple[str, str], float | None] = {}
        self.deleted: dict[tuple[str, str], float] = {}  # group -> when an `Object Deleted` ended it
        self.versions: Counter[str] = Counter()
        self.joins: list[tuple[str, str, str, float]] = []  # (person key, type, group, time) of group calls
        self.migrated: set[str] = set()  # group ids messages were mapped from (`migrated_from`): migrated already

    def _source(self, body: dict[str, Any]) -> str | None:
        key = body.get("writeKey")
        if self.config is None or not isinstance(key, str):
            return None
        return self.config.source_for_key(key)

    def _contract(self, source: str | None) -> Contract:
        return self.config.contract_for(source) if self.config is not None else Contract()

    def forwarded(self, body: dict[str, Any]) -> None:
        ts = message_time(body)
        source = self._source(body)
        context = body.get("context") or {}
        info = context.get("groupspec") or {}
        self.versions[str(info.get("contract"))] += 1
        self.counts.add(quarantined=False, violations=_violations(info), source=source,
                        resolution=info.get("resolution", "unresolved"),
                        event=_activity(body.get("type"), body.get("event")), ts=ts)
        kind, user, anon = body.get("type"), body.get("userId"), body.get("anonymousId")
        keys = [key for key in (f"u:{user}" if user else None, f"a:{anon}" if anon else None) if key]
        for key in keys:
            self.identities.find(key)
        if len(keys) == 2:
            self.identities.union(*keys)
        if kind == "alias" and body.get("previousId") and user:  # previousId may be either kind of id
            for prefix in ("u:", "a:"):
                self.identities.union(f"{prefix}{body['previousId']}", f"u:{user}")
        if kind == "group" or context.get("groupId") or context.get("groups"):
            self.identities.grouped.update(keys)
        if kind == "group":
            traits = body.get("traits") or {}
            type_id = traits.get("objectTypeId", traits.get("object_type_id"))
            key = (str(type_id or self._contract(source).default_object_type_id), str(body.get("groupId")))
            previous = self.groups.get(key)
            self.groups[key] = ts if previous is None or (ts is not None and ts > previous) else previous
            if keys and ts is not None:
                self.joins.append((keys[0], *key, ts))
        if info.get("migrated_from"):
            self.migrated.add(str(info["migrated_from"]))
        elif kind == "track" and body.get("event") == "Object Deleted":
            props = body.get("properties") or {}
            type_id = props.get("objectTypeId") or self._contract(source).default_object_type_id
            key = (str(type_id), str(props.get("objectId")))
            self.deleted[key] = max(ts or 0.0, self.deleted.get(key, 0.0))

    def quarantined(self, record: dict[str, Any]) -> None:
        message = record.get("message")
        event = _activity(message.get("type", ""), message.get("event")) if isinstance(message, dict) else None
        self.counts.add(quarantined=True, violations=_violations(record), source=record.get("source"),
                        event=event, ts=parse_time(record.get("received_at")))

    def coverage(self, origin: str) -> Coverage:
        counts = self.counts
        summary = counts.summary()
        return Coverage(
            origin=origin,
            contract=self._version(),
            as_of=iso(counts.latest) if counts.latest is not None else None,
            received=summary["received"],
            forwarded=summary["forwarded"],
            quarantined=summary["quarantined"],
            events=[EventRow(**row) for row in counts.event_rows()],
            violations=[ViolationRow(**row) for row in counts.violation_rows()],
            people=self.identities.people(),
            groups=self._groups(),
            id_changes=self._id_changes(),
        )

    def _id_changes(self) -> list[IdChange]:
        window = duration_seconds((self.config.contract if self.config else Contract()).id_change_window)
        found = id_changes(self.joins, window, self.identities.find, self.migrated)
        return [IdChange(object_type_id=t, old_id=old, new_id=new, members=n, first_move=iso(first),
                         last_move=iso(last)) for t, old, new, n, first, last in found]

    def _version(self) -> str | None:
        if self.config is not None:
            return self.config.contract.version
        return self.versions.most_common(1)[0][0] if self.versions else None

    def _groups(self) -> Groups:
        live = {key: ts for key, ts in self.groups.items()  # a group created again after its deletion lives
                if key not in self.deleted or (ts is not None and ts > self.deleted[key])}
        freshness = self.config.contract.freshness if self.config else None
        if freshness is None or self.counts.latest is None:
            return Groups(total=len(live), freshness=freshness)
        window, now = duration_seconds(freshness), self.counts.latest
        stale = sorted((ts, key) for key, ts in live.items() if ts is not None and now - ts > window)
        return Groups(total=len(live), freshness=freshness, stale_count=len(stale), stale=[
            StaleGroup(object_type_id=type_id, group_id=group_id, last_update=iso(ts), age_seconds=int(now - ts))
            for ts, (type_id, group_id) in stale[:EXAMPLES]])


def _violations(holder: dict[str, Any]) -> list[dict[str, str]]:
    return [{"code": v.get("code", "?")} for v in holder.get("violations") or () if isinstance(v, dict)]


def _records(path: Path):
    if not path.exists():
        return
    for number, line in enumerate(read_lines(path), 1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ReportError(f"{path}:{number}: not valid JSON") from None
        if not isinstance(value, dict):
            raise ReportError(f"{path}:{number}: expected a JSON object")
        yield value


def collect(outdir: str | Path, config: Config | None = None) -> Coverage:
    """The coverage of a replay output folder; `config` names sources and sets the freshness window."""
    outdir = Path(outdir)
    if not (outdir / "forwarded.jsonl").is_file():
        raise ConfigError(f"{outdir}: no forwarded.jsonl here (expected a replay output folder)")
    collector = _Collector(config)
    for body in _records(outdir / "forwarded.jsonl"):
        collector.forwarded(body)
    for record in _records(outdir / "quarantine.jsonl"):
        collector.quarantined(record)
    return collector.coverage(str(outdir))
