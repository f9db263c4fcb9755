"""Delivery to Customer.io against the stand-in over loopback: batching, refusals, retries, rate, order, secrets."""

from __future__ import annotations

import base64
import logging
import random
import socket
import time
import traceback
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import orjson
import pytest
from fake_clock import FakeClock
from groupspec.middleware.config import ConfigError, parse_config
from groupspec.plugin.customerio.batching import plan
from groupspec.plugin.customerio.delivery import Delivery
from groupspec.plugin.sender import DeadLetterFile, SendFailed, TokenBucket, Unauthorized, Unsendable
from groupspec.plugin.sender.retry import backoff, retry_after
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FAST = {"retry_base": 0.01, "retry_cap": 0.05, "rate_limit": 1e9, "timeout": 2.0}


class Harness:
    """A Delivery to the stand-in that records its dead letters and sleeps instead of sleeping."""

    def __init__(self, cio, api_key=None, **overrides):
        self.dead: list[tuple[dict, dict]] = []
        self.sleeps: list[float] = []
        self.delivery = Delivery(cio.customerio(**{**FAST, **overrides}), cio.site_id, api_key or cio.api_key,
                                 dead_letter=lambda op, error: self.dead.append((op, error)),
                                 sleep=self.sleeps.append, rng=random.Random(7))

    def send(self, ops):
        return self.delivery.send(ops)


@pytest.fixture
def harness(cio):
    made = []

    def make(**overrides):
        made.append(Harness(cio, **overrides))
        return made[-1]

    yield make
    for h in made:
        h.delivery.close()


def event(i, pad=0, person=None):
    return {"type": "person", "action": "event", "identifiers": {"id": person or f"u{i}"}, "name": "Played",
            "id": f"{i:026d}", "attributes": {"pad": "x" * pad}}


def test_check_auth(cio, harness):
    assert harness().delivery.check_auth() is True
    assert harness(api_key="wrong").delivery.check_auth() is False


def test_from_config_names_a_missing_secret(cio, monkeypatch):
    monkeypatch.delenv("GS_TEST_CIO_KEY", raising=False)
    config = parse_config({"customerio": {"site_id": "s", "api_key": "${GS_TEST_CIO_KEY}", "url": cio.url}})
    with pytest.raises(ConfigError, match=r"customerio\.api_key: environment variable GS_TEST_CIO_KEY"):
        Delivery.from_config(config)
    monkeypatch.setenv("GS_TEST_CIO_KEY", cio.api_key)
    config = parse_config({"customerio": {"site_id": cio.site_id, "api_key": "${GS_TEST_CIO_KEY}", "url": cio.url}})
    with Delivery.from_config(config, dead_letter=lambda op, error: None) as delivery:
        assert delivery.check_auth()


def test_region_picks_the_host():
    assert parse_config({"customerio": {"region": "eu"}}).customerio.base_url == "https://track-eu.customer.io"
    assert parse_config({}).customerio.base_url == "https://track.customer.io"


def test_a_url_carrying_credentials_is_refused():
    with pytest.raises(ConfigError, match="customerio.url: expected an http"):
        parse_config({"customerio": {"url": "https://site:key@track.customer.io"}})


def test_batches_by_count(cio, harness):
    ops = [event(i) for i in range(250)]
    report = harness(batch_size=100).send(ops)
    assert [r.ops for r in cio.requests] == [100, 100, 50]
    assert cio.accepted == ops
    assert (report.delivered, report.requests, report.dead_lettered) == (250, 3, 0)


def test_connections_are_kept_alive(cio, harness):
    h = harness(batch_size=1)
    h.send([event(i) for i in range(5)])
    assert h.delivery.check_auth()
    assert len(cio.requests) == 6 and cio.connections_opened == 1


def test_batches_by_bytes(cio, harness):
    ops = [event(i, pad=30_000) for i in range(40)]  # ~30 KB each: 16 fit under 500 KB
    harness(batch_size=100).send(ops)
    assert [r.ops for r in cio.requests] == [16, 16, 8]
    assert all(r.size < 500_000 for r in cio.requests)
    assert cio.accepted == ops


def test_oversize_and_unserializable_ops_go_to_the_dead_letter_never_out(cio, harness):
    h = harness()
    big, odd = event(1, pad=33_000), {**event(2), "attributes": {"tags": {"a", "b"}}}
    ops = [event(0), big, odd, event(3)]
    report = h.send(ops)
    assert cio.accepted == [event(0), event(3)]
    assert [r.status for r in cio.requests] == [200]
    assert [(op, error["reason"]) for op, error in h.dead] == [(big, "operation_too_large"), (odd, "not_serializable")]
    assert "32 KB" in h.dead[0][1]["message"]
    assert (report.delivered, report.dead_lettered) == (2, 2)


def test_207_dead_letters_exactly_the_refused_ops(cio, harness):
    h = harness()
    two_ids = {**event(1), "identifiers": {"id": "u1", "email": "u1@example.com"}}
    bad_type = {"type": "object", "action": "identify", "identifiers": {"object_type_id": "one", "object_id": "a"}}
    ops = [event(0), two_ids, event(2), bad_type, event(4)]
    report = h.send(ops)
    assert cio.accepted == [event(0), event(2), event(4)]
    assert [op for op, _ in h.dead] == [two_ids, bad_type]
    assert h.dead[1][1]["status"] == 207
    assert h.dead[1][1]["field"] == "identifiers.object_type_id"
    assert h.dead[1][1]["reason"] and h.dead[1][1]["message"]
    assert (report.delivered, report.dead_lettered, report.retries) == (3, 2, 0)


def test_207_naming_no_operation_dead_letters_the_batch(cio, harness):
    h = harness()
    cio.script(207)
    report = h.send([event(0), event(1)])
    assert [error["reason"] for _, error in h.dead] == ["unreadable_partial_failure"] * 2
    assert report.dead_lettered == 2


def test_400_dead_letters_the_whole_batch_and_goes_on(cio, harness):
    h = harness(batch_size=2)
    cio.script(400)
    ops = [event(i) for i in range(4)]
    report = h.send(ops)
    assert [op for op, _ in h.dead] == ops[:2]
    assert {error["status"] for _, error in h.dead} == {400}
    assert h.dead[0][1]["reason"] == "scripted"
    assert cio.accepted == ops[2:]
    assert (report.delivered, report.dead_lettered, report.retries) == (2, 2, 0)


def test_401_stops_and_keeps_the_rest_queued(cio, harness):
    h = harness(batch_size=2)
    cio.script(200)
    cio.script(401)
    ops = [event(i) for i in range(5)]
    with pytest.raises(Unauthorized) as caught:
        h.send(ops)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.remaining == ops[2:]
    assert caught.value.report.delivered == 2
    assert h.dead == [] and h.sleeps == []
    assert cio.accepted == ops[:2]


def test_429_retry_after_seconds_is_honoured(cio, harness):
    h = harness(retry_cap=5)
    cio.script(429, retry_after=3)
    report = h.send([event(0)])
    assert h.sleeps == [3.0]
    assert (report.retries, report.requests, report.delivered) == (1, 2, 1)
    assert cio.accepted == [event(0)]


def test_retry_after_http_date_is_honoured(cio, harness):
    h = harness(retry_cap=300)
    cio.script(503, retry_after=format_datetime(datetime.now(timezone.utc) + timedelta(seconds=120), usegmt=True))
    h.send([event(0)])
    (slept,) = h.sleeps
    assert 117 <= slept <= 120


def test_503_then_success_backs_off_with_full_jitter(cio, harness):
    h = harness(retry_base=0.1, retry_cap=0.3)
    cio.script(503, count=4)
    report = h.send([event(0)])
    assert report.retries == 4 and cio.accepted == [event(0)]
    bounds = [0.1, 0.2, 0.3, 0.3]  # base * 2**n, capped
    assert all(0 <= slept <= bound for slept, bound in zip(h.sleeps, bounds, strict=True))


def test_hang_times_out_and_is_retried(cio, harness):
    h = harness(timeout=0.2)
    cio.script(503, hang=10)
    started = time.monotonic()
    report = h.send([event(0), event(1)])
    assert time.monotonic() - started < 3
    assert report.retries == 1
    assert cio.accepted == [event(0), event(1)]


def test_retries_exhausted_raise_with_every_undelivered_op(cio, harness):
    h = harness(batch_size=2, max_retries=3)
    cio.script(200)
    cio.script(503, count=10)
    ops = [event(i) for i in range(5)]
    with pytest.raises(SendFailed) as caught:
        h.send(ops)
    assert caught.value.remaining == ops[2:]
    assert (caught.value.report.delivered, caught.value.report.retries, caught.value.report.requests) == (2, 3, 5)
    assert "HTTP 503 after 3 retries" in str(caught.value)
    assert h.dead == []


def test_network_errors_are_retried_then_reported(harness, cio):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    h = harness(url=f"http://127.0.0.1:{port}", max_retries=2)
    with pytest.raises(SendFailed, match="ConnectError") as caught:
        h.send([event(0), event(1)])
    assert caught.value.remaining == [event(0), event(1)]
    assert len(h.sleeps) == 2


def test_unexpected_status_keeps_everything_queued(cio, harness):
    h = harness(url=cio.url + "/wrong-prefix")
    with pytest.raises(SendFailed, match="unexpected HTTP 404") as caught:
        h.send([event(0)])
    assert caught.value.remaining == [event(0)] and h.dead == [] and h.sleeps == []


def test_rate_limit_spaces_requests(cio):
    clock = FakeClock()
    delivery = Delivery(cio.customerio(rate_limit=10, batch_size=1), cio.site_id, cio.api_key,
                        dead_letter=lambda op, error: None, sleep=clock.sleep, clock=clock)
    with delivery:
        delivery.send([event(i) for i in range(5)])
    assert clock.sleeps == pytest.approx([0.1] * 4)
    assert len(cio.accepted) == 5


def test_token_bucket_refills_while_idle():
    clock = FakeClock()
    bucket = TokenBucket(4, capacity=2, clock=clock, sleep=clock.sleep)
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0, 0, 0.25])
    clock.now += 10  # idle: the bucket fills to its capacity, no further
    assert [bucket.acquire() for _ in range(3)] == pytest.approx([0, 0, 0.25])


def test_order_holds_across_batch_boundaries_and_retries(cio, harness):
    acme = {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "acme"},
            "attributes": {"plan": "pro"}}
    joins = {"type": "person", "action": "add_relationships", "identifiers": {"id": "ann"},
             "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "acme"}}]}
    ops = [event(0, person="ann"), acme, joins, event(3, person="ann"), event(4, person="ann")]
    h = harness(batch_size=2)
    cio.script(200)
    cio.script(503)  # the batch holding the relationship fails once
    h.send(ops)
    assert [r.ops for r in cio.requests if r.status == 200] == [2, 2, 1]  # acme | joins: across a boundary
    assert cio.accepted == ops


def test_dead_letter_file_is_the_default(cio, tmp_path):
    path = tmp_path / "dead.jsonl"
    with Delivery(cio.customerio(dead_letter=str(path)), cio.site_id, cio.api_key) as delivery:
        delivery.send([event(0, pad=40_000)])
    (rec,) = DeadLetterFile(path).records()
    assert rec["operation"] == event(0, pad=40_000)
    assert rec["error"]["reason"] == "operation_too_large"
    assert rec["failed_at"].endswith("Z")


def test_secrets_appear_in_no_log_error_or_repr(cio, caplog):
    secret = "sk_live_do-not-leak-4c7e"
    token = base64.b64encode(f"{cio.site_id}:{secret}".encode()).decode()
    good_token = base64.b64encode(f"{cio.site_id}:{cio.api_key}".encode()).decode()
    caplog.set_level(logging.DEBUG)  # httpx and httpcore included
    texts = []
    for api_key, script in ((secret, None), (cio.api_key, 503), (cio.api_key, 207)):
        delivery = Delivery(cio.customerio(**{**FAST, "max_retries": 1}), cio.site_id, api_key,
                            dead_letter=lambda op, error: texts.append(repr(error)), sleep=lambda s: None)
        texts.append(repr(delivery))
        if script:
            cio.script(script, count=2)
        try:
            delivery.send([event(0)])
            delivery.check_auth()
        except SendFailed as exc:
            texts.append("".join(traceback.format_exception(exc)))
            texts.append(repr(exc))
        delivery.close()
    assert len(texts) >= 5 and "HTTP 503" in caplog.text and "HTTP Request" in caplog.text
    everything = caplog.text + "\n".join(texts)
    for leak in (secret, token, cio.api_key, good_token):
        assert leak not in everything


op_sizes = st.lists(st.integers(0, 34_000) | st.integers(0, 200), max_size=60)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=op_sizes, batch_size=st.integers(1, 120))
def test_every_request_fits_and_every_op_arrives_once_in_order(cio, sizes, batch_size):
    cio.reset()
    ops = [event(i, pad=size) for i, size in enumerate(sizes)]
    dead = []
    with Delivery(cio.customerio(**{**FAST, "batch_size": batch_size}), cio.site_id, cio.api_key,
                  dead_letter=lambda op, error: dead.append(op)) as delivery:
        report = delivery.send(ops)
    assert all(r.size < 500 * 1024 and r.ops <= batch_size and r.status == 200 for r in cio.requests)
    oversize = [op for op in ops if len(orjson.dumps(op)) > 32 * 1024]
    assert dead == oversize
    assert cio.accepted == [op for op in ops if op not in oversize]
    assert report.delivered == len(cio.accepted)


def test_retry_after_parsing():
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert retry_after("2", now) == 2.0
    assert retry_after(" 1.5 ", now) == 1.5
    assert retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now) == 30.0
    assert retry_after("Wed, 31 Dec 2025 23:59:00 GMT", now) == 0.0
    for unreadable in (None, "", "soon", "-1", "inf", "nan", "1e999"):
        assert retry_after(unreadable, now) is None


@given(retry=st.integers(0, 200), base=st.floats(0.001, 10), cap=st.floats(0.001, 100), seed=st.integers())
def test_backoff_is_full_jitter_within_the_cap(retry, base, cap, seed):
    assert 0 <= backoff(retry, base, cap, random.Random(seed)) <= min(cap, base * 2**min(retry, 64))


def test_operations_already_written_out_are_sent_as_written():
    ops = [event(i) for i in range(3)]
    lines = [orjson.dumps(dict(reversed(op.items()))) for op in ops]  # the same JSON, other bytes than dumps(op)
    batches = list(plan(ops, 2, lines))
    assert [b.body for b in batches] == [b'{"batch":[' + lines[0] + b"," + lines[1] + b"]}",
                                         b'{"batch":[' + lines[2] + b"]}"]
    assert [b.items for b in batches] == [ops[:2], ops[2:]]
    big = event(9, pad=33_000)
    assert isinstance(next(plan([big], 2, [orjson.dumps(big)])), Unsendable)  # the 32 KB limit still holds
