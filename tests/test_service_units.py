"""The service's parts on their own: intake checks, the spool, group commit, JSON logs, the histogram."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import os
import threading
from types import SimpleNamespace

import httpx
import orjson
import pytest
from freshness_support import worker_over
from groupspec.plugin.customerio import batching
from groupspec.middleware.config import parse_config
from groupspec.middleware.message import Message
from groupspec.plugin.service.child import listen
from groupspec.plugin.service.commit import GroupCommit
from groupspec.plugin.service.intake import Rejected, admit, basic_user, decompress
from groupspec.plugin.service.logs import JsonFormatter, secrets_of
from groupspec.middleware.counts import Counts
from groupspec.plugin.service.metrics import DeliveryStats, Metrics
from prometheus_client.parser import text_string_to_metric_families
from groupspec.plugin.spool import Spool, SpoolError, SpoolQueue
from groupspec.plugin.service.supervisor import QUIT, WAKE
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_support import examples

SOURCES = {"wk_web": "web"}


def test_basic_user_reads_the_write_key_and_refuses_other_schemes():
    assert basic_user(b"Basic " + base64.b64encode(b"wk_web:")) == "wk_web"
    assert basic_user(None) is None
    for header in (b"Bearer abc", b"Basic !!!", b"Basic " + base64.b64encode(b"\xff\xfe")):
        with pytest.raises(Rejected) as caught:
            basic_user(header)
        assert caught.value.status == 401


def test_admit_counts_messages_and_takes_the_write_key_from_the_body():
    body = orjson.dumps({"batch": [{"type": "track"}] * 3, "writeKey": "wk_web"})
    assert admit(None, body, SOURCES, None, 1.0) == ("web", None, 1.0, 3, body)
    assert admit("track", b'{"event": "x"}', SOURCES, "wk_web", 2.0)[:4] == ("web", "track", 2.0, 1)
    assert admit("track", b'{"type": "TRACK"}', SOURCES, "wk_web", 2.0)[3] == 1
    assert admit(None, b'{"type": "identify", "userId": "u"}', SOURCES, "wk_web", 2.0)[3] == 1


@given(st.one_of(st.binary(max_size=300), st.builds(orjson.dumps, st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(
        ["batch", "type", "writeKey", "userId", "event"]), inner, max_size=4), max_leaves=20))),
    st.sampled_from([None, "track", "identify"]), st.sampled_from([None, "wk_web", "wk_other"]))
@settings(max_examples=300, deadline=None)
def test_admit_answers_any_body_with_a_row_or_a_refusal(body, kind, write_key):
    try:
        source, got_kind, _, messages, payload = admit(kind, body, SOURCES, write_key, 1.0)
    except Rejected as exc:
        assert exc.status in (400, 401, 413)
        return
    obj = orjson.loads(body)
    assert (source, got_kind, payload) == ("web", kind, body)
    assert messages == (len(obj["batch"]) if kind is None and "type" not in obj else 1)


def test_decompress_gzip_and_deflate_within_the_limit():
    data = b'{"a": 1}'
    assert decompress(gzip.compress(data), b"gzip", 100) == data
    import zlib
    assert decompress(zlib.compress(data), b"deflate", 100) == data
    with pytest.raises(Rejected) as caught:
        decompress(gzip.compress(b"x" * 10_000), b"gzip", 1000)  # a zip bomb stops at the limit
    assert caught.value.status == 413
    with pytest.raises(Rejected) as caught:
        decompress(data, b"br", 100)
    assert caught.value.status == 415


@given(st.lists(st.tuples(st.sampled_from(["web", None]), st.integers(0, 5), st.binary(max_size=50)), max_size=30),
       st.integers(1, 12))
@settings(max_examples=examples(40), deadline=None)
def test_spool_returns_entries_in_order_and_done_removes_them(tmp_path_factory, rows, chunk):
    spool = Spool(tmp_path_factory.mktemp("spool") / "spool.db", "normal")
    queue = SpoolQueue(spool.path, "normal")  # the delivery process's side
    for i in range(0, len(rows), 4):  # appended in transactions of up to 4
        spool.append([(src, None, 1.0, n, payload) for src, n, payload in rows[i:i + 4]])
    assert spool.depth == sum(n for _, n, _ in rows)
    seen, after, done = [], 0, 0
    while entries := queue.take(after, chunk):
        assert sum(e.messages for e in entries) <= chunk or len(entries) == 1
        seen += [(e.source, e.messages, e.payload) for e in entries]
        done += sum(e.messages for e in entries)
        queue.done(entries, {"done": done})
        after = entries[-1].seq
    assert seen == rows
    assert spool.depth == 0
    queue.close()
    spool.close()


def test_the_worker_state_is_shared_through_the_spool_and_carries_on_across_services(tmp_path):
    spool = Spool(tmp_path / "s.db")
    queue = SpoolQueue(spool.path)
    spool.append([("web", None, 1.0, 3, b"{}"), ("web", None, 1.0, 2, b"{}")])
    assert (spool.worker_state(), queue.state()) == ({}, {})
    queue.publish({"done": 0, "problem": "refused"})
    assert spool.worker_state()["problem"] == "refused"
    assert spool.depth == 5
    queue.done(queue.take(0, 3), {"done": 3, "problem": None})
    assert (spool.depth, spool.worker_state()["problem"]) == (2, None)
    assert queue.state() == {"done": 3, "problem": None}  # a restarted delivery process continues from it
    queue.publish({"done": 3, "problem": "refused"})  # a delivery process that stopped with a problem
    queue.close()
    spool.close()
    reopened = Spool(tmp_path / "s.db")
    assert (reopened.worker_state(), reopened.depth) == ({"done": 3, "problem": None}, 2)
    reopened.close()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_show_what_the_worker_committed():
    counts = Counts()
    msg = Message({"type": "track", "event": "Order Placed", "userId": "u1"},
                  {"type": "track", "event": "Order Placed", "userId": "u1"}, "web", 1_790_000_000.0)
    msg.type = "track"
    counts.count(msg.drop("invalid_group_id", "groupId", "bad"))
    stats = DeliveryStats(delivered=5, retries=2, upstream_forwarded=4)
    stats.observe(0.2, 3)
    metrics = Metrics("v1")
    metrics.received = 9
    metrics.restore(orjson.loads(orjson.dumps({"counts": counts.to_dict(), "delivery": stats.to_dict()})))
    samples = _samples(metrics.prometheus(0, True))
    assert samples[("groupspec_accepted_total", ())] == 9
    assert samples[("groupspec_received_total", ())] == 1
    assert samples[("groupspec_quarantined_total", (("code", "invalid_group_id"),))] == 1
    assert samples[("groupspec_delivered_total", ())] == 5
    assert samples[("groupspec_upstream_forwarded_total", ())] == 4
    assert samples[("groupspec_delivery_latency_seconds_count", ())] == 3
    report = metrics.coverage("service")
    assert (report["received"], report["quarantined"], report["events"][0]["event"]) == (1, 1, "Order Placed")


def test_spool_depth_survives_a_reopen(tmp_path):
    spool = Spool(tmp_path / "s.db")
    spool.append([("web", None, 1.0, 7, b"{}"), ("web", "track", 1.0, 1, b"{}")])
    spool.close()
    reopened = Spool(tmp_path / "s.db")
    assert reopened.depth == 8
    reopened.close()


def test_group_commit_answers_every_waiting_request_and_reports_spool_errors(tmp_path):
    spool = Spool(tmp_path / "s.db")
    commits = []
    commit = GroupCommit(spool, on_commit=lambda: commits.append(1))
    rows_per_commit = []
    first_held = threading.Event()
    append = spool.append

    def held_append(rows):  # the first commit is slow: everything that arrives meanwhile waits for it
        rows_per_commit.append(len(rows))
        first_held.wait(5)
        append(rows)

    spool.append = held_append

    async def many():
        writes = [asyncio.ensure_future(commit.write(("web", None, 1.0, 1, b"{}"))) for _ in range(50)]
        await asyncio.sleep(0)  # every write has queued its row
        first_held.set()
        await asyncio.gather(*writes)

    asyncio.run(many())
    assert spool.depth == 50
    # grouped: what arrived during the first commit went in one more commit, not one each
    assert sum(rows_per_commit) == 50 and len(rows_per_commit) <= 2
    assert len(commits) == len(rows_per_commit)
    spool.close()
    with pytest.raises(SpoolError):
        asyncio.run(commit.write(("web", None, 1.0, 1, b"{}")))
    commit.close()


def test_a_spool_is_used_by_one_service_at_a_time(tmp_path):
    first = Spool(tmp_path / "s.db")
    with pytest.raises(SpoolError, match="in use by another groupspec serve"):
        Spool(tmp_path / "s.db")
    first.close()
    Spool(tmp_path / "s.db").close()


def test_an_unwritable_spool_is_a_clear_error(tmp_path):
    with pytest.raises(SpoolError, match="cannot open the spool"):
        Spool(tmp_path / "no-such-dir" / "spool.db")


def test_json_logs_mask_every_configured_secret():
    config = parse_config({"sources": {"web": {"write_key": "wk_web_secret", "upstream_write_key": "seg-web-key"}},
                           "customerio": {"site_id": "site-1234", "api_key": "api-secret-key"},
                           "upstream": {"url": "http://x", "write_key": "up-secret"}})
    formatter = JsonFormatter(secrets_of(config))
    record = logging.LogRecord("groupspec", logging.ERROR, "", 0, "key %s and %s and %s",
                               ("wk_web_secret", "api-secret-key", "seg-web-key"), None)
    record.detail = "up-secret in an extra field, site-1234 too"
    line = formatter.format(record)
    entry = orjson.loads(line)
    assert entry["msg"] == "key *** and *** and ***"
    assert entry["detail"] == "*** in an extra field, *** too"
    assert entry["level"] == "error"


def test_latency_buckets_are_cumulative():
    stats = DeliveryStats()
    for value in (0.005, 0.5, 0.5, 500.0):
        stats.observe(value)
    metrics = Metrics()
    metrics.restore({"delivery": stats.to_dict()})
    samples = _samples(metrics.prometheus(0, True))
    bucket = "groupspec_delivery_latency_seconds_bucket"
    assert [samples[(bucket, (("le", le),))] for le in ("0.01", "0.5", "300.0", "+Inf")] == [1, 3, 3, 4]
    assert samples[("groupspec_delivery_latency_seconds_sum", ())] == 501.005


def test_the_delivery_process_turns_notices_into_wake_ups_and_a_clean_stop():
    read, write = os.pipe()
    wake, stopping = threading.Event(), threading.Event()
    listener = threading.Thread(target=listen, args=(read, wake, stopping), daemon=True)
    listener.start()
    os.write(write, WAKE)
    assert wake.wait(5) and not stopping.is_set()
    os.write(write, QUIT)
    listener.join(5)
    assert stopping.is_set() and not listener.is_alive()  # (end of file without QUIT exits the process instead)
    os.close(read)
    os.close(write)


def test_the_worker_sends_each_operation_as_the_engine_wrote_it_and_rewrites_only_a_retried_rest(tmp_path,
                                                                                                   monkeypatch):
    worker, accepted = worker_over(tmp_path, batch_size=2)
    answers = iter([200, 500, 200])  # the second batch fails once: the worker retries what is left
    answer = worker.delivery.sender.client._transport.handler
    worker.delivery.sender.client._transport = httpx.MockTransport(
        lambda request: answer(request) if (status := next(answers)) == 200 else httpx.Response(status, json={}))
    outcome = worker.process(worker.spool.take(0, 10))
    expected, lines = list(outcome.ops), list(outcome.op_lines)
    written = []
    monkeypatch.setattr(batching, "orjson", SimpleNamespace(dumps=lambda op: written.append(op) or orjson.dumps(op),
                                                            JSONEncodeError=orjson.JSONEncodeError))
    worker.stopping.wait = lambda seconds: False  # no pause between attempts
    assert worker.deliver(outcome)
    assert accepted == expected and len(expected) == 4
    assert written == expected[2:]  # the first batch went as the engine wrote it; the retried rest written again
    assert lines[:2] == [orjson.dumps(op) for op in expected[:2]]


def test_admit_names_the_write_key_that_selects_another_source():
    sources = {"wk_web": "web", "wk_app": "app"}
    members = [{"type": "track", "event": "E", "userId": "u"} for _ in range(3)]
    members[2]["writeKey"] = "wk_app"
    with pytest.raises(Rejected, match=r"^batch\[2\]\.writeKey is not the key") as refused:
        admit(None, orjson.dumps({"batch": members}), sources, "wk_web", 0.0)
    assert refused.value.status == 401
    with pytest.raises(Rejected, match=r"^writeKey is not the key"):
        admit(None, orjson.dumps({"batch": members[:2], "writeKey": "wk_app"}), sources, "wk_web", 0.0)
