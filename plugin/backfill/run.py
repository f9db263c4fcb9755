"""The backfill engine: records through the same chain as live traffic, operations out in batches, the position
advanced only past what the sink confirmed.

Records already done by an earlier run (before the checkpoint's position) still go through the chain, so the
store and the rollups are rebuilt exactly, but nothing of theirs is sent or written again.

A batch in flight and the recording of its result are guarded by `Interrupts` (see `interrupts.py`): Ctrl-C or
SIGTERM then takes effect once the position is advanced past the batch and the checkpoint saved.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from groupspec.middleware import Config, Engine, Outcome, open_store
from groupspec.middleware.counts import Counts as MessageCounts
from groupspec.middleware.privacy import Erasure

from ..customerio.mapping import CUSTOMERIO
from ..sender import SendFailed
from .checkpoint import Checkpoint, Position
from .inputs import Record, records
from .interrupts import Interrupts


CHUNK = 1000  # records a store transaction


class Sink(Protocol):
    """Where operations and quarantine records go: files (dry run) or Customer.io."""

    def send(self, ops: list[dict[str, Any]]) -> None: ...  # all handled, or SendFailed with `remaining`

    def quarantine(self, records: list[dict[str, Any]]) -> None: ...

    def erase(self, done: list[Erasure]) -> None: ...  # the files' part of the run's erasures, all records written


@dataclass
class _Mark:
    """A processed record whose operations are queued: done once `end` operations have been handled."""

    position: Position
    start: int
    end: int
    quarantined: list[dict[str, Any]]
    delivered_before: int = 0  # operations of this record an earlier run delivered


@dataclass
class Counts:
    """The messages of this run (the engine's counting model), its operations, and the records skipped."""

    messages: MessageCounts = field(default_factory=MessageCounts)
    operations: int = 0
    skipped: int = 0  # records delivered by an earlier run

    def as_dict(self) -> dict[str, Any]:
        summary = self.messages.summary()
        return {"received": summary["received"], "forwarded": summary["forwarded"],
                "quarantined": summary["quarantined"], "operations": self.operations, "skipped": self.skipped,
                "violations": summary["violations"]}


class Backfill:
    """One backfill of `inputs` into `sink`; `run(start)` returns the counts of what this run handled. `store_url`
    is the command's choice (`[store]` for a run that delivers, memory:// for a dry run); memory:// without one."""

    def __init__(self, config: Config, inputs: list[str], sink: Sink, *, at: float, source: str | None = None,
                 store_url: str | None = None, checkpoint: Checkpoint | None = None, every: int = 1000,
                 progress: Callable[[int], None] = lambda n: None, interrupts: Interrupts | None = None) -> None:
        self.config, self.inputs, self.sink, self.at, self.source = config, inputs, sink, at, source
        self.checkpoint, self.every, self.progress = checkpoint, every, progress
        self.interrupts = interrupts or Interrupts()
        self.batch_size = config.customerio.batch_size
        self.engine = Engine(config, open_store(store_url or config.store_url("offline")), destination=CUSTOMERIO,
                             clock=lambda: at)
        self.counts = Counts()
        self.position = Position()
        self._pending: list[dict[str, Any]] = []
        self._marks: deque[_Mark] = deque()
        self._queued = self._handled = 0  # operations queued and handled since the start of this run
        self._unsaved = 0
        self._erasures: list[Erasure] = []  # `[privacy] erase_on` events of this run: files rewritten at its end

    def run(self, start: Position = Position()) -> Counts:
        self.position = start
        try:
            delivered_before = start.ops
            for here, outcome in self._outcomes():
                if here <= start:
                    self.counts.skipped += here.file < len(self.inputs)
                    continue
                self.counts.messages.merge(outcome.counts)
                ops = outcome.ops[delivered_before:]
                self._erasures += outcome.erasures
                self.counts.operations += len(ops)
                self._queue(here, ops, outcome.quarantined, delivered_before)
                delivered_before = 0
                if len(self._pending) >= self.batch_size or self._unsaved >= self.every:
                    self._send(everything=self._unsaved >= self.every)
            self._send(everything=True)
            if self._erasures:  # every record of the run is written: none of the erased people's stays
                self.sink.erase(self._erasures)
        finally:
            with self.interrupts.recording():
                self._save()
            self.engine.store.close()
        return self.counts

    def _outcomes(self) -> Iterator[tuple[Position, Outcome]]:
        """(position, outcome) of every record, a chunk (one store transaction) at a time, then the final
        flush of pending rollup updates."""
        contract = self.config.contract_for(self.source)
        for index, path in enumerate(self.inputs):
            pending = records(path, contract)
            while chunk := list(islice(pending, CHUNK)):
                with self.engine.transaction():
                    self.engine.prefetch((rec.payload, self.source) for rec in chunk if rec.problem is None)
                    done = [(Position(index, rec.number), self._outcome(path, rec)) for rec in chunk]
                for here, outcome in done:
                    self.progress(1)
                    yield here, outcome
        with self.engine.transaction():
            flushed = self.engine.flush()
        self.engine.compact()  # with [store] retention: once per run, at `--at` (the engine's clock)
        yield Position(len(self.inputs), 1), flushed

    def _outcome(self, path: str, rec: Record) -> Outcome:
        if rec.problem is None:
            return self.engine.process(rec.payload, self.source)
        field_name, reason = rec.problem
        return self.engine.reject(rec.row, self.source, field_name, f"{Path(path).name}:{rec.number}: {reason}")

    def _queue(self, here: Position, ops: list[dict[str, Any]], quarantined: list[dict[str, Any]],
               delivered_before: int) -> None:
        self._pending.extend(ops)
        self._marks.append(_Mark(here, self._queued, self._queued + len(ops), quarantined, delivered_before))
        self._queued += len(ops)
        self._unsaved += 1

    def _send(self, everything: bool) -> None:
        """Send full batches (all that is pending when `everything`), advancing past what was handled; an
        interrupt received meanwhile stops it (KeyboardInterrupt) once the batch's result is recorded."""
        while len(self._pending) >= self.batch_size or (everything and self._pending):
            chunk = self._pending[:self.batch_size]
            with self.interrupts.sending():  # entered before the send, left only once its result is recorded
                try:
                    self.sink.send(chunk)
                except SendFailed as exc:
                    with self.interrupts.recording():
                        self._advance(len(chunk) - len(exc.remaining))
                    raise
                with self.interrupts.recording():
                    self._advance(len(chunk))
            self.interrupts.check()  # the run's `finally` saves the checkpoint on the way out
        with self.interrupts.recording():
            self._advance(0)  # records without operations are done once everything before them is
        self.interrupts.check()

    def _advance(self, handled: int) -> None:
        del self._pending[:handled]
        self._handled += handled
        while self._marks and self._marks[0].end <= self._handled:
            mark = self._marks.popleft()
            if mark.quarantined:
                self.sink.quarantine(mark.quarantined)
            self.position = mark.position
        first = self._marks[0] if self._marks else None
        if first is not None and (first.start < self._handled or first.delivered_before):  # a record partly delivered
            delivered = first.delivered_before + self._handled - first.start
            self.position = Position(self.position.file, self.position.line, delivered)
        if self._unsaved >= self.every:
            self._save()

    def _save(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.save(self.position, self.at)
        self._unsaved = 0
