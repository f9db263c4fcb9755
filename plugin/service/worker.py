"""The delivery worker: takes spooled requests in order, runs them through the chain, writes quarantine
records, delivers the Customer.io operations and forwards the enriched messages upstream, and only then removes
them from the spool. After a crash the spool still holds whatever was not done: at-least-once, in order.
It runs in the delivery process (`child.py`); its counters and problem reach the service through the spool."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from groupspec.middleware import Pipeline
from groupspec.middleware.quarantine import QuarantineFile

from ..customerio.delivery import Delivery
from ..customerio.rollups import RollupUpdates, object_update
from ..sender import SendFailed, SendReport, Unauthorized
from .metrics import Metrics
from .spool import Entry, SpoolQueue
from .upstream import Upstream

log = logging.getLogger("groupspec.worker")

MAX_PAUSE = 60.0  # seconds between attempts while Customer.io or the upstream keeps failing


class SpoolClock:
    """The chain's notion of 'now': the time the request being processed was accepted."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Work:
    """What a run of spooled entries still has to deliver."""

    ops: list[dict[str, Any]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)


class Worker:
    """One ordered worker (per-person order needs no more). `problem` says why delivery is stalled, if it is.
    `run()` goes on until `stopping` is set; `wake` cuts an idle wait short when new entries arrive."""

    def __init__(self, spool: SpoolQueue, pipeline: Pipeline, clock: SpoolClock, rollups: RollupUpdates | None,
                 metrics: Metrics, quarantine: QuarantineFile, delivery: Delivery | None,
                 upstream: Upstream | None, *, stopping: threading.Event | None = None, chunk: int = 2000,
                 wall: Callable[[], float] = time.time) -> None:
        self.spool = spool
        self.pipeline = pipeline
        self.clock = clock
        self.rollups = rollups
        self.metrics = metrics
        self.quarantine = quarantine
        self.delivery = delivery
        self.upstream = upstream
        self.chunk = chunk
        self.wall = wall
        self.wake = threading.Event()
        self.stopping = stopping or threading.Event()
        self.problem: str | None = None
        self._after = 0
        state = spool.state()  # a previous delivery process of this service counted so far
        self.metrics.restore(state.get("metrics", {}))
        self._done = state.get("done", 0)

    def state(self) -> dict[str, Any]:
        """What the service shows of this worker: messages done, the problem, the counters."""
        return {"done": self._done, "problem": self.problem, "metrics": self.metrics.snapshot()}

    def run(self) -> None:
        self.spool.publish(self.state())  # a problem a previous process recorded is its own
        while not self.stopping.is_set():
            try:
                self.wake.clear()
                entries = self.spool.take(self._after, self.chunk)
                if not entries:
                    self._idle()
                    self.wake.wait(1.0)
                    continue
                work = self.process(entries)
                if not self.deliver(work):
                    return  # stopping: the entries stay in the spool for the next start
                now = self.wall()
                for entry in entries:
                    self.metrics.latency.observe(now - entry.received_at)
                count = sum(entry.messages for entry in entries)
                self._done += count
                try:
                    self.spool.done(entries, self.state())
                except Exception:
                    self._done -= count
                    raise
                self._after = entries[-1].seq
            except Exception:  # a bug or a broken spool: say so, keep the entries, try again shortly
                log.exception("delivery worker failed; retrying")
                self.problem = "the delivery worker failed; see the logs"
                self._publish()
                self.stopping.wait(1.0)

    def process(self, entries: list[Entry]) -> Work:
        """Run the entries through the chain; quarantine what is dropped, collect ops and forwarded bodies."""
        work = Work()
        with self.pipeline.store.transaction():  # one store commit per chunk
            self._run(entries, work)
        if self.delivery is None:
            work.ops = []
        if self.upstream is None:
            work.bodies = []
        return work

    def _run(self, entries: list[Entry], work: Work) -> None:
        for entry in entries:
            self.clock.now = entry.received_at
            payload: Any = entry.payload
            if entry.kind is not None:  # a single-type endpoint: the path gives the type the body lacks
                payload = orjson.loads(payload)
                if payload.get("type") is None:
                    payload["type"] = entry.kind
            for msg in self.pipeline.run(payload, entry.source):
                self.metrics.processed(msg)
                if msg.quarantined:
                    self.quarantine.add(msg)
                else:
                    work.ops.extend(msg.ops)
                    work.bodies.append(msg.body)

    def deliver(self, work: Work) -> bool:
        """Deliver until nothing is left (True) or the worker is stopping (False); failures pause and retry."""
        failures = 0
        while work.ops or work.bodies:
            if self.stopping.is_set():
                return False
            try:
                if work.ops:
                    self._send_ops(work)
                if work.bodies:
                    self._forward(work)
                self.problem = None
            except SendFailed as exc:
                failures += 1
                unauthorized = isinstance(exc, Unauthorized)
                self.problem = str(exc) if unauthorized else None
                pause = min(MAX_PAUSE, 2.0 ** min(failures, 6))
                log.error("delivery stalled; retrying", extra={"error": str(exc), "pause": pause,
                                                               "waiting": len(work.ops) + len(work.bodies)})
                self._publish()
                self.stopping.wait(pause)
        return True

    def _publish(self) -> None:
        """Record the state between chunks; a spool that cannot take it only delays what the service shows."""
        try:
            self.spool.publish(self.state())
        except Exception as exc:
            log.error("cannot record the worker state", extra={"error": str(exc)})

    def _send_ops(self, work: Work) -> None:
        try:
            report = self.delivery.send(work.ops)
        except SendFailed as exc:
            self._count(exc.report)
            work.ops = exc.remaining
            raise
        self._count(report)
        work.ops = []

    def _count(self, report: SendReport) -> None:
        m = self.metrics
        m.delivered += report.delivered
        m.dead_lettered += report.dead_lettered
        m.retries += report.retries
        m.cio_requests += report.requests

    def _forward(self, work: Work) -> None:
        try:
            report = self.upstream.send(work.bodies)
        except SendFailed as exc:
            self._count_upstream(exc.report)
            work.bodies = exc.remaining
            raise
        self._count_upstream(report)
        work.bodies = []

    def _count_upstream(self, report: SendReport) -> None:
        m = self.metrics
        m.upstream_forwarded += report.delivered
        m.upstream_dead_lettered += report.dead_lettered
        m.upstream_retries += report.retries

    def _idle(self) -> None:
        """With nothing spooled, send the rollup updates that fell due by the wall clock."""
        contract = self.pipeline.config.contract
        if self.rollups is None or not contract.rollups or self.delivery is None:
            return
        ops = [object_update(update) for update in self.rollups.rollups.due(contract, self.wall())]
        if ops:
            self.deliver(Work(ops=ops))
            self._publish()
