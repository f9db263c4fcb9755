"""What `/metrics` and `/report.json` show, from the one counting model (`groupspec.middleware.counts`).

The intake counts requests and accepted messages in the service's process. The delivery process counts the rest:
it commits its `Counts` and `DeliveryStats` to the spool in the transaction that removes the requests they came
from (so a chunk is counted exactly once, across kills and restarts), and the service loads them with `restore()`.
`/metrics` is rendered by prometheus-client from a collector over these numbers.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from groupspec.middleware.counts import Counts
from groupspec.middleware.quarantine import iso
from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: group update lag (event time -> accepted by Customer.io): 1 s to a day
LAG_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 10800.0, 21600.0, 43200.0, 86400.0)


@dataclass
class DeliveryStats:
    """What the delivery process did with the operations and messages: its own counters and the latency
    histogram from acceptance to delivery."""

    delivered: int = 0
    dead_lettered: int = 0
    retries: int = 0
    cio_requests: int = 0
    upstream_forwarded: int = 0
    upstream_dead_lettered: int = 0
    upstream_retries: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    lag: list[int] = field(default_factory=lambda: [0] * (len(LAG_BUCKETS) + 1))
    lag_sum: float = 0.0

    def observe(self, seconds: float, times: int = 1) -> None:
        self.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += times
        self.latency_sum += seconds * times

    def observe_lag(self, seconds: float) -> None:
        """A group-changing operation Customer.io accepted `seconds` after its message's event time."""
        self.lag[bisect.bisect_left(LAG_BUCKETS, seconds)] += 1
        self.lag_sum += seconds

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeliveryStats:
        return cls(**data) if data else cls()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Metrics:
    """Everything `/metrics` and `/report.json` show."""

    def __init__(self, contract_version: str | None = None) -> None:
        self.contract_version = contract_version
        self.requests: Counter[int] = Counter()  # intake answers by status
        self.received = 0  # messages accepted into the spool by this service
        self.counts = Counts()
        self.delivery = DeliveryStats()
        self.throttled = False
        self.store_size: dict[str, int] = {}  # records in the store by kind, as of the last compaction

    def restore(self, state: dict[str, Any]) -> None:
        """Take over what the delivery process last committed (`Worker.state()`); nothing changes for {}."""
        if state:
            self.counts = Counts.from_dict(state.get("counts", {}))
            self.delivery = DeliveryStats.from_dict(state.get("delivery", {}))
            self.throttled = bool(state.get("throttled"))
            self.store_size = dict(state.get("store_size") or {})

    def prometheus(self, spool_depth: int, healthy: bool) -> str:
        """The Prometheus text exposition format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self, spool_depth, healthy))
        return generate_latest(registry).decode()

    def coverage(self, origin: str) -> dict[str, Any]:
        """The coverage numbers in the shape `groupspec report --service URL` reads (people and groups are not
        tracked by the service)."""
        counts = self.counts
        summary = counts.summary()
        return {
            "origin": origin,
            "contract": self.contract_version,
            "as_of": _iso_or_none(counts.latest),
            "received": summary["received"],
            "forwarded": summary["forwarded"],
            "quarantined": summary["quarantined"],
            "suppressed": counts.suppressed,
            "resolution": summary["resolution"],
            "events": counts.event_rows(),
            "violations": counts.violation_rows(),
        }


def _iso_or_none(ts: float | None) -> str | None:
    """A time as ISO-8601; None when there is none or it lies outside what ISO-8601 years can show."""
    if ts is None:
        return None
    try:
        return iso(ts)
    except (ValueError, OverflowError, OSError):
        return None


class _Collector:
    """The metric families of one `/metrics` answer."""

    def __init__(self, metrics: Metrics, spool_depth: int, healthy: bool) -> None:
        self.metrics, self.spool_depth, self.healthy = metrics, spool_depth, healthy

    def collect(self):
        m, counts, d = self.metrics, self.metrics.counts, self.metrics.delivery
        requests = CounterMetricFamily("groupspec_requests", "intake requests by HTTP status", labels=["status"])
        for status, n in sorted(m.requests.items()):
            requests.add_metric([str(status)], n)
        yield requests
        yield CounterMetricFamily("groupspec_accepted", "messages accepted into the spool by this service",
                                  value=m.received)
        yield CounterMetricFamily("groupspec_received", "messages taken through the contract "
                                  "(= forwarded + quarantined + suppressed)", value=counts.received)
        yield CounterMetricFamily("groupspec_suppressed", "messages of forgotten people dropped unrecorded "
                                  "([privacy] suppress_forgotten)", value=counts.suppressed)
        yield CounterMetricFamily("groupspec_forwarded", "messages forwarded (maybe flagged or stripped)",
                                  value=counts.forwarded)
        quarantined = CounterMetricFamily("groupspec_quarantined", "messages quarantined, by the code that "
                                          "dropped them", labels=["code"])
        for code, n in sorted(counts.quarantined.items()):
            quarantined.add_metric([code], n)
        yield quarantined
        for name, help_text, value in (
            ("delivered", "operations Customer.io accepted", d.delivered),
            ("dead_lettered", "operations Customer.io refused (dead letter)", d.dead_lettered),
            ("delivery_retries", "Customer.io requests retried", d.retries),
            ("delivery_requests", "requests sent to Customer.io", d.cio_requests),
            ("upstream_forwarded", "messages the upstream accepted", d.upstream_forwarded),
            ("upstream_dead_lettered", "messages the upstream refused (its dead letter)", d.upstream_dead_lettered),
            ("upstream_retries", "upstream requests retried", d.upstream_retries),
        ):
            yield CounterMetricFamily(f"groupspec_{name}", help_text, value=value)
        yield GaugeMetricFamily("groupspec_spool_depth", "messages accepted and not yet delivered",
                                value=self.spool_depth)
        yield GaugeMetricFamily("groupspec_healthy", "1 when /health answers 200", value=int(self.healthy))
        yield GaugeMetricFamily("groupspec_delivery_throttled", "1 while a destination asks to wait (429 "
                                "Retry-After)", value=int(m.throttled))
        if m.store_size:
            records = GaugeMetricFamily("groupspec_store_records", "records the store holds, by kind, as of its "
                                        "last compaction ([store] retention)", labels=["kind"])
            for kind, n in sorted(m.store_size.items()):
                records.add_metric([kind], n)
            yield records
        yield HistogramMetricFamily("groupspec_delivery_latency_seconds", "from acceptance to delivery of a "
                                    "spooled request", buckets=_cumulative(LATENCY_BUCKETS, d.latency),
                                    sum_value=d.latency_sum)
        yield HistogramMetricFamily("groupspec_group_update_lag_seconds", "from a message's event time to "
                                    "Customer.io accepting its object or relationship operation",
                                    buckets=_cumulative(LAG_BUCKETS, d.lag), sum_value=d.lag_sum)


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, int]]:
    """Prometheus histogram buckets (upper bound, count at or below it) from per-bucket counts."""
    buckets, running = [], 0
    for bound, n in zip((*map(repr, bounds), "+Inf"), counts):
        running += n
        buckets.append((bound, running))
    return buckets
