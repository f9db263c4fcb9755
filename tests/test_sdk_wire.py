"""What reaches the wire from installed SDK clients (a local `/v1/batch` server, gzip included), many threads at
once, and the SDK modules' default clients."""

from __future__ import annotations

import threading

import pytest
from batch_server import BatchServer
from groupspec.middleware import install
from sdk_support import SDKS, make_config, quarantined


@pytest.fixture
def server():
    with BatchServer() as started:
        yield started


@pytest.fixture(params=sorted(SDKS))
def name(request):
    return request.param


def start(name, server, config, mode="consumer", **options):
    """An installed client of SDK `name` posting to `server`, gzip on (Segment's is off by default)."""
    client = SDKS[name].Client("wk_test", host=server.url, gzip=True, upload_interval=0.01, **options)
    return install(client, config, store="memory://", mode=mode)


def test_enriched_messages_reach_the_wire_gzipped(name, server, tmp_path):
    client = start(name, server, make_config(tmp_path))
    client.group("u1", "hh_1", {"plan_type": "basic"})
    client.track("u1", "Order Placed", {"total": 5})
    client.track("u2", "Order Placed", context={"groupId": "not a stable id"})  # dropped
    client.identify("u1", {"plan_type": "family", "name": "Ann"})
    client.flush()
    client.join()
    assert set(server.encodings) == {"gzip"}
    group, track, identify = server.messages
    assert group["type"] == "group" and group["groupId"] == "hh_1"
    assert track["context"]["groupId"] == "hh_1" and track["context"]["groups"] == {"1": "hh_1"}
    assert track["context"]["groupspec"]["resolution"] == "membership"
    assert track["messageId"] and track["timestamp"]
    traits = identify["context"]["traits"] if name == "rudderstack" else identify["traits"]
    assert traits == {"name": "Ann"}
    if name == "rudderstack":
        assert {m["channel"] for m in server.messages} == {"server"}
    [record] = quarantined(tmp_path)
    assert record["message"]["userId"] == "u2"


def test_sync_mode_posts_at_the_call(name, server, tmp_path):
    client = start(name, server, make_config(tmp_path), mode="inline", sync_mode=True)
    assert client.track("u1", "Viewed")[0] is True
    assert [m["event"] for m in server.messages] == ["Viewed"]
    assert client.track("u1", "Viewed", context={"groupId": "a@b.co"})[0] is False
    assert len(server.messages) == 1


@pytest.mark.parametrize("store", ["memory://", "sqlite"])
def test_many_threads_share_one_client(server, tmp_path, store):
    config = make_config(tmp_path)
    client = SDKS["segment"].Client("wk_test", host=server.url, gzip=True, upload_interval=0.01)
    install(client, config, store=f"sqlite:///{tmp_path / 'gs.db'}" if store == "sqlite" else store, mode="inline")
    threads, per_thread, results, errors = 6, 60, [], []

    def app(t: int) -> None:
        try:
            for i in range(per_thread):
                user = f"u{t}_{i % 5}"
                if i < 5:
                    results.append(client.group(user, f"hh_{t}"))
                elif i % 10 == 0:
                    results.append(client.track(user, "Order Placed", context={"groupId": "bad id"}))
                else:
                    results.append(client.track(user, "Order Placed", {"i": i}))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    workers = [threading.Thread(target=app, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    client.flush()
    client.join()
    assert errors == []
    sent = [msg for ok, msg in results if ok]
    dropped = [msg for ok, msg in results if not ok]
    assert len(sent) + len(dropped) == threads * per_thread
    assert len(dropped) == len(quarantined(tmp_path)) == threads * 5
    assert sorted(m["messageId"] for m in server.messages) == sorted(m["messageId"] for m in sent)
    for msg in server.messages:
        if msg["type"] == "track":
            assert msg["context"]["groupId"] == "hh_" + msg["userId"][1:].split("_")[0]


@pytest.fixture
def module(name, monkeypatch):
    """The SDK module with its settings and default client restored after the test."""
    mod = SDKS[name]
    for attr in ("default_client", "_proxy", "write_key", "send", "host"):
        monkeypatch.setattr(mod, attr, getattr(mod, attr))
    mod.write_key, mod.default_client = "wk_default", None
    yield mod
    if mod.default_client:
        mod.default_client.join()


def test_default_client_is_hooked_when_created(module, server, tmp_path):
    module.host = server.url
    seen = []
    probe = [lambda m: seen.append(m["type"]) or m]
    assert install(module, make_config(tmp_path), after=probe, store="memory://") is module
    assert module.default_client is None  # created lazily, from the settings at first use
    module.group("u1", "hh_1")
    module.track("u1", "Order Placed")
    module.flush()
    assert seen == ["group", "track"]
    assert server.messages[1]["context"]["groupId"] == "hh_1"
    assert module.default_client._enqueue.original.__self__ is module.default_client


def test_existing_and_replaced_default_clients_are_hooked(module, tmp_path):
    module.send = False
    first = module.Client("wk_default", send=False)
    module.default_client = first
    install(module, make_config(tmp_path), store="memory://", mode="inline")
    assert first.track("u1", "Viewed")[1]["context"]["groupspec"]["resolution"] == "unresolved"
    module.default_client = second = module.Client("wk_default", send=False)
    module.track("u1", "Viewed")
    assert second._enqueue.gate is first._enqueue.gate
