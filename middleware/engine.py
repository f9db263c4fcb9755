"""The engine: the one road every message takes, whichever door it came in by.

    parse -> resolve -> check contract -> enrich -> map (the destination) -> rollups -> learn

`Engine.process(payload)` returns an `Outcome`: the forwarded messages, the destination's operations, the
quarantine records and the counts. A door (replay, backfill, the service, the SDK hook, `quarantine replay`)
only feeds the engine and writes the outcome where it belongs; it holds no pipeline logic of its own.

Each message is isolated: whatever a step raises for it (serialising it included) quarantines that message alone,
as `store_unavailable` or `internal_error` with the reason, and the rest go on.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from . import contract
from .config import Config, duration_seconds
from .counts import Counts
from .enrich import Attach, annotate
from .fastpath import FlatPath, FlatTail
from .learn import Learn
from .message import TIME_KEYS, Message, normalise, split
from .migrated_ids import MapMigrated
from .prefetch import plan
from .privacy import Erasure, Suppress, keyed_hash
from .quarantine import record
from .resolve import Resolve
from .rollups import Rollups, Update, contributions
from .step import Step, chains, only
from .stores import Store, StoreError
from .stores.migrated import migrated

log = logging.getLogger("groupspec")


class Destination(Protocol):
    """Where operations go: the Customer.io destination (plugin/customerio/mapping.py) is one."""

    def operations(self, msg: Message) -> list[dict[str, Any]]:
        """The operations of a forwarded message (empty when it has none)."""

    def object_update(self, update: Update) -> dict[str, Any]:
        """The operation that sets a group's rollup attributes."""

    def problem(self, op: dict[str, Any], line: bytes | None = None) -> tuple[str, str] | None:
        """(field, reason) when `op` breaks one of the destination's limits; `line` is `op` written out, when
        the caller has it (its size is then not measured again)."""

    # optional: `flat(msg) -> (operations, lines) | None`, the operations of a message the flat path took, checked
    # and written out, when the destination can make them directly (None: `operations` and `problem` decide)


@dataclass
class Outcome:
    """What a payload (or a flush) became. Lines are the serialised forms, made once, inside the guard;
    `op_times` holds, for each operation, the event time of the message it came from (None for a rollup update
    sent when idle). No `Message` is kept: a chunk's messages are garbage as soon as they are collected."""

    forwarded: list[dict[str, Any]] = field(default_factory=list)
    forwarded_lines: list[bytes] = field(default_factory=list)
    forwarded_sources: list[str | None] = field(default_factory=list)  # each forwarded message's source
    ops: list[dict[str, Any]] = field(default_factory=list)
    op_lines: list[bytes] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    counts: Counts = field(default_factory=Counts)
    op_times: list[float | None] = field(default_factory=list)
    erasures: list[Erasure] = field(default_factory=list)  # people the store forgot (`[privacy] erase_on`)

    def extend(self, other: Outcome) -> None:
        self.forwarded += other.forwarded
        self.forwarded_lines += other.forwarded_lines
        self.forwarded_sources += other.forwarded_sources
        self.ops += other.ops
        self.op_lines += other.op_lines
        self.quarantined += other.quarantined
        self.counts.merge(other.counts)
        self.op_times += other.op_times
        self.erasures += other.erasures


def _misdated(msg: Message) -> bool:
    """A message whose own time cannot move stream time (dated in the future, or an unreadable time)."""
    return any(v["code"] == "future_timestamp" or (v["code"] == "malformed" and v["field"] in TIME_KEYS)
               for v in msg.violations)


def encode(msg: Message) -> Message:
    """Serialise the forwarded message and its operations once, before the store learns from it (the mapping's
    lines, written when their size was checked, are kept): a message that cannot be written out is quarantined
    and teaches nothing."""
    try:
        msg.line = orjson.dumps(msg.body)
        done = len(msg.op_lines)
        msg.op_lines = [*msg.op_lines, *map(orjson.dumps, msg.ops[done:])] if done < len(msg.ops) else msg.op_lines
    except (TypeError, orjson.JSONEncodeError) as exc:
        msg.drop("malformed", "", f"cannot be serialised: {exc}")
    return msg


class TimedTaskFailed(Exception):
    """A task scheduled with `Engine.at` failed: the door stops with its cause (never a quarantined message)."""


def trait_owners(config: Config) -> dict[str, str]:
    """Trait name -> the source that owns it, in any contract of `config` (the base contract's first)."""
    owners: dict[str, str] = {}
    for name in (None, *config.sources):
        for trait, rule in config.contract_for(name).group_traits.items():
            if rule.owner is not None:
                owners.setdefault(trait, rule.owner)
    return owners


def _writable(value: Any) -> bool:
    try:
        orjson.dumps(value)
        return True
    except TypeError:  # orjson.JSONEncodeError
        return False


class Engine:
    """One configured chain over a store. `destination` maps forwarded messages to operations; `steps` are
    the door's own (e.g. the SDK user's `after` callables), run before the mapping; `learn` replaces the last
    step (the SDK hook learns only once the SDK has taken the message). `hasher` is what the store keeps of
    message keys (`privacy.keyed_hash`: `[privacy] key`, else the store's own). `clock` gives the time of
    messages without one and of quarantine records; None means stream time, the latest message time seen so
    far, so that an offline run reads no wall clock and repeats its outputs exactly."""

    def __init__(self, config: Config, store: Store, *, destination: Destination | None = None,
                 steps: Iterable[Step] = (), learn: Step | None = None,
                 clock: Callable[[], float] | None = time.time) -> None:
        self.config = config
        self.store = store = migrated(store, trait_owners(config))  # read through its group id migrations
        self.clock = clock
        self.stream_time = 0.0
        self.destination = destination
        self.rollups = Rollups(store, config)
        self.hasher = keyed_hash(config, store)
        mapping: list[Step] = [] if destination is None else [self._map, self._roll_up]
        suppress: list[Step] = [Suppress(store, self.hasher)] if config.privacy.suppress_forgotten else []
        resolve, attach = Resolve(store, self.hasher), Attach(store)
        front: list[Step] = [*suppress, contract.check_time, resolve, MapMigrated(store), *contract.checks(store),
                             attach]
        self.tail: list[Step] = [annotate, *steps, *mapping, encode, learn or Learn(store, config.privacy, self.hasher)]
        self.steps: list[Step] = [*front, *self.tail]
        # the front, flat, for a message that breaks no rule (not under `suppress_forgotten`: its step is first)
        self.flat = None if suppress else FlatPath(resolve, attach)
        # the tail, flat, after the flat front (the chain's tail when the door adds steps of its own)
        self.flat_tail = None if steps or destination is None else FlatTail(
            self._map, self._roll_up, encode, self.tail[-1], self._failed, getattr(destination, "flat", None))
        self._timed: list[tuple[float, int, Callable[[], list[dict[str, Any]]]]] = []  # (when, order, task)
        self._timed_ops: list[dict[str, Any]] = []  # what due tasks sent, before the next message's operations
        self._chains: dict[int, dict[str, list[Step]]] = {}  # id(contract) -> chains
        self._tails: dict[int, dict[str, list[Step]]] = {}  # id(contract) -> the chains' tails (after the front)
        self._failures: set[tuple[str, type]] = set()
        self.retention = config.retention_seconds
        self.compact_every = duration_seconds(config.store.compact_every) if config.store else 0
        self._compacted = float("-inf")  # engine time of the last compaction

    def now(self) -> float:
        """The engine's time: the clock, or stream time (an offline run)."""
        return self.stream_time if self.clock is None else self.clock()

    def compact(self, *, force: bool = False) -> dict[str, int] | None:
        """With `[store] retention`, compact the store up to ``now - retention`` when `compact_every` has passed
        since the last time (or `force`); the records removed by kind, None when it did not run. Doors call it
        between chunks, outside a chunk's transaction."""
        now = self.now()
        if self.retention is None or (not force and now < self._compacted + self.compact_every):
            return None
        self._compacted = now
        return self.store.compact(now - self.retention)

    def transaction(self) -> AbstractContextManager[None]:
        """Group the store writes of many payloads into one commit (one per chunk, in every door). The migration
        map is refreshed first when the store's migration counter moved (a store that does not answer keeps the
        map: each message then meets the store's error itself)."""
        try:
            self.store.refresh()
        except StoreError:
            pass
        return self.store.transaction()

    def prefetch(self, payloads: Iterable[tuple[Any, str | None]], *, authenticated: bool = False) -> None:
        """Before a chunk's `process` calls, inside its `transaction()`: tell the store what the chunk's messages
        (``(payload, source)`` pairs) will look up (`prefetch.py`), so a store that talks to a server reads it at
        once (a store that does not prefetch costs nothing here). A hint: no outcome depends on it."""
        if not getattr(self.store, "prefetches", False):
            return
        try:
            self.store.prefetch(*plan(self.config, self.hasher, payloads, authenticated))
        except StoreError:
            pass  # each message meets the store's error itself

    def at(self, when: float, task: Callable[[], list[dict[str, Any]]]) -> None:
        """Run `task` once, when the stream reaches time `when` (before the first message dated at or after it, else
        at `flush`); the destination operations it returns go out before that message's (an offline door:
        `groupspec replay --migrations`). What it raises stops the door as `TimedTaskFailed`."""
        heapq.heappush(self._timed, (when, len(self._timed), task))

    def _run_timed(self, now: float) -> None:
        while self._timed and self._timed[0][0] <= now:
            task = heapq.heappop(self._timed)[2]
            try:
                self._timed_ops += task()
            except Exception as exc:
                raise TimedTaskFailed(str(exc)) from exc

    def process(self, payload: bytes | str | dict[str, Any], source: str | None = None, *,
                kind: str | None = None, received_at: float | None = None, receipt: bool = True,
                into: Outcome | None = None, authenticated: bool = False) -> Outcome:
        """Run every message `payload` holds through the chain; add what they became to `into` (a new
        `Outcome` by default) and return it. `kind` is the type a single-type endpoint gives a message that
        has none; `received_at` overrides the clock (the time a spooled request was accepted). `receipt=False`:
        `received_at` is only the time of a message that carries none (a quarantine record's, from a door that
        had no receipt), not a collector's receipt to correct clock skew and check future dates against.
        `authenticated`: `source` is the one a request authenticated as (the service), which a message's
        `writeKey` never changes; otherwise a known `writeKey` selects its source (a recorded stream)."""
        out = Outcome() if into is None else into
        for msg in self.run(payload, source, kind=kind, received_at=received_at, receipt=receipt,
                            authenticated=authenticated):
            self._collect(msg, out)
        return out

    def run(self, payload: bytes | str | dict[str, Any], source: str | None = None, *,
            kind: str | None = None, received_at: float | None = None, receipt: bool = True,
            authenticated: bool = False) -> list[Message]:
        """The messages of `payload`, each taken through the chain (forwarded or quarantined)."""
        given = received_at is not None
        received = given and receipt  # a collector's receipt time: clock skew can be corrected
        if received_at is None:
            received_at = self.stream_time if self.clock is None else self.clock()
        out = []
        for original, body, error, envelope in split(payload, batch=kind is None):  # single-type endpoint: one message
            msg = Message(original, dict(body) if body is not None else None, source, received_at)
            if kind is not None:
                msg.endpoint_type = kind
            if envelope is not None:
                msg.envelope = envelope
            if received:
                msg.receipt = True
            if body is not None:
                if kind is not None and body.get("type") is None:
                    msg.body["type"] = kind
                if not authenticated and isinstance(body.get("writeKey"), str):
                    msg.source = self.config.source_for_key(body["writeKey"]) or source
            msg.contract = self.config.contract_for(msg.source)
            msg.live = self.clock is not None or received
            if self.retention is not None:  # never before what the last compaction kept
                msg.horizon = self.now() - self.retention
            if error is not None:
                msg.drop("malformed", "", error)
            else:
                self.through(msg, received)
            # stream time: this message's own time included, unless that time is itself wrong
            if self.clock is None and (not msg.violations or not _misdated(msg)):
                self.stream_time = max(self.stream_time, msg.ts)
                if msg.quarantined and not given:  # a given time stays the record's: a replay reads it
                    msg.received_at = self.stream_time
            out.append(msg)
        return out

    def reject(self, original: Any, source: str | None, field: str, reason: str) -> Outcome:
        """The outcome of something a door could not even make a payload of (e.g. an unreadable CSV row):
        quarantined as `malformed` with the reason, and counted."""
        msg = Message(original, None, source, self.stream_time if self.clock is None else self.clock())
        msg.drop("malformed", field, reason)
        out = Outcome()
        self._collect(msg, out)
        return out

    def due(self, until: float) -> Outcome:
        """The rollup updates due by `until` (a long-running door calls it with the wall clock when idle)."""
        out = Outcome()
        if self.destination is not None:
            for update in self.rollups.due(until):
                self._add_op(self.destination.object_update(update), out)
        return out

    def flush(self) -> Outcome:
        """The tasks not yet run (`at`), then every pending rollup update (the end of a replay or a backfill)."""
        self._run_timed(float("inf"))
        out = Outcome()
        self._timed_out(out)
        out.extend(self.due(float("inf")))
        return out

    def _timed_out(self, out: Outcome) -> None:
        for op in self._timed_ops:
            self._add_op(op, out)
        self._timed_ops = []

    def _collect(self, msg: Message, out: Outcome) -> None:
        if self._timed_ops:
            self._timed_out(out)
        if msg.suppressed:
            pass  # a forgotten person's: counted, written nowhere
        elif msg.quarantined:
            out.quarantined.append(record(msg))
        else:
            out.forwarded.append(msg.body)
            out.forwarded_lines.append(msg.line)
            out.forwarded_sources.append(msg.source)
            if msg.ops:
                out.ops += msg.ops
                out.op_lines += msg.op_lines
                out.op_times += [msg.ts] * len(msg.ops)
            if msg.erasure is not None:
                out.erasures.append(msg.erasure)
        out.counts.count(msg)

    def _add_op(self, op: dict[str, Any], out: Outcome) -> None:
        try:
            line = orjson.dumps(op)
        except (TypeError, orjson.JSONEncodeError) as exc:  # rollup values come from events already written
            log.error("a rollup update cannot be serialised: %s", exc)
            return
        out.ops.append(op)
        out.op_lines.append(line)
        out.op_times.append(None)

    def through(self, msg: Message, received: bool = False) -> None:
        """Take one `Message` (not yet normalised) through the chain. `run` does this for every message of a
        payload after the input limits; a door with limits of its own (the SDK hook) calls it directly.

        The flat path (`fastpath.py`) takes the front of the chain first; when it declines, `msg` is as it came
        and the whole chain takes it. Either way the chain's tail (`self.tail`) finishes it."""
        saved = msg.__dict__.copy()
        try:
            if not self._timed and self.flat is not None and self.flat.take(msg):  # a pending task (a migration) first: the chain
                if self.flat_tail is not None:
                    self.flat_tail.finish(msg)
                    return
                tails = self._tails.get(id(msg.contract))
                if tails is None:
                    tails = self._tails[id(msg.contract)] = chains(self.tail, msg.contract)
                self._steps(msg, tails[msg.type])
                return
        except StoreError as exc:  # where the chain's own read would have failed: the same outcome
            msg.drop("store_unavailable", "", str(exc))
            return
        except Exception:  # the chain finds what is wrong, and says so
            pass
        msg.__dict__.clear()
        msg.__dict__.update(saved)
        try:
            normalise(msg, received)
        except Exception as exc:
            self._failed(msg, normalise, exc)
            return
        if msg.quarantined:
            return
        if self._timed:  # what a task raises stops the door (`TimedTaskFailed`)
            self._run_timed(max(self.stream_time, msg.ts))
        by_type = self._chains.get(id(msg.contract))
        if by_type is None:
            by_type = self._chains[id(msg.contract)] = chains(self.steps, msg.contract)
        self._steps(msg, by_type[msg.type])

    def _steps(self, msg: Message, steps: list[Step]) -> None:
        """Run `steps` on `msg` until one quarantines it; what a step raises quarantines the message alone."""
        step = None
        try:
            for step in steps:
                step(msg)
                if msg.quarantined:
                    return
        except Exception as exc:
            self._failed(msg, step, exc)

    def _failed(self, msg: Message, step: Step, exc: Exception) -> None:
        if isinstance(exc, StoreError):
            msg.drop("store_unavailable", "", str(exc))
            return
        # a bug must not lose the message: quarantine it with the reason
        name = getattr(step, "__name__", type(step).__name__)
        if (name, type(exc)) not in self._failures:  # the traceback once per kind; every record has the reason
            self._failures.add((name, type(exc)))
            log.error("groupspec step %s failed; messages it fails on are quarantined", name, exc_info=exc)
        msg.drop("internal_error", name, f"{type(exc).__name__}: {exc}")

    def _map(self, msg: Message) -> Message:
        """The destination's operations, each written out once (`encode` keeps the lines); a message whose
        operation breaks a limit is quarantined."""
        ops = msg.ops = self.destination.operations(msg)
        lines = []
        for op in ops:
            try:
                line = orjson.dumps(op)
            except TypeError:  # orjson.JSONEncodeError: the limits are checked first, as they were without it
                line = None
            try:
                problem = self.destination.problem(op, line)
            except TypeError as exc:  # measuring the operation writes it out: it may not be writable
                if _writable(op):
                    raise
                return msg.drop("malformed", "", f"cannot be serialised: {exc}")
            if problem is not None:
                return msg.drop("customerio_limit", problem[0], problem[1])
            lines.append(line)
        msg.op_lines = lines
        return msg

    @only(when=lambda c: bool(c.rollups))
    def _roll_up(self, msg: Message) -> Message:
        """Record a member's event for its group's rollups; append the object updates due by its time."""
        values = contributions(msg)
        if values:
            problem = self.destination.problem(self.destination.object_update((msg.group_type(), msg.group_id, values)))
            if problem is not None:  # e.g. a `properties.NAME` value over 1000 bytes: the event's own fault
                return msg.drop("customerio_limit", "rollups." + problem[0], problem[1])
            self.rollups.record(msg, values)
        updates = self.rollups.due(msg.ts)
        if updates:
            msg.ops = [*msg.ops, *map(self.destination.object_update, updates)]
        return msg
