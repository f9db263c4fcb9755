"""The delivery worker: feeds spooled requests to the engine a chunk at a time, delivers the outcome (Customer.io
operations, then the enriched messages upstream), and only then commits the chunk's effects together: its
quarantine records, its counts and the removal of its requests from the spool. After a crash the spool still
holds whatever was not committed: at-least-once delivery, in order, and every effect counted once.

The quarantine file is appended before that commit, and the commit records the file's size; a restart cuts off
what an uncommitted chunk appended, so a chunk re-run after a crash cannot leave its records twice.
It runs in the delivery process (`child.py`); its state reaches the service through the spool.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from groupspec.middleware import Engine, Outcome
from groupspec.middleware.counts import Counts
from groupspec.middleware.errors import StoreError
from groupspec.middleware.jsonl import JsonlFile, locked
from groupspec.middleware.privacy import Erasure

from ..customerio.delivery import Delivery
from ..sender import SendFailed, SendHeld, SendReport, Unauthorized
from ..sender.ratelimit import LimitUnavailable
from .freshness import group_op_times
from .metrics import DeliveryStats
from ..spool import Entry, SpoolQueue
from ..sender.upstream import Upstream

log = logging.getLogger("groupspec.worker")

MAX_PAUSE = 60.0  # seconds between attempts while Customer.io or the upstream keeps failing


class Worker:
    """One ordered worker (per-person order needs no more). `problem` says why delivery is stalled, if it is.
    `run()` goes on until `stopping` is set; `wake` cuts an idle wait short when new entries arrive."""

    def __init__(self, spool: SpoolQueue, engine: Engine, quarantine: JsonlFile, delivery: Delivery | None,
                 upstream: Upstream | None, *, stopping: threading.Event | None = None, chunk: int = 2000,
                 wall: Callable[[], float] = time.time,
                 erase: Callable[[list[Erasure]], None] | None = None) -> None:
        self.spool = spool
        self.engine = engine
        self.quarantine = quarantine
        self.delivery = delivery
        self.upstream = upstream
        self.chunk = chunk
        self.wall = wall
        self.erase = erase  # the files' part of an `[privacy] erase_on` event's erasure
        self.wake = threading.Event()
        self.stopping = stopping or threading.Event()
        self.problem: str | None = None
        self.store_problem: str | None = None  # the store did not answer for the last chunk or idle round
        self.store_size: dict[str, int] = {}  # records held by kind, as of the last compaction
        self._after = 0
        state = spool.state()  # what a previous delivery process of this service committed
        self.counts = Counts.from_dict(state.get("counts", {}))
        self.stats = DeliveryStats.from_dict(state.get("delivery", {}))
        self._done = state.get("done", 0)
        self._quarantine_size = _cut_to(self.quarantine.path, state.get("quarantine"))

    def state(self) -> dict[str, Any]:
        """What the service shows of this worker: messages done, the problem, the committed counts."""
        return {"done": self._done, "problem": self.problem, "store": self.store_problem,
                "store_size": self.store_size,
                "counts": self.counts.to_dict(),
                "delivery": self.stats.to_dict(), "quarantine": self._quarantine_size,
                "throttled": self._throttled()}

    def run(self) -> None:
        self._publish()  # a problem a previous process recorded is its own
        while not self.stopping.is_set():
            try:
                self.wake.clear()
                with self.spool.delivering():  # an erasure waits for this chunk, and this chunk for it
                    entries = self.spool.take(self._after, self.chunk)
                    if entries:
                        outcome = self.process(entries)
                        self._store_answered(_store_error(outcome))
                        if not self.deliver(outcome):
                            return  # stopping: the entries stay in the spool for the next start
                        self._commit(entries, outcome)
                        self._after = entries[-1].seq
                if not entries:
                    self._idle()
                    self.wake.wait(1.0)
                    continue
                self._erase(outcome)
                self._compact()
            except Exception:  # a bug or a broken spool: say so, keep the entries, try again shortly
                log.exception("delivery worker failed; retrying")
                self.problem = "the delivery worker failed; see the logs"
                self._publish()
                self.stopping.wait(1.0)

    def process(self, entries: list[Entry]) -> Outcome:
        """Feed the entries to the engine, one store transaction for the chunk."""
        outcome = Outcome()
        with self.engine.transaction():
            self.engine.prefetch(((entry.payload, entry.source) for entry in entries), authenticated=True)
            for entry in entries:
                self.engine.process(entry.payload, entry.source, kind=entry.kind, received_at=entry.received_at,
                                    into=outcome, authenticated=True)
        return outcome

    def _commit(self, entries: list[Entry], outcome: Outcome) -> None:
        """The chunk's effects, once: quarantine records appended, then counts and spool removal committed with
        the quarantine file's new size."""
        size = self._quarantine_size
        if outcome.quarantined:
            size = self.quarantine.extend(outcome.quarantined)
        now = self.wall()
        counts, stats, done = self._copies()
        counts.merge(outcome.counts)
        for entry in entries:
            stats.observe(now - entry.received_at)
        previous = self.counts, self.stats, self._done, self._quarantine_size
        self.counts, self.stats, self._quarantine_size = counts, stats, size
        self._done = done + sum(entry.messages for entry in entries)
        try:
            self.spool.done(entries, self.state())
        except Exception:
            self.counts, self.stats, self._done, self._quarantine_size = previous
            raise

    def _erase(self, outcome: Outcome) -> None:
        """After a committed chunk whose events erased people: remove their records from the files (the
        quarantine, the dead letters, the spool's unsent requests). A failure is logged: the store has forgotten
        them, and `groupspec people forget` finishes the files."""
        if not outcome.erasures or self.erase is None:
            return
        try:
            self.erase(outcome.erasures)
        except Exception as exc:
            log.error("an erasure's files could not be rewritten; run `groupspec people forget` for the ids",
                      extra={"error": str(exc)})

    def _copies(self) -> tuple[Counts, DeliveryStats, int]:
        return Counts.from_dict(self.counts.to_dict()), DeliveryStats.from_dict(self.stats.to_dict()), self._done

    def deliver(self, outcome: Outcome) -> bool:
        """Deliver until nothing is left (True) or the worker is stopping (False); failures pause and retry."""
        ops = outcome.ops if self.delivery is not None else []
        lines: list[bytes] | None = outcome.op_lines  # the engine wrote each operation out once: sent as written
        bodies = list(zip(outcome.forwarded_sources, outcome.forwarded)) if self.upstream is not None else []
        times = group_op_times(outcome) if ops else {}
        failures = 0
        while ops or bodies:
            if self.stopping.is_set():
                return False
            try:
                if ops:
                    ops = self._send(partial(self.delivery.send, accepted=lambda sent: self._lag(sent, times),
                                             lines=lines), ops, self._count)
                if bodies:
                    bodies = self._send(self.upstream.send, bodies, self._count_upstream)
                self.problem = None
            except SendFailed as exc:
                if self.stopping.is_set():  # abandoned for the stop (`hold`): what is left stays spooled
                    return False
                lines = None  # `ops` is now the unsent rest: written out again when retried
                failures += 1
                self.problem = str(exc) if isinstance(exc, (Unauthorized, SendHeld)) else None
                pause = min(MAX_PAUSE, 2.0 ** min(failures, 6))
                log.error("delivery stalled; retrying", extra={"error": str(exc), "pause": pause,
                                                               "waiting": len(ops) + len(bodies)})
                self._publish()
                self.stopping.wait(pause)
        return True

    def _publish(self) -> None:
        """Record the problem between chunks (with the committed counts only); a spool that cannot take it
        only delays what the service shows."""
        try:
            self.spool.publish(self.state())
        except Exception as exc:
            log.error("cannot record the worker state", extra={"error": str(exc)})

    def _store_answered(self, error: str | None) -> None:
        """The store answered the last chunk or idle round (None) or did not (`error`, which names it): an
        outage is logged once when it starts and once when it ends, and shown by `/health` while it lasts."""
        was, self.store_problem = self.store_problem, None if error is None else (
            f"the store does not answer ({error}); messages are quarantined as store_unavailable")
        if (was is None) == (error is None):
            return
        if error is None:
            log.info("the store answers again")
        else:
            log.error("the store does not answer; messages are quarantined as store_unavailable until it does",
                      extra={"error": error})
        self._publish()

    def _lag(self, sent: list[dict[str, Any]], times: dict[int, float]) -> None:
        """Customer.io accepted `sent`: the group update lag of each group-changing operation among them."""
        now = self.wall()
        for op in sent:
            at = times.get(id(op))
            if at is not None:
                self.stats.observe_lag(now - at)

    @staticmethod
    def _send(send: Callable[[list[dict[str, Any]]], SendReport], items: list[dict[str, Any]],
              count: Callable[[SendReport], None]) -> list[dict[str, Any]]:
        """Send `items`, counting what happened; on a failure the exception's `remaining` is still to send."""
        try:
            report = send(items)
        except SendFailed as exc:
            count(exc.report)
            if exc.remaining is not items:
                items[:] = exc.remaining
            raise
        count(report)
        return []

    def _count(self, report: SendReport) -> None:
        s = self.stats
        s.delivered += report.delivered
        s.dead_lettered += report.dead_lettered
        s.retries += report.retries
        s.cio_requests += report.requests

    def _count_upstream(self, report: SendReport) -> None:
        s = self.stats
        s.upstream_forwarded += report.delivered
        s.upstream_dead_lettered += report.dead_lettered
        s.upstream_retries += report.retries

    def pause(self, seconds: float) -> None:
        """The senders' sleep: a wait a destination asked for (429, `Retry-After`) is shown as `throttled` (in
        `/health` and `/metrics`) while it lasts, not only at the next commit."""
        if self._throttled():
            self._publish()
        self.stopping.wait(seconds)

    def hold(self, seconds: float) -> None:
        """The rate limit's sleep: a stop abandons the send rather than hurrying it past the limit (the rest of
        the chunk stays spooled for the next start)."""
        if self.stopping.wait(seconds):
            raise LimitUnavailable("the service is stopping")

    def _throttled(self) -> bool:
        """A destination asked to wait (429, `Retry-After`) and the wait is not over."""
        return any(part is not None and part.sender.throttled for part in (self.delivery, self.upstream))

    def _compact(self) -> None:
        """Between chunks, with `[store] retention`: compact the store once `compact_every` has passed; its size
        (read then, not per scrape) goes to `/metrics`."""
        try:
            if self.engine.compact() is not None:
                self.store_size = self.engine.store.size()
                self._publish()
        except StoreError as exc:  # an outage (logged once); compaction is tried again next time
            self._store_answered(str(exc))

    def _idle(self) -> None:
        """With nothing spooled, compact the store when due and send the rollup updates that fell due by the
        wall clock (a store that does not answer is an outage, not a failure of the worker)."""
        self._compact()
        if self.delivery is None:
            return
        try:
            with self.engine.transaction():
                outcome = self.engine.due(self.wall())
        except StoreError as exc:
            self._store_answered(str(exc))
            return
        self._store_answered(None)
        if outcome.ops:
            self.deliver(outcome)
            self._publish()


def _store_error(outcome: Outcome) -> str | None:
    """Why the store did not answer for a chunk (the first `store_unavailable` reason), or None."""
    if not outcome.counts.quarantined.get("store_unavailable"):
        return None
    return next((v["message"] for rec in outcome.quarantined for v in rec["violations"]
                 if v["code"] == "store_unavailable"), "store_unavailable")


def _cut_to(path: Any, mark: list[int] | None) -> list[int] | None:
    """Cut what an uncommitted chunk appended to the quarantine file (the same file grown past the committed
    size, `JsonlFile.extend`'s mark); a file rotated, truncated or rewritten (an erasure) since is left as it is."""
    if not mark:
        return mark
    with locked(path):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        inode, size = mark
        if st.st_ino == inode and st.st_size > size:
            os.truncate(path, size)
    return mark if st.st_ino == inode and st.st_size >= size else None
