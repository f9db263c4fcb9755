"""Group-update lag: from a message's event time to Customer.io accepting the object and relationship operations
it became, as `groupspec_group_update_lag_seconds` in `/metrics` (plugin/service/freshness.py)."""

from __future__ import annotations

import httpx
from fake_clock import FakeClock
from freshness_support import EVENT_TIME, STREAM, worker_over
from groupspec.plugin.service.freshness import changes_group
from groupspec.plugin.service.metrics import LAG_BUCKETS, Metrics
from prometheus_client.parser import text_string_to_metric_families
from service_harness import WRITE_KEYS, ThreadService, metrics, wait_for, write_config

LAG = "groupspec_group_update_lag_seconds"


def lag_samples(text: str) -> dict[str, float]:
    return {f"{s.name}{s.labels.get('le', '')}": s.value
            for family in text_string_to_metric_families(text) if family.name == LAG for s in family.samples}


def test_the_lag_of_each_group_operation_is_observed_when_customerio_accepts_its_batch(tmp_path):
    clock = FakeClock()
    clock.now = EVENT_TIME + 7190  # the chunk is delivered about two hours after the events
    worker, accepted = worker_over(tmp_path, wall=clock, batch_size=2, per_request=10.0)
    outcome = worker.process(worker.spool.take(0, 10))
    assert worker.deliver(outcome)
    # batches: [u1 identify, hh_1 object with u1] accepted at +10 s, [hh_1 object with u2, the event] at +20 s
    assert [changes_group(op) for op in accepted] == [False, True, True, False]
    metrics = Metrics()
    metrics.restore(worker.state())
    lag = lag_samples(metrics.prometheus(0, True))
    assert lag[LAG + "_count"] == 2  # the person identify and the event are not group updates
    assert lag[LAG + "_sum"] == (7200.0) + (7210.0 + 60)  # u2's group call was a minute older
    assert lag[LAG + "_bucket3600.0"] == 0 and lag[LAG + "_bucket10800.0"] == 2
    assert lag[LAG + "_bucket+Inf"] == 2


def test_nothing_is_observed_for_operations_customerio_did_not_accept(tmp_path):
    clock = FakeClock()
    worker, _ = worker_over(tmp_path, wall=clock)
    worker.delivery.sender.client._transport = httpx.MockTransport(lambda request: httpx.Response(400, json={}))
    assert worker.deliver(worker.process(worker.spool.take(0, 10)))  # refused: all to the dead letter
    assert worker.state()["delivery"]["lag"] == [0] * (len(LAG_BUCKETS) + 1)


def test_the_lag_buckets_run_from_a_second_to_a_day():
    assert LAG_BUCKETS[0] == 1.0 and LAG_BUCKETS[-1] == 86400.0 and 21600.0 in LAG_BUCKETS  # the seed's 6 hours
    assert list(LAG_BUCKETS) == sorted(LAG_BUCKETS)


def test_the_service_shows_the_lag_of_delivered_group_calls_in_metrics(tmp_path, cio):
    with ThreadService(write_config(tmp_path, cio)) as svc:
        response = httpx.post(svc.url + "/v1/batch", json=STREAM, auth=(WRITE_KEYS["web"], ""))
        assert response.status_code == 200
        wait_for(lambda: metrics(svc.url).get(LAG + "_count") == 2)
        text = httpx.get(svc.url + "/metrics").text
    assert f"# TYPE {LAG} histogram" in text
    lag = lag_samples(text)
    assert lag[LAG + "_bucket43200.0"] == 0 and lag[LAG + "_bucket+Inf"] == 2  # the events are months old
    assert lag[LAG + "_sum"] > 2 * 86400
