"""What one message costs in round trips to Redis: counted (not timed) with `redis_support.RoundTrips`."""

from __future__ import annotations

import pytest
from groupspec.middleware import Engine, Outcome
from groupspec.middleware.config import parse_config
from redis_support import RedisSandbox, RoundTrips, needs_redis, needs_redis_server

CONFIG = parse_config({"contract": {"attach_group_traits": ["status"], "group_traits": {"status": {"type": "string"}}}})
JOIN = {"type": "group", "userId": "u1", "groupId": "hh_a", "traits": {"status": "active"}, "messageId": "j1",
        "timestamp": "2026-11-01T10:00:00Z"}


def track(message_id: str, **ids: str) -> dict:
    return {"type": "track", "event": "Order Placed", "messageId": message_id, "timestamp": "2026-11-02T10:00:00Z",
            **ids}


@pytest.fixture(params=[pytest.param("redis", marks=needs_redis), pytest.param("redis-cluster", marks=needs_redis_server)])
def engine(request):
    sandbox = RedisSandbox(request.getfixturevalue("redis_cluster")) if request.param == "redis-cluster" else RedisSandbox()
    store = sandbox.open()
    engine = Engine(CONFIG, store)
    engine.kind = request.param
    msg, = engine.run(JOIN)
    assert not msg.quarantined
    yield engine
    store.close()
    sandbox.clean()


def cost(engine: Engine, message: dict) -> tuple[int, dict]:
    """The round trips one message takes through the engine, and what it was forwarded as."""
    with RoundTrips() as trips:
        msg, = engine.run(message)
    assert not msg.quarantined, msg.violations
    return trips.count, msg.body


def chunk_cost(engine: Engine, chunk: list[dict]) -> tuple[int, Outcome]:
    """The round trips of one door's chunk (`Engine.prefetch`, then each message, in one transaction)."""
    with RoundTrips() as trips:
        with engine.transaction():
            engine.prefetch([(message, None) for message in chunk])
            outcome = Outcome()
            for message in chunk:
                engine.process(message, into=outcome)
    return trips.count, outcome


def test_a_track_message_resolved_by_membership_costs_one_round_trip_on_a_single_redis(engine):
    if engine.kind != "redis":
        pytest.skip("a single Redis")
    trips, body = cost(engine, track("t1", userId="u1"))
    assert body["context"]["groupId"] == "hh_a" and body["context"]["groupspec"]["group_traits"] == {"status": "active"}
    assert trips == 1  # admit, identities, memberships, deletions and the traits snapshot: one script


def test_what_a_message_teaches_is_written_in_one_more_round_trip(engine):
    if engine.kind != "redis":
        pytest.skip("a single Redis")
    trips, body = cost(engine, track("t2", userId="u1", anonymousId="anon"))  # links the two ids
    assert body["context"]["groupId"] == "hh_a" and trips == 2


def test_a_group_call_with_traits_costs_two_round_trips_on_a_single_redis(engine):
    if engine.kind != "redis":
        pytest.skip("a single Redis")
    trips, _ = cost(engine, {**JOIN, "messageId": "j2", "groupId": "hh_b", "traits": {"status": "new"}})
    assert trips == 2  # the lookup (with the stale-trait check), then the membership and the traits in one pipeline


def test_a_track_message_resolved_by_membership_costs_two_rounds_on_a_cluster(engine):
    if engine.kind != "redis-cluster":
        pytest.skip("a Redis Cluster")
    engine.store.admit("warm-up")  # the cluster client learns the slot map on its first command
    trips, body = cost(engine, track("t1", userId="u1"))
    assert body["context"]["groupId"] == "hh_a" and body["context"]["groupspec"]["group_traits"] == {"status": "active"}
    assert trips == 2  # the arrival number, links and events; then the group's deletions and traits
    trips, body = cost(engine, track("t3", userId="nobody"))
    assert "groupId" not in body["context"] and trips == 1


def test_a_group_call_with_traits_costs_four_rounds_on_a_cluster(engine):
    if engine.kind != "redis-cluster":
        pytest.skip("a Redis Cluster")
    engine.store.admit("warm-up")
    trips, _ = cost(engine, {**JOIN, "messageId": "j2", "groupId": "hh_b", "traits": {"status": "new"}})
    # the arrival number, links, events and the group's trait histories (the stale-trait check); the deletions of
    # the person's groups; the new membership's seq; the writes
    assert trips == 4


def test_a_prefetched_chunk_of_track_messages_costs_a_few_round_trips_in_all(engine):
    """A door's chunk (`Engine.prefetch`, then each message in one transaction): the arrival numbers, links,
    events, deletions and traits of the chunk are read at once (one script; on a cluster pipelined rounds), the
    arrival records written at the end."""
    engine.store.admit("warm-up")
    people = [{**JOIN, "userId": f"p{i}", "groupId": f"hh_{i % 7}", "messageId": f"jp{i}"} for i in range(40)]
    for message in people:
        engine.run(message)
    tracks = [track(f"c{i}", userId=f"p{i % 40}") for i in range(100)]
    trips, outcome = chunk_cost(engine, tracks)
    assert [body["context"]["groupId"] for body in outcome.forwarded] == [f"hh_{i % 40 % 7}" for i in range(100)]
    assert all(body["context"]["groupspec"]["group_traits"] == {"status": "active"} for body in outcome.forwarded)
    # the migration counter (`transaction`), the prefetch (a cluster: arrivals, persons; their groups), the records
    assert trips == (3 if engine.kind == "redis" else 4)


def test_a_replay_on_redis_prefetches_each_chunk(engine, tmp_path):
    """`groupspec replay --store redis://...`: a chunk of track messages costs a few round trips, not one each;
    the same outputs as a replay on the memory store."""
    from groupspec.plugin.replay import Replay

    url = f"{engine.store._url}?prefix={engine.store.keys.prefix}"
    stream = [({**JOIN, "userId": "ru", "messageId": "rj"}, None),
              *((track(f"r{i}", userId="ru"), None) for i in range(150))]
    with RoundTrips() as trips:
        Replay(CONFIG, tmp_path / "redis", store_url=url).run(stream)
    Replay(CONFIG, tmp_path / "memory", store_url="memory://").run(stream)
    for name in ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json"):
        assert (tmp_path / "redis" / name).read_bytes() == (tmp_path / "memory" / name).read_bytes()
    assert trips.count < 40  # 151 messages, two chunks (one at a time: over 150); opening the store included


def test_every_common_message_of_a_chunk_is_foreseen_by_its_prefetch(engine):
    """Tracks naming their group, of anonymous people or with an integer user id, identifies and pages: every
    lookup of the chunk is answered from its prefetch (none asks the server again)."""
    engine.store.admit("warm-up")
    chunk = [track("n7", userId=12345), track("n1", userId="u1", context={"groupId": "hh_a"}),
             track("n2", anonymousId="anon-1"),
             {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "n3",
              "timestamp": "2026-11-02T10:00:00Z"},
             {"type": "page", "userId": "u1", "name": "Home", "messageId": "n4", "timestamp": "2026-11-02T10:00:00Z"},
             track("n5", userId="U1 "), track("n6", userId="u1", properties={"group_id": "hh_b"})]
    trips, outcome = chunk_cost(engine, chunk)
    assert not outcome.quarantined and len(outcome.forwarded) == len(chunk)
    assert trips == 3  # the migration counter, the prefetch (every group named), the arrival records


def test_a_message_the_prefetch_did_not_foresee_costs_its_own_round_trips_only(engine):
    """A message without a `messageId` (its id is made from its content: not foreseen) first in a chunk: its
    arrival record and its person are read then; the chunk's other lookups are still answered from the prefetch."""
    engine.store.admit("warm-up")
    unforeseen = {key: value for key, value in track("x", userId="stranger").items() if key != "messageId"}
    chunk = [unforeseen, *(track(f"f{i}", userId="u1") for i in range(20))]
    trips, outcome = chunk_cost(engine, chunk)
    assert not outcome.quarantined and len(outcome.forwarded) == len(chunk)
    # a chunk's (a cluster: one more round, for the groups of the persons' events), its arrival record, its person
    assert trips == (5 if engine.kind == "redis" else 6)  # 23 when it ended the chunk's answers


def test_the_service_worker_prefetches_its_chunk(engine, tmp_path):
    """`groupspec serve` on Redis: the delivery process's chunk of spooled requests (batches, as the SDKs post
    them) is read in a few round trips, not one or more per message."""
    from groupspec.middleware.jsonl import JsonlFile
    from groupspec.plugin.spool import Entry, Spool, SpoolQueue
    from groupspec.plugin.service.worker import Worker

    import orjson

    engine.store.admit("warm-up")
    engine.run({**JOIN, "userId": "w1", "messageId": "wj1"})
    batches = [orjson.dumps({"batch": [track(f"w{r}-{i}", userId="w1") for i in range(50)]}) for r in range(4)]
    entries = [Entry(r + 1, None, None, 1793750400.0, 50, body) for r, body in enumerate(batches)]
    queue = SpoolQueue(Spool(str(tmp_path / "spool.db")).path)
    worker = Worker(queue, engine, JsonlFile(tmp_path / "quarantine.jsonl"), None, None)
    with RoundTrips() as trips:
        outcome = worker.process(entries)
    assert len(outcome.forwarded) == 200 and not outcome.quarantined
    assert all(body["context"]["groupId"] == "hh_a" for body in outcome.forwarded)
    assert trips.count <= (3 if engine.kind == "redis" else 4)  # one at a time: over 200


def test_the_sdk_hook_prefetches_its_batch(engine):
    """The SDK hook on Redis: the consumer's batch of 100 is read in a few round trips before it is decided."""
    segment = pytest.importorskip("segment.analytics")
    from groupspec.middleware import install
    from groupspec.middleware.sdk import hook_of

    url = f"{engine.store._url}?prefix={engine.store.keys.prefix}"
    client = segment.Client("wk", send=False)
    hook = hook_of(install(client, CONFIG, store=url))
    engine.run({**JOIN, "userId": "s1", "messageId": "sj1"})
    batch = [{**track(f"s{i}", userId="s1"), "context": {"library": {"name": "analytics-python"}}} for i in range(100)]
    sent: list = []
    with RoundTrips() as trips:
        hook.request(sent.extend, batch)
    assert [m["context"]["groupId"] for m in sent] == ["hh_a"] * 100
    assert trips.count < 20  # the lookups of 100 messages in one prefetch (one at a time: over 100)
