"""The Customer.io rate limit shared by every replica on one Redis store (plugin/sender/shared_ratelimit.py), and
what happens when that Redis does not answer."""

from __future__ import annotations

import multiprocessing
import socket
import threading
import time
from concurrent.futures import ProcessPoolExecutor

import httpx
import pytest
import redis
from fake_clock import FakeClock
from groupspec.middleware.config import CustomerIO
from groupspec.middleware.stores import StoreError, open_store
from groupspec.plugin.customerio.delivery import Delivery
from groupspec.plugin.sender import SendHeld, SharedTokenBucket, TokenBucket, rate_limiter
from groupspec.plugin.sender.ratelimit import LimitUnavailable
from hypothesis import given, settings
from hypothesis import strategies as st
from rate_support import most_in_one_second
from redis.crc import key_slot
from redis_support import REDIS_URL, RedisSandbox, needs_redis, sandbox_url

RATE, BURST = 50.0, 1.0


def _take_tokens(url: str, count: int, start: float) -> list[float]:
    """In a process of its own, from the wall time `start` on (so that processes take side by side): take
    `count` tokens of the shared Customer.io bucket; the times they may be used."""
    store = open_store(url)
    bucket = rate_limiter(url, store, "customerio", RATE, clock=lambda: 0.0, sleep=lambda s: None)
    assert isinstance(bucket, SharedTokenBucket)
    time.sleep(max(0.0, start - time.time()))
    slots = []
    for _ in range(count):
        slots.append(sum(bucket.take()))  # Redis time + the wait: when the request may go out
        time.sleep(0.001)  # as a sender between requests: the processes' takes interleave
    store.close()
    return slots


@pytest.fixture
def sandbox():
    box = RedisSandbox()
    yield box
    box.clean()


@needs_redis
def test_two_processes_on_one_redis_stay_within_one_rate_limit_together(sandbox):
    url = sandbox_url(sandbox)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
        first, second = pool.map(_take_tokens, [url, url], [60, 60], [time.time() + 1] * 2)
    slots = first + second
    # 120 tokens at 50/s: without a shared bucket each process alone would allow 50/s, 100/s together
    assert most_in_one_second(slots) <= RATE + BURST
    assert max(slots) - min(slots) >= (len(slots) - BURST) / RATE - 0.01


def test_two_processes_on_one_redis_cluster_stay_within_one_rate_limit_together(redis_cluster):
    sandbox = RedisSandbox(redis_cluster)
    url = sandbox_url(sandbox)
    try:
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            first, second = pool.map(_take_tokens, [url, url], [40, 40], [time.time() + 1] * 2)
    finally:
        sandbox.clean()
    assert most_in_one_second(first + second) <= RATE + BURST


def test_buckets_of_their_own_let_two_processes_send_twice_the_rate():
    # what `customerio.rate_limit` did before: every process has its own bucket
    clock = FakeClock()
    buckets = [TokenBucket(RATE, clock=clock, sleep=lambda s: None) for _ in range(2)]
    slots = []
    for _ in range(60):
        for bucket in buckets:
            slots.append(clock() + bucket.acquire())
        clock.now += 1 / RATE
    assert most_in_one_second(slots) > 1.9 * RATE


@needs_redis
def test_the_shared_bucket_is_one_hash_tagged_key_in_the_store_namespace_that_expires(sandbox):
    store = open_store(sandbox_url(sandbox))
    bucket = rate_limiter(sandbox_url(sandbox), store, "customerio", RATE, clock=lambda: 0.0, sleep=lambda s: None)
    assert bucket.key == f"{sandbox.prefix}{{limits}}:customerio"
    assert key_slot(bucket.key.encode()) == key_slot(b"{limits}")  # one slot: works on Redis Cluster
    bucket.acquire()
    client = redis.Redis.from_url(REDIS_URL)
    assert 0 < client.pttl(bucket.key) <= 1000 + 1000 * BURST / RATE + 1
    client.close()
    store.close()


def test_the_scheme_of_the_store_chooses_the_shared_bucket(tmp_path):
    class RedisLike:  # what a Redis store (single or cluster) offers the limiter: its client and key namespace
        redis = redis.Redis.from_url(REDIS_URL)
        keys = type("Keys", (), {"prefix": "acme:"})()

    for url in ("redis://10.0.0.1:6379/0", "redis+cluster://10.0.0.1:7000"):
        chosen = rate_limiter(url, RedisLike(), "customerio", RATE, clock=lambda: 0.0, sleep=lambda s: None)
        assert isinstance(chosen, SharedTokenBucket) and chosen.key == "acme:{limits}:customerio"
    for url in ("memory://", f"sqlite:///{tmp_path / 's.db'}"):
        assert isinstance(rate_limiter(url, None, "customerio", RATE, clock=lambda: 0.0, sleep=lambda s: None),
                          TokenBucket)


@needs_redis
def test_the_store_url_names_the_key_namespace(sandbox):
    store = open_store(sandbox_url(sandbox) + "&socket_keepalive=true")
    assert store.keys.prefix == sandbox.prefix
    store.link("u:1", "a:1")
    client = redis.Redis.from_url(REDIS_URL)
    assert client.exists(f"{sandbox.prefix}{{p:u:1}}:l")
    assert not client.exists("gs{p:u:1}:l")
    client.close()
    store.close()
    with pytest.raises(StoreError, match="must not contain braces"):
        open_store(f"{REDIS_URL}?prefix=a{{b}}:")


def _dead_redis_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


def _dead_bucket() -> SharedTokenBucket:
    client = redis.Redis.from_url(_dead_redis_url(), socket_connect_timeout=0.5)
    return SharedTokenBucket(client, "gstest:{limits}:customerio", RATE, sleep=lambda s: None)


OPS = [{"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": f"hh_{i}"},
        "attributes": {}} for i in range(5)]


def test_without_its_shared_limit_delivery_sends_nothing_and_keeps_every_operation():
    with pytest.raises(LimitUnavailable, match="does not answer"):
        _dead_bucket().acquire()
    posted = []
    transport = httpx.MockTransport(lambda request: posted.append(request) or httpx.Response(200, json={}))
    delivery = Delivery(CustomerIO(url="http://cio.test", batch_size=2), "site", "key", transport=transport,
                        bucket=_dead_bucket(), dead_letter=lambda *a: None)
    with pytest.raises(SendHeld, match="shared rate limit") as held:
        delivery.send(list(OPS))
    assert (posted, held.value.remaining) == ([], OPS)  # never unthrottled, nothing lost
    with pytest.raises(SendHeld):
        delivery.check_auth()


class _RedisBack(threading.Event):
    """The worker's stop event: its first pause (after a failed delivery) records what the service showed,
    then Redis answers again."""

    def __init__(self, worker_ref: list, bucket: SharedTokenBucket, working: SharedTokenBucket) -> None:
        super().__init__()
        self.worker_ref, self.bucket, self.working, self.shown = worker_ref, bucket, working, []

    def wait(self, timeout: float | None = None) -> bool:
        self.shown.append(self.worker_ref[0].state()["problem"])
        self.bucket._client = self.working._client
        return False


@needs_redis
def test_the_worker_holds_delivery_while_the_limit_is_unreachable_shows_it_and_resumes(tmp_path, sandbox):
    from freshness_support import worker_over

    bucket = _dead_bucket()
    working = SharedTokenBucket(redis.Redis.from_url(REDIS_URL), f"{sandbox.prefix}{{limits}}:customerio", RATE,
                                sleep=lambda s: None)
    holder: list = []
    stopping = _RedisBack(holder, bucket, working)
    worker, cio = worker_over(tmp_path, bucket=bucket, stopping=stopping)
    holder.append(worker)
    outcome = worker.process(worker.spool.take(0, 10))
    assert worker.deliver(outcome)
    assert stopping.shown and "shared rate limit in Redis does not answer" in stopping.shown[0]  # /health: 503
    assert worker.problem is None  # delivered once Redis answered
    assert len(cio) == len(outcome.ops) > 0


@needs_redis
@settings(max_examples=25, deadline=None)
@given(rate=st.floats(5, 500), capacity=st.integers(1, 5), turns=st.lists(st.integers(0, 2), min_size=2, max_size=40))
def test_however_clients_interleave_no_window_holds_more_than_the_rate_and_the_burst(rate, capacity, turns):
    sandbox = RedisSandbox()
    clients = [redis.Redis.from_url(REDIS_URL) for _ in range(3)]
    buckets = [SharedTokenBucket(c, f"{sandbox.prefix}{{limits}}:customerio", rate, capacity=capacity,
                                 sleep=lambda s: None) for c in clients]
    try:
        slots = sorted(sum(buckets[turn].take()) for turn in turns)
    finally:
        for client in clients:
            client.close()
        sandbox.clean()
    for i in range(len(slots)):
        for j in range(i + capacity, len(slots)):  # j - i + 1 tokens in [slots[i], slots[j]]: capacity free
            assert slots[j] - slots[i] >= (j - i + 1 - capacity) / rate - 1e-5  # microsecond rounding


class _StopDuringWait(threading.Event):
    """A stop that arrives while the worker waits."""

    def wait(self, timeout: float | None = None) -> bool:
        self.set()
        return True


def test_a_stop_abandons_a_send_waiting_for_its_turn_instead_of_hurrying_it(tmp_path):
    from freshness_support import worker_over

    clock, holder = FakeClock(), []
    bucket = TokenBucket(1.0, clock=clock, sleep=lambda seconds: holder[0].hold(seconds))  # child.py: sleep=hold
    worker, cio = worker_over(tmp_path, bucket=bucket, stopping=_StopDuringWait(), batch_size=2)
    holder.append(worker)
    outcome = worker.process(worker.spool.take(0, 10))
    assert len(outcome.ops) == 4
    assert worker.deliver(outcome) is False  # stopping: the chunk stays spooled for the next start
    assert len(cio) == 2  # the first batch had its turn; the second never went out early
    assert worker.problem is None
