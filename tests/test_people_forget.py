"""`groupspec people forget` and the files an erasure rewrites (issue 23): the quarantine, Customer.io's and the
upstream's dead letters and the spool lose the person's records (raw bytes checked, the SQLite spool's WAL
included), other people's stay; the service's worker does the same after a `User Deleted`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest
from erasure_support import found

from groupspec.middleware import Engine, load_config
from groupspec.middleware.jsonl import JsonlFile
from groupspec.middleware.stores.sqlite import SQLiteStore
from groupspec.plugin.cli import main
from groupspec.plugin.customerio.delivery import Delivery
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from groupspec.plugin.erasure import erase_people
from groupspec.plugin.spool import Spool, SpoolQueue, erase, erasing
from groupspec.plugin.service.worker import Worker

ALICE = ["alice@example.com", "anon-77"]
BOB = ["bob", "anon-88"]


def msg(user: str | None, anon: str | None, n: int, kind: str = "track", **extra) -> dict:
    body = {"type": kind, "messageId": f"m-{n}", "timestamp": f"2026-01-01T00:{n:02d}:00Z", **extra}
    if kind == "track":
        body.setdefault("event", "Order Placed")
    if user:
        body["userId"] = user
    if anon:
        body["anonymousId"] = anon
    return body


@pytest.fixture
def site(tmp_path):
    """A config whose store holds alice (with her device) and bob in hh_1, and whose files each hold both."""
    config = tmp_path / "groupspec.toml"
    config.write_text(f"""
[store]
url = "sqlite:///{tmp_path}/store.db"
[quarantine]
path = "{tmp_path}/quarantine.jsonl"
[customerio]
dead_letter = "{tmp_path}/cio-dead.jsonl"
[upstream]
dead_letter = "{tmp_path}/up-dead.jsonl"
[service]
spool = "{tmp_path}/spool.db"
[contract]
future_tolerance = "100000d"
""")
    loaded = load_config(config)
    store = SQLiteStore(f"{tmp_path}/store.db")
    engine = Engine(loaded, store, destination=CUSTOMERIO, clock=None)
    with engine.transaction():
        for n, (user, anon) in enumerate([ALICE, BOB]):
            engine.process(orjson.dumps(msg(user, anon, n, "identify", traits={"email": "alice@example.com"}
                                            if user == ALICE[0] else {})))
            engine.process(orjson.dumps(msg(user, None, 10 + n, "group", groupId="hh_1", traits={"name": "Home"})))
    store.close()
    JsonlFile(loaded.quarantine.path).extend([
        {"message": msg(*ALICE, 20), "source": None, "violations": [], "received_at": "x"},
        {"message": msg(*BOB, 21), "source": None, "violations": [], "received_at": "x"},
        {"message": '{"userId": "alice@example.com", "broken', "source": None, "violations": [], "received_at": "x"}])
    JsonlFile(loaded.customerio.dead_letter).extend([
        {"operation": {"type": "person", "action": "identify", "identifiers": {"email": "alice@example.com"}},
         "error": {}, "failed_at": "x"},
        {"operation": {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "hh_1"},
                       "cio_relationships": [{"identifiers": {"email": "alice@example.com"}},
                                             {"identifiers": {"id": "bob"}}]}, "error": {}, "failed_at": "x"},
        {"operation": {"type": "person", "action": "event", "identifiers": {"id": "bob"}, "name": "x"},
         "error": {}, "failed_at": "x"}])
    JsonlFile(loaded.upstream.dead_letter).extend([{"forwarded": msg(*ALICE, 22), "error": {}, "failed_at": "x"},
                                                   {"forwarded": msg(*BOB, 23), "error": {}, "failed_at": "x"}])
    spool = Spool(loaded.service.spool)
    spool.append([("web", None, 1.0, 2, orjson.dumps({"batch": [msg(*ALICE, 30), msg(*BOB, 31)]})),
                  ("web", "track", 1.0, 1, orjson.dumps(msg(None, "anon-77", 32)))])
    spool.close()
    return config, loaded, tmp_path


def files_of(loaded) -> dict[str, bytes]:
    paths = [loaded.quarantine.path, loaded.customerio.dead_letter, loaded.upstream.dead_letter,
             loaded.service.spool, loaded.service.spool + "-wal", loaded.store.url.removeprefix("sqlite:///"),
             loaded.store.url.removeprefix("sqlite:///") + "-wal"]
    return {path: Path(path).read_bytes() for path in paths if Path(path).is_file()}


def test_people_forget_removes_the_person_from_the_store_and_every_file_and_keeps_the_others(site, capsys):
    config, loaded, _ = site
    assert main(["people", "forget", "--config", str(config), "alice@example.com"]) == 0
    out = capsys.readouterr().out
    assert "store links\t1" in out and "store memberships\t1" in out and "quarantine\t2" in out
    assert "customerio dead letter\t1" in out and "upstream dead letter\t1" in out and "spool\t2" in out
    assert "deletion API" in out and "replay --out" in out  # the upstream's own copy, the user's own files
    for path, data in files_of(loaded).items():
        assert found(data, ALICE) == [], path
    after = files_of(loaded)
    assert b'"bob"' in after[loaded.quarantine.path] and b'"bob"' in after[loaded.upstream.dead_letter]
    dead = [orjson.loads(line) for line in after[loaded.customerio.dead_letter].splitlines()]
    assert [d["operation"].get("cio_relationships") for d in dead] == [[{"identifiers": {"id": "bob"}}], None]
    rows = SpoolQueue(loaded.service.spool).take(0, 100)
    assert [orjson.loads(r.payload)["batch"][0]["userId"] for r in rows] == ["bob"] and rows[0].messages == 1
    spool = Spool(loaded.service.spool)
    try:
        assert spool.depth == 1  # the erased messages are not waiting any more
    finally:
        spool.close()
    store = SQLiteStore(loaded.store.url.removeprefix("sqlite:///"))
    try:
        assert store.members_at("1", "hh_1", 4e9) == ["u:bob"] and store.linked_to("a:anon-88") == ["u:bob"]
    finally:
        store.close()


def test_a_dry_run_says_what_would_go_and_changes_nothing(site, capsys):
    config, loaded, _ = site
    before = files_of(loaded)
    assert main(["people", "forget", "--config", str(config), "--dry-run", "alice@example.com"]) == 0
    assert "would remove" in capsys.readouterr().out
    assert {p: d for p, d in files_of(loaded).items() if not p.endswith("-wal")} == \
        {p: d for p, d in before.items() if not p.endswith("-wal")}


def test_an_id_nobody_holds_is_nothing_to_forget(site, capsys):
    config, loaded, _ = site
    before = files_of(loaded)
    assert main(["people", "forget", "--config", str(config), "carol"]) == 0
    assert "carol: nothing to forget" in capsys.readouterr().out
    assert files_of(loaded)[loaded.quarantine.path] == before[loaded.quarantine.path]


def test_a_memory_store_is_refused_with_the_reason(site, capsys):
    config, _, _ = site
    assert main(["people", "forget", "--config", str(config), "--store", "memory://", "alice@example.com"]) == 2
    assert "memory:// lives inside the one process" in capsys.readouterr().err


def test_an_unreadable_file_is_named_and_nothing_is_erased(site, capsys):
    config, loaded, tmp_path = site
    Path(loaded.upstream.dead_letter).unlink()
    Path(loaded.upstream.dead_letter).mkdir()  # exists, cannot be read as a file (the tests run as root)
    before = files_of(loaded)
    assert main(["people", "forget", "--config", str(config), "alice@example.com"]) == 2
    err = capsys.readouterr().err
    assert loaded.upstream.dead_letter in err and "nothing was erased" in err
    assert files_of(loaded)[loaded.quarantine.path] == before[loaded.quarantine.path]
    store = SQLiteStore(loaded.store.url.removeprefix("sqlite:///"))
    try:
        assert store.linked_to("u:alice@example.com") == ["a:anon-77"]
    finally:
        store.close()


def test_customerio_gets_the_person_delete_first_and_only_for_a_user_the_store_knows(site, cio, capsys):
    config, loaded, _ = site
    text = config.read_text().replace("[customerio]\n", f'[customerio]\nurl = "{cio.url}"\nsite_id = "{cio.site_id}"\n'
                                      f'api_key = "{cio.api_key}"\nmax_retries = 0\n')
    config.write_text(text)
    assert main(["people", "forget", "--config", str(config), "alice@example.com", "carol"]) == 0
    assert cio.accepted == [{"type": "person", "action": "delete", "identifiers": {"email": "alice@example.com"}}]
    assert 'person delete sent for {"email":"alice@example.com"}' in capsys.readouterr().out


@pytest.mark.parametrize("status", [500, 400])  # not answered / refused (not dead-lettered)
def test_a_delete_customerio_does_not_take_leaves_everything_in_place(site, cio, capsys, status):
    config, loaded, _ = site
    config.write_text(config.read_text().replace(
        "[customerio]\n", f'[customerio]\nurl = "{cio.url}"\nsite_id = "{cio.site_id}"\napi_key = "{cio.api_key}"\n'
                          'max_retries = 0\n'))
    cio.script(status, count=5)
    before = files_of(loaded)
    assert main(["people", "forget", "--config", str(config), "alice@example.com"]) == 1
    assert "nothing was erased" in capsys.readouterr().err
    assert files_of(loaded)[loaded.quarantine.path] == before[loaded.quarantine.path]


def test_the_spool_erasure_waits_for_the_chunk_being_delivered(tmp_path):
    spool = Spool(tmp_path / "spool.db")
    spool.append([("web", "track", 1.0, 1, orjson.dumps(msg(*ALICE, 1)))])
    queue = SpoolQueue(tmp_path / "spool.db")
    taken, released = threading.Event(), []

    def deliver():
        with queue.delivering():
            taken.set()
            time.sleep(0.4)
            released.append(time.monotonic())

    thread = threading.Thread(target=deliver)
    thread.start()
    taken.wait(5)
    with erasing(str(tmp_path / "spool.db")):
        assert released and time.monotonic() >= released[0]  # it waited for the delivery to end
        assert erase(str(tmp_path / "spool.db"), lambda m: m.get("userId") == ALICE[0], ALICE) == 1
    thread.join()
    assert spool.depth == 0
    spool.close()
    queue.close()


def test_the_service_worker_erases_the_files_after_a_user_deleted(site):
    _, loaded, tmp_path = site
    Path(loaded.service.spool).unlink()
    for suffix in ("-wal", "-shm"):
        Path(loaded.service.spool + suffix).unlink(missing_ok=True)
    spool = Spool(loaded.service.spool)
    deleted = msg(*ALICE, 40, event="User Deleted")
    bad = msg(ALICE[0], None, 41, "group", groupId=["not", "an", "id"])  # quarantined
    spool.append([("web", None, 1.0, 3, orjson.dumps({"batch": [bad, msg(*BOB, 42), deleted]}))])
    stopping = threading.Event()
    delivery = Delivery(loaded.customerio, "s", "k", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})),
                        dead_letter=lambda *a: None, sleep=lambda s: None)
    store = SQLiteStore(loaded.store.url.removeprefix("sqlite:///"))
    worker = Worker(SpoolQueue(loaded.service.spool), Engine(loaded, store, destination=CUSTOMERIO),
                    JsonlFile(loaded.quarantine.path), delivery, None, stopping=stopping,
                    erase=lambda done: erase_people(loaded, done))
    thread = threading.Thread(target=worker.run)
    thread.start()
    deadline = time.monotonic() + 20
    while spool.depth and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the erasure runs right after the commit
    stopping.set()
    worker.wake.set()
    thread.join(10)
    spool.close()
    store.close()
    for path, data in files_of(loaded).items():  # the fixture's records of alice in every file are gone too
        assert found(data, ALICE) == [], path
    assert b'"bob"' in files_of(loaded)[loaded.quarantine.path]


@pytest.mark.parametrize("sdk_name", ["segment", "rudderstack", "customerio"])
def test_the_sdk_hook_removes_a_deleted_persons_records_from_its_quarantine(tmp_path, sdk_name):
    from sdk_support import SDKS, make_config, quarantined

    from groupspec.middleware import install

    client = install(SDKS[sdk_name].Client("wk", upload_interval=0.01), make_config(tmp_path),
                     store=f"sqlite:///{tmp_path}/hook.db", mode="inline")
    client.join()
    assert client.track("alice", "Order Placed", {"total": 3}, context={"groupId": "not a group"})[0] is False
    assert client.track("bob", "Order Placed", {"total": 4}, context={"groupId": "not a group"})[0] is False
    assert client.track("alice", "User Deleted")[0] is True
    assert [r["message"]["userId"] for r in quarantined(tmp_path)] == ["bob"]
    assert found((tmp_path / "hook.db").read_bytes(), ["alice"]) == []
