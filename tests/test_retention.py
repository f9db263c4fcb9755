"""Retention (`[store] retention`): the config, what a message older than the window sees, and a store that levels
off while a long stream grows (1,000,000 messages)."""

from __future__ import annotations

import tomllib
from datetime import datetime, timedelta, timezone

import orjson
import pytest
import segment.analytics
from batch_server import BatchServer
from core_support import config, group, identify, track, unix
from groupspec.middleware import ConfigError, Engine, install, open_store
from groupspec.middleware.config import parse_config
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.middleware.stores.sqlite import SQLiteStore
from groupspec.plugin.cli import main
from groupspec.plugin.customerio.mapping import CUSTOMERIO
from hypothesis import HealthCheck, given, settings
from redis_support import RedisSandbox, needs_redis
from retention_support import PEOPLE, PEOPLE_CONTRACT, PEOPLE_RETENTION, TOML, dated, run_stream
from sdk_support import make_config


def test_retention_shorter_than_a_rollup_window_is_a_config_error_naming_the_file_and_key():
    with pytest.raises(ConfigError, match=r"^test\.toml: store\.retention: expected at least the longest rollup "
                                          r"count_window plus rollup_interval of \[contract\] \(605100s\), got '1d'"):
        config('[store]\nretention = "1d"\n[contract.rollups.logins]\nevent = "Login"\ncount_window = "7d"\n')
    config('[store]\nretention = "8d"\n[contract.rollups.logins]\nevent = "Login"\ncount_window = "7d"\n')


def test_a_source_contract_rollup_window_counts_too():
    with pytest.raises(ConfigError, match=r"store\.retention: .* of \[sources\.web\.contract\]"):
        config('[store]\nretention = "2d"\n[sources.web.contract.rollups.logins]\nevent = "Login"\n'
               'count_window = "30d"\n')


@pytest.mark.parametrize("key", ["retention", "compact_every"])
@pytest.mark.parametrize("value", ["90", "90 days", "0d", "-1d", "1.5d"])
def test_a_bad_duration_is_a_config_error(key, value):
    with pytest.raises(ConfigError, match=rf"^test\.toml: store\.{key}: expected a duration like 30d, 6h, 5m or 90s"):
        config(f'[store]\n{key} = "{value}"\n')


def test_durations_in_days_hours_and_minutes():
    assert config('[store]\nretention = "90d"\n').retention_seconds == 90 * 86400
    assert config('[store]\nretention = "12h"\n').retention_seconds == 12 * 3600
    assert config('[store]\nretention = "30m"\n').retention_seconds == 1800
    assert config("").retention_seconds is None


def chain(toml: str, store_url: str = "memory://") -> Engine:
    """A replay-style engine (stream time) with the Customer.io mapping."""
    return Engine(config(toml), open_store(store_url), destination=CUSTOMERIO, clock=None)


@pytest.mark.parametrize("compacted", [False, True])
def test_a_message_older_than_the_window_is_resolved_as_at_the_windows_start_and_says_so(compacted):
    engine = chain('[store]\nretention = "2d"\n')
    engine.run(group("u1", "g1", days=0))
    engine.run(group("u1", "g2", days=1))  # the latest join: in force from day 1
    engine.run(track("u9", days=10))  # stream time: day 10, the window starts on day 8
    if compacted:
        engine.compact(force=True)
    (late,) = engine.run(track("u1", days=0.5))  # at its own time u1 was only in g1
    assert late.resolution == "membership" and late.group_id == "g2"
    assert late.body["context"]["groupspec"]["resolved_as_of"] == "2026-01-09T00:00:00.000Z"
    assert late.body["timestamp"] == "2026-01-01T12:00:00Z"  # its own time is forwarded unchanged
    (recent,) = engine.run(track("u1", days=9))
    assert recent.group_id == "g2" and "resolved_as_of" not in recent.body["context"]["groupspec"]


def test_without_retention_an_old_message_sees_its_own_time():
    engine = chain("")
    for message in (group("u1", "g1", days=0), group("u1", "g2", days=1), track("u9", days=10)):
        engine.run(message)
    (late,) = engine.run(track("u1", days=0.5))
    assert late.group_id == "g1" and "resolved_as_of" not in late.body["context"]["groupspec"]


def test_the_engine_compacts_at_most_every_compact_every_of_its_time():
    engine = chain('[store]\nretention = "2d"\ncompact_every = "1d"\n')
    engine.run(track("u1", days=10))
    assert engine.compact() is not None
    engine.run(track("u1", days=10.5))
    assert engine.compact() is None
    engine.run(track("u1", days=11))
    assert engine.compact() is not None
    assert chain("").compact(force=True) is None  # no retention: nothing is ever removed


@pytest.mark.long  # issue 20: over ~20 s; `python -m pytest -m long`
def test_the_sqlite_arrival_records_level_off(tmp_path):
    engine = Engine(parse_config(tomllib.loads(TOML), "t.toml"), open_store(f"sqlite:///{tmp_path}/s.db"),
                    destination=CUSTOMERIO, clock=None)
    sizes = run_stream(engine, 100_000, days=20, samples=4)  # 5 days a sample, a 3-day window
    arrivals = [size["arrivals"] for size in sizes]
    assert max(arrivals[1:]) <= 1.2 * min(arrivals[1:]), arrivals  # 50k -> 100k messages: about the window's 15k
    assert max(arrivals) < 25_000


@pytest.mark.long  # issue 20: over ~20 s; `python -m pytest -m long`
def test_a_million_messages_leave_a_store_of_the_same_size_as_a_quarter_million():
    engine = Engine(parse_config(tomllib.loads(TOML), "t.toml"), open_store("memory://"), destination=CUSTOMERIO,
                    clock=None)
    sizes = run_stream(engine, 1_000_000, days=40, samples=8)  # 5 days of event time a sample, a 3-day window
    totals = [sum(size.values()) for size in sizes]
    assert max(totals[1:]) <= 1.25 * min(totals[1:]), totals  # 250k -> 1M messages (4x): the store levels off


def test_the_service_compacts_between_chunks_and_shows_the_store_size(tmp_path, cio):
    import httpx
    from service_harness import OPERATOR_TOKEN, WRITE_KEYS, ThreadService, metrics, wait_for, write_config
    path = write_config(tmp_path, cio, service={"operator_token": OPERATOR_TOKEN})
    path.write_text(path.read_text().replace("[store]\n", '[store]\nretention = "1d"\ncompact_every = "1s"\n'))
    old = [{"type": "group", "userId": "u1", "groupId": f"hh_{n}", "messageId": f"j{n}{i}",
            "timestamp": f"2026-01-0{i + 1}T00:00:00Z", "traits": {"plan": "pro"}} for n in (1, 2) for i in (0, 1)]
    with ThreadService(path) as svc:
        assert httpx.post(svc.url + "/v1/batch", json={"batch": old}, auth=(WRITE_KEYS["web"], "")).status_code == 200
        wanted = {'groupspec_store_records{kind="arrivals"}': 0, 'groupspec_store_records{kind="memberships"}': 2,
                  'groupspec_store_records{kind="traits"}': 2}  # four joins and trait values: the latest per group
        wait_for(lambda: cio.accepted and all(metrics(svc.url).get(k) == v for k, v in wanted.items()))


def test_store_compact_prints_what_it_removed_and_the_size_after(tmp_path, capsys):
    from groupspec.plugin.cli import main
    url = f"sqlite:///{tmp_path}/store.db"
    store = open_store(url)
    store.admit("old", float(unix(days=0)))  # 2026-01-01: long before the window
    store.record_membership("u:1", "1", "g1", float(unix(days=0)), True)
    store.record_membership("u:1", "1", "g1", float(unix(days=1)), True)
    store.close()
    (tmp_path / "groupspec.toml").write_text(f'[store]\nurl = "{url}"\nretention = "1d"\n')
    assert main(["store", "compact", "--config", str(tmp_path / "groupspec.toml")]) == 0
    rows = dict(line.split("\t", 1) for line in capsys.readouterr().out.splitlines())
    assert rows["kind"] == "removed\tkept"
    assert rows["arrivals"] == "1\t0" and rows["memberships"] == "1\t1"


def test_store_compact_without_retention_is_a_config_error(tmp_path, capsys):
    from groupspec.plugin.cli import main
    (tmp_path / "groupspec.toml").write_text(f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n')
    assert main(["store", "compact", "--config", str(tmp_path / "groupspec.toml")]) == 2
    assert "store.retention: expected a duration" in capsys.readouterr().err


def test_a_replay_compacts_at_stream_time(tmp_path):
    from groupspec.plugin.replay import Replay
    url = f"sqlite:///{tmp_path}/store.db"
    toml = '[store]\nretention = "2d"\n[contract]\nfuture_tolerance = "100000d"\n'
    replay = Replay(parse_config(tomllib.loads(toml), "t.toml"), tmp_path / "out", store_url=url)
    replay.run((track("u1", days=day / 10, messageId=f"m{day}"), None) for day in range(100))  # 10 days
    store = open_store(url)
    assert store.size()["arrivals"] < 40  # about the last 2 days' 20; 100 without retention
    store.close()


# the SDK hook: it records an arrival per SDK call too, so it compacts as the service does (after the hand-over)

@pytest.mark.parametrize("mode", ["consumer", "inline"])
def test_the_sdk_hook_compacts_its_store(tmp_path, mode):

    url = f"sqlite:///{tmp_path / 'gs.db'}"
    old = datetime.now(timezone.utc) - timedelta(hours=3)
    with BatchServer() as server:
        client = segment.analytics.Client("wk", host=server.url, upload_interval=0.01)
        install(client, make_config(tmp_path, store={"retention": "1h", "compact_every": "1m"}), store=url, mode=mode)
        for i in range(5):  # three hours old: outside the one-hour window
            client.track(f"u{i}", "Viewed", timestamp=old)
        client.flush()
        client.join()
        client = segment.analytics.Client("wk", host=server.url, upload_interval=0.01)
        install(client, make_config(tmp_path, store={"retention": "1h", "compact_every": "1m"}), store=url, mode=mode)
        client.track("u9", "Viewed")  # now: the new hook's first batch compacts
        client.flush()
        client.join()
        assert len(server.messages) == 6  # every call still reached the wire
    store = open_store(url)
    try:
        assert store.size()["arrivals"] == 1  # only the message inside the window keeps its arrival record
    finally:
        store.close()


def test_a_backfill_compacts_its_store_once_per_run(tmp_path):
    (tmp_path / "g.toml").write_text(f'[store]\nretention = "1h"\n[quarantine]\npath = "{tmp_path / "q.jsonl"}"\n')
    rows = [{"type": "track", "userId": f"u{i}", "event": "Viewed", "messageId": f"m{i}",
             "timestamp": "2026-11-27T00:00:00Z" if i < 4 else "2026-11-27T23:30:00Z"} for i in range(5)]
    (tmp_path / "in.jsonl").write_text("".join(orjson.dumps(row).decode() + "\n" for row in rows))
    url = f"sqlite:///{tmp_path / 'gs.db'}"
    assert main(["backfill", str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "g.toml"), "--store", url,
                 "--dry-run", "--out", str(tmp_path / "out"), "--at", "2026-11-28T00:00:00Z", "--quiet"]) == 0
    store = open_store(url)
    try:
        assert store.size()["arrivals"] == 1  # a day old: gone; half an hour before --at: kept
    finally:
        store.close()


# an identity link is identity, not history: retention keeps every link whatever its age (issue 17, item 3)

@pytest.mark.parametrize("kind", ["memory", "sqlite", pytest.param("redis", marks=needs_redis)])
def test_retention_does_not_split_a_person_whose_ids_were_linked_before_the_window(kind, tmp_path):
    answers = []
    for toml in ("", '[store]\nretention = "30d"\ncompact_every = "1d"\n'):
        sandbox = RedisSandbox()
        store = {"memory": MemoryStore, "sqlite": lambda: SQLiteStore(str(tmp_path / f"{len(answers)}.db")),
                 "redis": sandbox.open}[kind]()
        engine = Engine(config(toml), store, destination=CUSTOMERIO, clock=None)
        try:
            engine.run(group(None, "hh_1", days=0, anon="anon_1"))  # an invited visitor joins the household
            engine.run(identify("user_1", days=1, anon="anon_1"))  # signs up: the one message with both ids
            for day in range(2, 62):  # 60 days of traffic
                engine.run(track("user_1", days=day))
                engine.compact()
            (later,) = engine.run(track("user_1", days=62))
            answers.append((later.resolution, later.group_id))
        finally:
            store.close()
            sandbox.clean()
    assert answers == [("membership", "hh_1")] * 2  # without retention, then with it


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream=PEOPLE)
def test_retention_never_changes_an_answer_inside_the_window(kind, stream):
    """Two engines, with and without retention, see the same messages (each inside the window when it arrives):
    every one is forwarded or quarantined, enriched and mapped alike, and the stores hold the same links."""
    stores = [{"memory": MemoryStore, "sqlite": lambda: SQLiteStore(":memory:")}[kind]() for _ in range(2)]
    compacted, whole = (Engine(config(toml), store, destination=CUSTOMERIO, clock=None)
                        for toml, store in zip((PEOPLE_RETENTION + PEOPLE_CONTRACT, PEOPLE_CONTRACT), stores))
    try:
        for message in dated(stream):
            (one,), (other,) = compacted.run(message), whole.run(message)
            assert (one.quarantined, one.violations, one.body, one.ops) == (
                other.quarantined, other.violations, other.body, other.ops)
            compacted.compact()
        for person in ("u:u0", "u:u1", "u:u2", "a:a0", "a:a1", "a:a2"):
            assert sorted(stores[0].identities(person)) == sorted(stores[1].identities(person))
    finally:
        for store in stores:
            store.close()
