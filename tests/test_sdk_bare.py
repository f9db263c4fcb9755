"""The hooked SDK behaves as the bare SDK (issue 11): the same objects and types in what it returns, queues and
hands to `on_error`; its own size limits, validation errors and id forms; the store learns only from what is
handed to the upload; groupspec runs off the caller's path, in the consumer, one transaction a batch; many
worker processes share the default SQLite store. Every expectation comes from running the bare SDK alongside."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import date, datetime, timezone
from pathlib import Path

import customerio.analytics
import pytest
import rudderstack.analytics
import segment.analytics
from batch_server import BatchServer
from groupspec.middleware import install
from groupspec.middleware.config import parse_config
from groupspec.middleware import sdk
from groupspec.middleware.sdk import hook_of
from groupspec.middleware.stores.memory import MemoryStore
from sdk_bare_support import FailingServer, ThreadRecordingStore, shape

SDKS = {"segment": segment.analytics, "rudderstack": rudderstack.analytics, "customerio": customerio.analytics}
CONTRACT = {"version": "bare", "group_id_pattern": "^hh_[A-Za-z0-9]+$"}
AT = datetime(2026, 5, 1, 12, 0, tzinfo=timezone.utc)
SUPPORT = str(Path(__file__).resolve().parent / "sdk_bare_support.py")  # run as the worker processes


def config(tmp_path, **contract):
    return parse_config({"contract": {**CONTRACT, **contract}, "quarantine": {"path": str(tmp_path / "quarantine.jsonl")}})


@pytest.fixture(params=sorted(SDKS))
def name(request):
    return request.param


@pytest.fixture
def ok_server():
    with BatchServer() as server:
        yield server


@pytest.fixture
def bad_server():
    with FailingServer(400) as server:
        yield server


def client_of(name, host, **options):
    return SDKS[name].Client("wk", host=host, upload_interval=0.01, max_retries=0, **options)


def properties():
    """Values JSON lacks or spells differently: each SDK keeps some and converts others (`utils.clean`)."""
    return {"day": date(2026, 1, 2), "at": AT, "pair": (1, 2), "tags": {"a"}, 7: "int key", "nan": float("nan"),
            "nested": {"when": date(2026, 3, 4), 8: [date(2026, 3, 5)]}}


def send(client, method, *args, **kwargs):
    """Call `client.method`, flush, and give what it returned, or the exception it raised."""
    try:
        result = getattr(client, method)(*args, **kwargs)
    except Exception as exc:
        result = exc
    if getattr(client, "consumers", None):
        client.flush()
    return result


# 1. values keep their types

def test_returned_queued_and_failed_messages_keep_the_sdks_values(name, bad_server, tmp_path):
    failed: dict[str, list] = {"bare": [], "hooked": []}
    bare = client_of(name, bad_server.url, on_error=lambda e, batch: failed["bare"].extend(batch))
    hooked = install(client_of(name, bad_server.url, on_error=lambda e, batch: failed["hooked"].extend(batch)),
                     config(tmp_path), store="memory://")
    returned = {}
    for label, client in (("bare", bare), ("hooked", hooked)):
        client.group("u1", "hh_1", {"since": date(2025, 1, 1)}, message_id="g1", timestamp=AT)
        returned[label] = send(client, "track", "u1", "Viewed", properties(), message_id="m1", timestamp=AT)
        client.join()
    assert returned["hooked"][0] is True
    assert shape(returned["hooked"][1]["properties"]) == shape(returned["bare"][1]["properties"])
    assert [m["messageId"] for m in failed["hooked"]] == [m["messageId"] for m in failed["bare"]] == ["g1", "m1"]
    for got, want in zip(failed["hooked"], failed["bare"]):
        assert shape(got.get("properties", got.get("traits"))) == shape(want.get("properties", want.get("traits")))


def test_sent_message_keeps_values_and_gains_only_the_enrichment(name, ok_server, tmp_path):
    bare = client_of(name, ok_server.url)
    send(bare, "track", "u1", "Viewed", properties(), message_id="m0", timestamp=AT)
    bare.join()
    hooked = install(client_of(name, ok_server.url), config(tmp_path), store="memory://")
    send(hooked, "group", "u1", "hh_1", message_id="g1", timestamp=AT)
    send(hooked, "track", "u1", "Viewed", properties(), message_id="m0", timestamp=AT)
    hooked.join()
    want, _, got = ok_server.messages
    context = dict(got["context"])
    assert context.pop("groupId") == "hh_1" and context.pop("groups") == {"1": "hh_1"}
    assert context.pop("groupspec")["resolution"] == "membership"
    assert context == want["context"]
    assert {k: v for k, v in got.items() if k not in ("context", "sentAt")} == \
        {k: v for k, v in want.items() if k not in ("context", "sentAt")}


# 2. and 3. the SDK's own limits and validation errors

@pytest.mark.parametrize("call", [
    pytest.param(("track", ("u1", "Big", {"blob": "x" * 40_000}), {"timestamp": AT}), id="40KB"),
    pytest.param(("track", ("u1", "Viewed"), {"context": "not a dict"}), id="context-not-dict"),
    pytest.param(("track", ("u1", "Viewed"), {"integrations": ["not", "a", "dict"]}), id="integrations-not-dict"),
    pytest.param(("identify", ("u1", {"t": 1}), {"timestamp": "2026-01-01"}), id="timestamp-text"),
])
def test_sdk_limits_and_errors_are_the_sdks_own(name, ok_server, tmp_path, call):
    method, args, kwargs = call
    kwargs = dict(kwargs, message_id="m1")
    bare = send(client_of(name, ok_server.url), method, *args, **kwargs)
    sent_bare = len(ok_server.messages)
    hooked_client = install(client_of(name, ok_server.url), config(tmp_path), store="memory://")
    hooked = send(hooked_client, method, *args, **kwargs)
    if isinstance(bare, Exception):
        assert type(hooked) is type(bare) and str(hooked) == str(bare)
    else:
        assert hooked[0] is bare[0] is True
        assert len(ok_server.messages) == 2 * sent_bare  # sent, not quarantined as malformed
        assert ok_server.messages[-1]["event"] == ok_server.messages[0]["event"]
    assert not (tmp_path / "quarantine.jsonl").exists()


def test_rudderstack_takes_a_40kb_message_the_others_refuse(ok_server, tmp_path):
    client = install(client_of("rudderstack", ok_server.url), config(tmp_path), store="memory://")
    send(client, "track", "u1", "Big", {"blob": "x" * 40_000})
    assert [m["event"] for m in ok_server.messages] == ["Big"]
    for other in ("segment", "customerio"):
        with pytest.raises(RuntimeError, match="limit"):
            install(client_of(other, ok_server.url), config(tmp_path), store="memory://").track("u", "Big",
                                                                                              {"b": "x" * 40_000})


# 4. ids keep the SDK's form

def test_ids_are_sent_as_the_sdk_sends_them(name, ok_server, tmp_path):
    bare = client_of(name, ok_server.url)
    send(bare, "track", 2.0, "Viewed", anonymous_id=157963456373623802)
    send(bare, "group", 2.0, 42)
    bare.join()
    hooked = install(client_of(name, ok_server.url), config(tmp_path, group_id_pattern=""), store="memory://")
    send(hooked, "track", 2.0, "Viewed", anonymous_id=157963456373623802)
    send(hooked, "group", 2.0, 42)
    hooked.join()
    keys = ("userId", "anonymousId", "groupId")
    want = [{k: m.get(k) for k in keys} for m in ok_server.messages[:2]]
    got = [{k: m.get(k) for k in keys} for m in ok_server.messages[2:]]
    assert got == want and want[0]["userId"] == "2.0"


# 5. the store learns only from what is handed to the upload

def resolved(name, server, store, tmp_path):
    """What a later track of u1, through another client on the same store, is sent with."""
    client = install(client_of(name, server.url), config(tmp_path), store=store)
    send(client, "track", "u1", "Viewed")
    client.join()
    return server.messages[-1]["context"].get("groupId")


def test_a_message_the_full_queue_refused_teaches_nothing(name, ok_server, tmp_path):
    store = MemoryStore()
    bare = client_of(name, ok_server.url, max_queue_size=1)
    bare.join()  # its consumer stopped: the queue fills
    bare.track("u0", "Viewed")
    expected = bare.group("u1", "hh_1")[0]
    client = install(client_of(name, ok_server.url, max_queue_size=1), config(tmp_path), store=store)
    client.join()
    client.track("u0", "Viewed")
    assert client.group("u1", "hh_1")[0] is expected is False
    assert resolved(name, ok_server, store, tmp_path) is None


def test_a_failed_sync_post_teaches_nothing(name, ok_server, bad_server, tmp_path):
    store = MemoryStore()
    bare = send(client_of(name, bad_server.url, sync_mode=True), "group", "u1", "hh_1")
    hooked = send(install(client_of(name, bad_server.url, sync_mode=True), config(tmp_path), store=store),
                  "group", "u1", "hh_1")
    assert isinstance(bare, Exception) and type(hooked) is type(bare)
    assert resolved(name, ok_server, store, tmp_path) is None
    send(install(client_of(name, ok_server.url, sync_mode=True), config(tmp_path), store=store), "group", "u1", "hh_1")
    assert resolved(name, ok_server, store, tmp_path) == "hh_1"  # a post that succeeds does teach


def test_inline_mode_learns_only_what_was_queued(name, ok_server, tmp_path):
    store = MemoryStore()
    client = install(client_of(name, ok_server.url, max_queue_size=1), config(tmp_path), store=store, mode="inline")
    client.join()
    client.track("u0", "Viewed")
    ok, msg = client.group("u1", "hh_1")
    assert ok is False and "groupspec" not in msg["context"]
    assert resolved(name, ok_server, store, tmp_path) is None


# 6. off the request path

def test_the_caller_pays_only_the_sdks_enqueue(name, ok_server, tmp_path):
    store = ThreadRecordingStore()
    bare = client_of(name, ok_server.url)
    hooked = install(client_of(name, ok_server.url, upload_size=50), config(tmp_path), store=store)
    hooked.join()  # consumer stopped: everything the calls do happens now, in this thread
    for client in (bare, hooked):
        client.group("u1", "hh_1", message_id="g", timestamp=AT)
    returned = [client.track("u1", "Viewed", {"n": 1}, message_id="t", timestamp=AT) for client in (bare, hooked)]
    assert returned[1] == returned[0] and "groupspec" not in returned[1][1]["context"]
    assert store.threads == set() and store.transactions == 0
    bare.join()  # the bare client's own uploads are done before the hooked batch goes out
    [consumer] = hooked.consumers
    batch = [hooked.queue.get() for _ in range(hooked.queue.qsize())]
    consumer.request(batch)  # what the consumer thread does with a batch it took off the queue
    assert store.transactions == 1  # one transaction for the batch
    sent = ok_server.messages[-2:]
    assert [m["type"] for m in sent] == ["group", "track"] and sent[1]["context"]["groupId"] == "hh_1"


def test_the_consumer_offers_the_gil_to_the_app_unless_the_app_is_a_batch_ahead(name, ok_server, tmp_path,
                                                                               monkeypatch):
    offers = []
    monkeypatch.setattr(sdk, "_offer_gil", lambda: offers.append(1))
    hooked = install(client_of(name, ok_server.url), config(tmp_path), store=MemoryStore())
    hooked.join()  # consumer stopped: this thread takes the batches as it would
    for i in range(2 * sdk.YIELD_EVERY):
        hooked.track(f"u{i}", "Viewed")
    [consumer] = hooked.consumers
    first = [hooked.queue.get() for _ in range(sdk.YIELD_EVERY)]
    consumer.request(first)  # as many again wait in the queue: the app is ahead, the GIL is not offered
    assert offers == []
    consumer.request([hooked.queue.get() for _ in range(sdk.YIELD_EVERY)])  # the queue is empty now
    assert offers == [1]
    assert len(ok_server.messages) == 2 * sdk.YIELD_EVERY


def test_consumer_runs_groupspec_in_its_own_thread(name, ok_server, tmp_path):
    store = ThreadRecordingStore()
    client = install(client_of(name, ok_server.url), config(tmp_path), store=store)
    for i in range(20):
        client.track(f"u{i}", "Viewed")
    client.flush()
    client.join()
    assert threading.get_ident() not in store.threads and len(store.threads) == 1
    assert len(ok_server.messages) == 20 and store.transactions <= 20


def test_consumer_drop_is_reported_quarantined_and_counted(name, ok_server, tmp_path):
    drops = []
    client = install(client_of(name, ok_server.url), config(tmp_path), store="memory://",
                     on_drop=lambda msg, violations: drops.append((msg, violations)))
    ok, msg = client.track("u1", "Viewed", {"day": date(2026, 1, 2)}, context={"groupId": "not stable"})
    assert ok is True  # the call returned before groupspec decided
    client.track("u1", "Viewed")
    client.flush()
    [(dropped, violations)] = drops
    assert dropped["messageId"] == msg["messageId"] and dropped["properties"]["day"] == date(2026, 1, 2)
    assert [v["code"] for v in violations] == ["invalid_group_id"]
    assert len(ok_server.messages) == 1 and (tmp_path / "quarantine.jsonl").exists()
    counts = hook_of(client).counts
    assert counts.forwarded == 1 and dict(counts.quarantined) == {"invalid_group_id": 1}


def test_sync_mode_decides_in_the_callers_post(name, ok_server, tmp_path):
    drops = []
    client = install(client_of(name, ok_server.url, sync_mode=True), config(tmp_path), store="memory://",
                     on_drop=lambda msg, violations: drops.append(msg))
    client.group("u1", "hh_1")
    assert client.track("u1", "Viewed")[0] is True
    assert ok_server.messages[-1]["context"]["groupId"] == "hh_1"  # posted at the call, enriched
    assert client.track("u1", "Viewed", context={"groupId": "x y"})[0] is True
    assert len(ok_server.messages) == 2 and len(drops) == 1


# 7. many processes

def test_worker_processes_share_the_default_store(ok_server, tmp_path):
    path = tmp_path / "groupspec.toml"
    path.write_text(f'[contract]\nversion = "procs"\ngroup_id_pattern = "^hh_[0-9x]+$"\n'
                    f'[quarantine]\npath = "{tmp_path / "quarantine.jsonl"}"\n')
    processes, threads, per_thread = 4, 8, 50
    workers = [subprocess.Popen([sys.executable, SUPPORT, "segment", ok_server.url, str(tmp_path), str(path), str(p),
                                 str(threads), str(per_thread)], stdout=subprocess.PIPE, text=True)
               for p in range(processes)]
    reports = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["errors"] for r in reports] == [[]] * processes
    assert [r["failures"] for r in reports] == [0] * processes
    assert (tmp_path / "groupspec.db").exists() and not (tmp_path / "quarantine.jsonl").exists()
    assert len(ok_server.messages) == processes * threads * (per_thread + 1)
    assert sum(r["forwarded"] for r in reports) == processes * threads * (per_thread + 1)
    for msg in ok_server.messages:
        if msg["type"] == "track":
            assert msg["context"]["groupId"] == "hh_" + msg["userId"][1:].replace("_", "x")
