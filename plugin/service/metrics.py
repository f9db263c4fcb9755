"""The service's counters: Prometheus text for `/metrics`, the coverage numbers for `/report.json`.

The intake counters live in the service's process; the rest are counted by the delivery process, which records
them with `snapshot()` in the spool and the service loads with `restore()` when asked: a value may be a moment old.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from groupspec.middleware.message import OBJECT_EVENTS, Message
from groupspec.middleware.quarantine import iso

from ..replay import RESOLUTIONS

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
NO_SOURCE = "-"


class Histogram:
    """Cumulative-bucket histogram in the Prometheus sense."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float, times: int = 1) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += times
        self.sum += value * times

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*map(repr, self.buckets), "+Inf"), self.counts):
            running += count
            out.append(f'{name}_bucket{{le="{bound}"}} {running}')
        out += [f"{name}_sum {self.sum:.6f}", f"{name}_count {running}"]
        return out


class Metrics:
    """Everything `/metrics` and `/report.json` show."""

    def __init__(self, contract_version: str | None = None) -> None:
        self.contract_version = contract_version
        self.requests: Counter[int] = Counter()  # intake answers by status
        self.received = 0  # messages accepted into the spool
        self.forwarded = 0
        self.quarantined: Counter[str] = Counter()  # by the code that dropped the message
        self.violations: Counter[tuple[str, str, str]] = Counter()  # (code, source, forwarded|quarantined)
        self.resolution: Counter[str] = Counter(dict.fromkeys(RESOLUTIONS, 0))
        self.events: dict[str, dict[str, Any]] = {}
        self.delivered = self.dead_lettered = self.retries = self.cio_requests = 0
        self.upstream_forwarded = self.upstream_dead_lettered = self.upstream_retries = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.latest: float | None = None

    def snapshot(self) -> dict[str, Any]:
        """The delivery process's counters, as JSON-ready data."""
        return {"forwarded": self.forwarded, "quarantined": self.quarantined,
                "violations": [[*key, n] for key, n in self.violations.items()], "resolution": self.resolution,
                "events": self.events, "delivered": self.delivered, "dead_lettered": self.dead_lettered,
                "retries": self.retries, "cio_requests": self.cio_requests,
                "upstream_forwarded": self.upstream_forwarded, "upstream_dead_lettered": self.upstream_dead_lettered,
                "upstream_retries": self.upstream_retries,
                "latency": [self.latency.counts, self.latency.sum], "latest": self.latest}

    def restore(self, snapshot: dict[str, Any]) -> None:
        """Take over the delivery process's counters from a `snapshot()` (nothing changes for {})."""
        if not snapshot:
            return
        for name in ("forwarded", "delivered", "dead_lettered", "retries", "cio_requests", "upstream_forwarded",
                     "upstream_dead_lettered", "upstream_retries", "latest", "events"):
            setattr(self, name, snapshot.get(name, getattr(self, name)))  # a counter new since the snapshot: 0
        self.quarantined = Counter(snapshot["quarantined"])
        self.resolution = Counter(snapshot["resolution"])
        self.violations = Counter({tuple(row[:3]): row[3] for row in snapshot["violations"]})
        self.latency.counts, self.latency.sum = list(snapshot["latency"][0]), snapshot["latency"][1]

    def processed(self, msg: Message) -> None:
        """Count one message the worker took through the chain (forwarded or quarantined)."""
        source = msg.source or NO_SOURCE
        where = "quarantined" if msg.quarantined else "forwarded"
        for v in msg.violations:
            self.violations[v["code"], source, where] += 1
        if msg.quarantined:
            self.quarantined[msg.violations[-1]["code"]] += 1
        else:
            self.forwarded += 1
            self.resolution[msg.resolution] += 1
        if self.latest is None or msg.ts > self.latest:
            self.latest = msg.ts
        body = msg.body if msg.body is not None else {}
        event = body.get("event")
        if msg.type == "track" and isinstance(event, str) and event not in OBJECT_EVENTS:
            row = self.events.get(event)
            if row is None:
                row = self.events[event] = {"event": event, "received": 0, "forwarded": 0, "quarantined": 0,
                                            "resolution": dict.fromkeys(RESOLUTIONS, 0)}
            row["received"] += 1
            row[where] += 1
            if not msg.quarantined:
                row["resolution"][msg.resolution] += 1

    def prometheus(self, spool_depth: int, healthy: bool) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines = [
            *_metric("groupspec_requests_total", "counter", "intake requests by HTTP status",
                     {f'status="{s}"': n for s, n in sorted(self.requests.items())}),
            *_metric("groupspec_received_total", "counter", "messages accepted into the spool", self.received),
            *_metric("groupspec_forwarded_total", "counter", "messages forwarded (maybe flagged or stripped)",
                     self.forwarded),
            *_metric("groupspec_quarantined_total", "counter", "messages quarantined, by the code that dropped them",
                     {f'code="{c}"': n for c, n in sorted(self.quarantined.items())}),
            *_metric("groupspec_delivered_total", "counter", "operations Customer.io accepted", self.delivered),
            *_metric("groupspec_dead_lettered_total", "counter", "operations Customer.io refused (dead letter)",
                     self.dead_lettered),
            *_metric("groupspec_delivery_retries_total", "counter", "Customer.io requests retried", self.retries),
            *_metric("groupspec_delivery_requests_total", "counter", "requests sent to Customer.io",
                     self.cio_requests),
            *_metric("groupspec_upstream_forwarded_total", "counter", "messages forwarded to the upstream",
                     self.upstream_forwarded),
            *_metric("groupspec_upstream_dead_lettered_total", "counter",
                     "messages the upstream refused (upstream dead letter)", self.upstream_dead_lettered),
            *_metric("groupspec_upstream_retries_total", "counter", "upstream requests retried",
                     self.upstream_retries),
            *_metric("groupspec_spool_depth", "gauge", "messages accepted and not yet delivered", spool_depth),
            *_metric("groupspec_healthy", "gauge", "1 when /health answers 200", int(healthy)),
            "# HELP groupspec_delivery_latency_seconds from acceptance to delivery of a spooled request",
            "# TYPE groupspec_delivery_latency_seconds histogram",
            *self.latency.lines("groupspec_delivery_latency_seconds"),
        ]
        return "\n".join(lines) + "\n"

    def coverage(self, origin: str) -> dict[str, Any]:
        """The coverage numbers in the shape `groupspec report --service URL` reads (people and groups are not
        tracked by the service)."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for (code, source, where), n in list(self.violations.items()):  # the worker may add keys meanwhile
            rows.setdefault((code, source), {"code": code, "source": source, "forwarded": 0, "quarantined": 0})[where] = n
        quarantined = sum(self.quarantined.values())
        return {
            "origin": origin,
            "contract": self.contract_version,
            "as_of": iso(self.latest) if self.latest is not None else None,
            "received": self.forwarded + quarantined,
            "forwarded": self.forwarded,
            "quarantined": quarantined,
            "resolution": dict(self.resolution),
            "events": sorted(list(self.events.values()), key=lambda r: (-r["received"], r["event"])),
            "violations": sorted(rows.values(), key=lambda r: (-(r["forwarded"] + r["quarantined"]), r["code"], r["source"])),
        }


def _metric(name: str, kind: str, help_text: str, value: int | dict[str, int]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    if isinstance(value, dict):
        lines += [f"{name}{{{labels}}} {n}" for labels, n in value.items()]
    else:
        lines.append(f"{name} {value}")
    return lines
