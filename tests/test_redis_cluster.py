"""The Redis store on a Redis Cluster (`redis+cluster://`): URLs, and an outage that quarantines, never answers
wrongly. The store's behaviour on a cluster is the store suite's (tests/test_stores.py, `redis-cluster`)."""

from __future__ import annotations

import pytest
from groupspec.middleware import Engine
from groupspec.middleware.config import parse_config
from groupspec.middleware.stores import StoreError, open_store
from groupspec.middleware.stores.redis import RedisStore
from redis_support import LocalCluster, RedisSandbox, free_port, needs_redis_server

USERS = [f"user{i}" for i in range(12)]


def test_open_store_routes_cluster_urls_to_the_redis_store_without_connecting():
    store = open_store(f"redis+cluster://127.0.0.1:{free_port()},127.0.0.1:{free_port()}")
    assert isinstance(store, RedisStore) and store.cluster
    store.close()


@pytest.mark.parametrize("url", ["redis+cluster://", "redis+cluster://:s3cret@hostonly", "redis+cluster://h:1,h:x"])
def test_a_bad_cluster_url_is_a_store_error_naming_the_expected_form(url):
    with pytest.raises(StoreError, match=r"expected redis\+cluster://host:port\[,host:port\]") as caught:
        RedisStore(url)
    assert "s3cret" not in str(caught.value)


def test_an_unreachable_cluster_quarantines_the_message_without_the_password():
    store = RedisStore(f"redis+cluster://:s3cret@127.0.0.1:{free_port()}")
    msg, = Engine(parse_config({}), store).run(b'{"type":"track","userId":"u1","event":"Order Placed"}')
    store.close()
    assert msg.quarantined and [v["code"] for v in msg.violations] == ["store_unavailable"]
    assert "unavailable" in msg.violations[0]["message"] and "s3cret" not in msg.violations[0]["message"]


@needs_redis_server
def test_a_master_that_goes_away_quarantines_store_unavailable_and_never_answers_wrongly():
    with LocalCluster() as cluster:  # its own cluster: the session's stays whole
        sandbox = RedisSandbox(cluster.url)
        store = sandbox.open()
        engine = Engine(parse_config({}), store)
        for i, user in enumerate(USERS):
            join = {"type": "group", "userId": user, "groupId": f"hh_{i}", "messageId": f"join-{user}",
                    "timestamp": "2026-11-01T10:00:00Z"}
            assert not engine.run(join)[0].quarantined
        nodes = {node.port: node for node in store.redis.get_primaries()}
        gone = cluster.ports[0]
        lost = {user for user in USERS if store.redis.get_node_from_key(store.keys.person("u:" + user, "e")).port == gone}
        arrivals_lost = store.redis.get_node_from_key(store.keys.arrivals("n")).port == gone
        assert gone in nodes and (lost or arrivals_lost)  # 12 users over three masters: some live on the one killed
        cluster.kill(0)
        for i, user in enumerate(USERS):
            event = {"type": "track", "userId": user, "event": "Order Placed", "messageId": f"order-{user}",
                     "timestamp": "2026-11-02T10:00:00Z"}
            msg, = engine.run(event)
            if arrivals_lost or user in lost:
                assert msg.quarantined and [v["code"] for v in msg.violations] == ["store_unavailable"], user
                assert f"{cluster.url} unavailable" in msg.violations[0]["message"]
            elif not msg.quarantined:  # what it answers is right
                assert msg.body["context"]["groupId"] == f"hh_{i}" and msg.resolution == "membership"
            else:  # or the cluster already calls itself down
                assert [v["code"] for v in msg.violations] == ["store_unavailable"]
        store.close()



@needs_redis_server
def test_masters_that_forgot_the_scripts_still_answer_and_learn(redis_cluster):
    sandbox = RedisSandbox(redis_cluster)
    store = sandbox.open()
    try:
        store.link("a:anon", "u:1")
        for node in store.redis.get_primaries():  # as after a restart: no script cached
            node.redis_connection.script_flush()
        store.record_membership("a:anon", "1", "hh_a", 100.0, True)
        found = store.lookup("m1", ["u:1"], 200.0, ["status"])
        assert found.persons == ["u:1", "a:anon"] and [m.group_id for m in found.memberships] == ["hh_a"]
    finally:
        store.close()
        sandbox.clean()
