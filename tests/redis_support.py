"""The Redis the tests use (a real server on 127.0.0.1:6379; tests that need it are skipped without it), a local
three-master Redis Cluster started for the test session (`redis_cluster`), and RedisStores under a throw-away
key prefix."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from groupspec.middleware.stores.redis import RedisStore

REDIS_URL = "redis://127.0.0.1:6379/0"
CLUSTER_SCHEME = "redis+cluster://"


def _redis_answers() -> bool:
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping()
    except redis.RedisError:
        return False


needs_redis = pytest.mark.skipif(not _redis_answers(), reason=f"no Redis answers at {REDIS_URL} (CI starts one)")
HAS_REDIS_SERVER = shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None
needs_redis_server = pytest.mark.skipif(not HAS_REDIS_SERVER,
                                        reason="redis-server and redis-cli are not installed (.ci/run installs them)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free as well."""
    for _ in range(200):
        port = free_port()
        if port > 55535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a local Redis Cluster node")


class LocalCluster:
    """A Redis Cluster of `masters` masters (no replicas) on free local ports, in a temporary folder.

    `with LocalCluster() as cluster: cluster.url` -> ``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...``;
    `kill(i)` stops master i (an outage)."""

    def __init__(self, masters: int = 3) -> None:
        self.masters = masters
        self.ports: list[int] = []
        self.servers: list[subprocess.Popen] = []
        self.folder = Path(tempfile.mkdtemp(prefix="gs-cluster-"))

    @property
    def url(self) -> str:
        return CLUSTER_SCHEME + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> LocalCluster:
        for _ in range(self.masters):
            port = free_cluster_port()
            self.ports.append(port)
            self.servers.append(subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--save", "", "--appendonly", "no",
                 "--daemonize", "no", "--dir", str(self.folder), "--logfile", f"redis-{port}.log"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port, server in zip(self.ports, self.servers):
            self._wait(lambda p=port: redis.Redis("127.0.0.1", p, socket_connect_timeout=0.2).ping(), f"port {port}",
                       server)
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        for port in self.ports:
            self._wait(lambda p=port: redis.Redis("127.0.0.1", p).cluster("info")["cluster_state"] == "ok",
                       f"cluster_state:ok on port {port}")
        return self

    def _wait(self, ready, what: str, server: subprocess.Popen | None = None, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if server is not None and server.poll() is not None:
                log = self.folder / f"redis-{server.args[2]}.log"
                raise RuntimeError(f"local Redis Cluster: redis-server exited: {log.read_text()[-500:] if log.exists() else ''}")
            try:
                if ready():
                    return
            except redis.RedisError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"local Redis Cluster: no {what} after {seconds:.0f}s")

    def kill(self, index: int) -> None:
        self.servers[index].kill()
        self.servers[index].wait(10)

    def stop(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                server.terminate()
        for server in self.servers:
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[str]:
    """The URL of a three-master Redis Cluster started for this test session (stopped at its end); skips the
    test when redis-server is not installed. Share it only under a unique key prefix (`RedisSandbox(url)`)."""
    if not HAS_REDIS_SERVER:
        pytest.skip("redis-server and redis-cli are not installed (.ci/run installs them)")
    with LocalCluster() as cluster:
        yield cluster.url


class RoundTrips:
    """Counts redis-py's round trips while active (`with RoundTrips() as trips: ...; trips.count`): a command
    batch sent after a reply was read, or the first one, starts a round trip; batches sent to several servers
    before any reply is read (a cluster pipeline) are one."""

    def __init__(self) -> None:
        self.count = 0
        self.batches = 0
        self._replied = True

    def __enter__(self) -> RoundTrips:
        cls = redis.connection.AbstractConnection
        self._saved = cls.send_packed_command, cls.read_response
        send, read = self._saved

        def counted_send(connection, *args, **kwargs):
            self.batches += 1
            if self._replied:
                self.count, self._replied = self.count + 1, False
            return send(connection, *args, **kwargs)

        def counted_read(connection, *args, **kwargs):
            self._replied = True
            return read(connection, *args, **kwargs)

        cls.send_packed_command, cls.read_response = counted_send, counted_read
        return self

    def __exit__(self, *exc) -> None:
        cls = redis.connection.AbstractConnection
        cls.send_packed_command, cls.read_response = self._saved

    def reset(self) -> None:
        self.count = self.batches = 0
        self._replied = True


class RedisSandbox:
    """RedisStores under a unique key prefix, whose keys are all deleted at the end (on a cluster: on every
    master)."""

    def __init__(self, url: str = REDIS_URL) -> None:
        self.url = url
        self.prefix = f"gstest-{uuid.uuid4().hex[:12]}:"

    def open(self) -> RedisStore:
        return RedisStore(self.url, prefix=self.prefix)

    def clean(self) -> None:
        if self.url.startswith(CLUSTER_SCHEME):
            nodes = [hostport.split(":") for hostport in self.url.removeprefix(CLUSTER_SCHEME).split(",")]
            clients = [redis.Redis(host=host, port=int(port)) for host, port in nodes]
        else:
            clients = [redis.Redis.from_url(self.url)]
        for client in clients:
            try:
                pipe = client.pipeline(transaction=False)
                for key in client.scan_iter(match=self.prefix + "*", count=1000):
                    pipe.delete(key)  # one key a command: a cluster node refuses a DEL across slots
                pipe.execute()
            except redis.RedisError:
                pass  # a master a test stopped
            finally:
                client.close()


def sandbox_url(sandbox: RedisSandbox) -> str:
    """The store URL of `sandbox`'s namespace (`?prefix=`), for a service or a process the test starts."""
    return f"{sandbox.url}?prefix={sandbox.prefix}"
