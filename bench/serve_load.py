"""Benchmark: `groupspec serve` under load on loopback, delivering to a counting stand-in for Customer.io.

    python bench/serve_load.py [--seconds 15] [--warmup 3] [--connections 8] [--rate 100] [--batch 100]
                               [--rate-limit 1000] [--before REV ...] [--repeat N] [--replicas 3] [--redis URL]

Starts a minimal Customer.io stand-in (a child process that answers 200 and counts operations and requests per
second) and `groupspec serve` (a child process, SQLite store and spool in a temporary folder), then posts
`/v1/batch` requests of `--batch` messages from `--connections` connections, `--rate` requests per second on a
fixed schedule (`--rate 0`: each connection posts again as soon as answered). After `--warmup` seconds it
measures a window of `--seconds`: messages offered (scheduled) and accepted per second, Customer.io operations
delivered per second (counted by the stand-in), the spool depth at the window's start and end (not growing:
delivery keeps up), intake latency p50/p99 (from the scheduled time: no coordinated omission) and the CPU each
process used (intake, delivery, stand-in, load generator) per message. Then it waits for the spool to drain
(`--drain` seconds at most).

`--before REV` (repeatable) first measures the code of git revision REV the same way, in the same run: this
script's load generator and stand-in, that revision's `groupspec serve` (`bench/revision.py` exports it);
`--repeat N` measures every revision N times, in turn.
With `--replicas N` (N > 1) it runs twice, on a Redis store (`--redis`, under a throw-away key prefix deleted
afterwards): one instance, then N replicas sharing the store and its Customer.io rate limit, the connections
spread across them. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import os
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson

WRITE_KEY = "wk_bench"
EVENTS = ["Product Viewed", "Cart Updated", "Order Placed", "Checkout Started"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _standin(port: int, counter, per_second) -> None:
    """Customer.io stand-in: 200 to every batch, operations counted in a shared integer, requests per wall-clock
    second in a shared array (index: seconds since the stand-in started)."""
    began = int(time.time())

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else the body waits on a delayed ACK: 40 ms a request

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            n = len(orjson.loads(body)["batch"])
            with counter.get_lock():
                counter.value += n
                per_second[min(len(per_second) - 1, int(time.time()) - began)] += 1
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _config(work: Path, cio_port: int, rate_limit: float, store: str) -> Path:
    path = work / "groupspec.toml"
    path.write_text(f"""
[contract]
version = "bench"
group_id_pattern = "^hh_[0-9]+$"
require_group = ["Order Placed"]
[sources.bench]
write_key = "{WRITE_KEY}"
[customerio]
url = "http://127.0.0.1:{cio_port}"
site_id = "bench-site"
api_key = "bench-key"
batch_size = 100
rate_limit = {rate_limit}
dead_letter = "{work / 'dead-letter.jsonl'}"
[store]
url = "{store}"
[quarantine]
path = "{work / 'quarantine.jsonl'}"
[service]
spool = "{work / 'spool.db'}"
max_spool_depth = 100000000
""")
    return path


def _templates(batch: int, count: int = 50, people: int = 20_000, seed: int = 7) -> list[bytes]:
    """Request bodies with a `@@` where the request number goes, so every messageId is unique."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        members = []
        for j in range(batch):
            person = rng.randrange(people)
            msg = {"userId": f"user_{person}", "messageId": f"@@-{j}", "timestamp": "2026-11-01T10:00:00Z",
                   "context": {"library": {"name": "analytics-python", "version": "2.4.0"}}}
            if rng.random() < 0.05:
                msg.update(type="group", groupId=f"hh_{person // 2}", traits={"name": f"Household {person // 2}"})
            elif rng.random() < 0.05:
                msg.update(type="identify", traits={"email": f"user_{person}@example.com"})
            else:
                msg.update(type="track", event=rng.choice(EVENTS),
                           properties={"sku": f"sku_{rng.randrange(500)}", "price": round(rng.random() * 90, 2)})
            members.append(msg)
        out.append(orjson.dumps({"batch": members}))
    return out


class _Connection:
    """One kept-alive HTTP/1.1 connection posting ready-made requests: the load generator shares the cores with
    the service, so it costs as little CPU as it can (a tenth of an httpx client's)."""

    def __init__(self, url: str) -> None:
        self.host, _, port = url.removeprefix("http://").partition(":")
        self.port = int(port)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, request: bytes) -> int:
        """The status of the answer to `request`; the connection is dropped on an error or `connection: close`."""
        try:
            if self.streams is None:
                self.streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self.streams
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            if re.search(rb"(?i)\r\nconnection: *close", head):
                self.close()
            return int(head[9:12])
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            self.close()
            return 0

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _request(body: bytes) -> bytes:
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return (f"POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def _load(urls: list[str], templates: list[bytes], args: argparse.Namespace, marks) -> dict:
    """Post for `--warmup` + `--seconds`; `marks()` is awaited at the window's start and end (it samples the
    counters). Closed loop (each connection posts again as soon as answered) or, with `--rate`, requests sent on
    a fixed schedule, their latency counted from the scheduled time (no coordinated omission). Connection i
    posts to `urls[i % len(urls)]`. Requests scheduled in the window are the measured ones."""
    counter = iter(range(10**12))
    start = time.perf_counter()
    window = (start + args.warmup, start + args.warmup + args.seconds)
    measured = {"latencies": [], "failures": 0, "sent": 0}

    async def one_connection(url: str) -> None:
        connection = _Connection(url)
        while True:
            n = next(counter)
            began = start + n / args.rate if args.rate else time.perf_counter()
            if began >= window[1]:
                return connection.close()
            request = _request(templates[n % len(templates)].replace(b"@@", str(n).encode()))
            await asyncio.sleep(max(0.0, began - time.perf_counter()))
            status = await connection.post(request)
            if began < window[0]:
                continue
            measured["sent"] += 1
            if status == 200:
                measured["latencies"].append(time.perf_counter() - began)
            else:
                measured["failures"] += 1

    async def sample() -> list:
        await asyncio.sleep(max(0.0, window[0] - time.perf_counter()))
        first = await marks()
        await asyncio.sleep(max(0.0, window[1] - time.perf_counter()))
        return [first, await marks()]

    *_, samples = await asyncio.gather(*(one_connection(urls[i % len(urls)]) for i in range(args.connections)),
                                       sample())
    return {**measured, "samples": samples}


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _sched(pid: int) -> tuple[float, float]:
    """Seconds a process's main thread has spent on a CPU and waiting for one (`/proc/PID/schedstat`)."""
    try:
        on, waiting, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
    except OSError:
        return 0.0, 0.0
    return int(on) / 1e9, int(waiting) / 1e9


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _depth(client: httpx.AsyncClient, url: str) -> int:
    text = (await client.get(url + "/metrics", timeout=10)).text
    return int(float(re.search(r"^groupspec_spool_depth (\S+)$", text, re.M).group(1)))


def _run(args: argparse.Namespace, replicas: int, store: str | None, code: Path | None = None) -> dict:
    """One measurement: `replicas` services (each with its own spool) on `store` (None: SQLite of its own);
    `code`: the folder whose `groupspec` they run (None: this tree's)."""
    env = dict(os.environ, PYTHONPATH=str(code)) if code is not None else None
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        work = Path(tmp)
        delivered = multiprocessing.Value("q", 0)
        per_second = multiprocessing.Array("q", 3600)
        cio_port = _free_port()
        cio = multiprocessing.Process(target=_standin, args=(cio_port, delivered, per_second), daemon=True)
        cio.start()
        stack.callback(cio.terminate)
        services, urls = [], []
        for i in range(replicas):
            folder = work / f"replica{i}"
            folder.mkdir()
            config = _config(folder, cio_port, args.rate_limit, store or f"sqlite:///{folder / 'store.db'}")
            port = _free_port()
            log = stack.enter_context((folder / "service.log").open("wb"))
            service = subprocess.Popen(
                [sys.executable, "-m", "groupspec.plugin.cli", "serve", "--config", str(config), "--port", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env)
            stack.callback(_stop, service)
            services.append(service)
            urls.append(f"http://127.0.0.1:{port}")
        for url in urls:
            for _ in range(200):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
        templates = _templates(args.batch)

        async def marks() -> dict:
            depth = sum(await _depths(urls))
            intake = [s.pid for s in services]
            children = [c for pid in intake for c in _children(pid)]  # the delivery processes
            return {"at": time.perf_counter(), "delivered": delivered.value, "depth": depth,
                    "load average": os.getloadavg()[0],
                    "sched": [sum(x) for x in zip(*map(_sched, children))] if children else [0.0, 0.0],
                    "intake": sum(map(_cpu, intake)),
                    "delivery": sum(map(_cpu, children)),
                    "stand-in": _cpu(cio.pid), "load": _self_cpu()}

        load = asyncio.run(_load(urls, templates, args, marks))
        drain_began = time.perf_counter()
        depth = lambda: sum(asyncio.run(_depths(urls)))
        while depth() > 0 and time.perf_counter() - drain_began < args.drain:
            time.sleep(0.25)
        drain, depth_after = time.perf_counter() - drain_began, depth()
        counts = [n for n in per_second[:] if n]
    first, last = load["samples"]
    seconds = last["at"] - first["at"]
    latencies = sorted(load["latencies"])
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    full = counts[1:-1] or counts  # whole seconds only: the first and last are partial
    accepted = len(latencies) * args.batch
    delivered_ops = last["delivered"] - first["delivered"]
    return {"replicas": replicas, "seconds": seconds, "offered": load["sent"] * args.batch / args.seconds,
            "accepted": accepted / args.seconds, "failures": load["failures"],
            "delivered": delivered_ops / seconds,
            "depth": (first["depth"], last["depth"]), "p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0),
            "cpu": {part: (last[part] - first[part]) / max(count, 1) * 1e6
                    for part, count in (("intake", accepted), ("delivery", delivered_ops), ("stand-in", delivered_ops),
                                        ("load", accepted))},
            "worker": [(b - a) / seconds / replicas for a, b in zip(first["sched"], last["sched"])],
            "cores": {part: (last[part] - first[part]) / seconds
                      for part in ("intake", "delivery", "stand-in", "load")},
            "drain": drain, "depth_after": depth_after, "load average": (first["load average"], last["load average"]),
            "cio_mean": sum(full) / len(full) if full else 0.0, "cio_peak": max(full, default=0)}


async def _depths(urls: list[str]) -> list[int]:
    async with httpx.AsyncClient() as client:
        return [await _depth(client, url) for url in urls]


def _stop(service: subprocess.Popen) -> None:
    service.send_signal(signal.SIGTERM)
    try:
        service.wait(30)
    except subprocess.TimeoutExpired:
        service.kill()


def _print(name: str, r: dict, args: argparse.Namespace) -> None:
    pacing = f"{args.rate * args.batch:,.0f} msg/s scheduled" if args.rate else "closed loop"
    start, end = r["depth"]
    print(f"== {name}: {r['replicas']} instance(s), {args.connections} connections, {pacing} as /v1/batch of "
          f"{args.batch}, {args.seconds:g} s measured after {args.warmup:g} s, rate_limit = {args.rate_limit:g}, "
          f"{os.cpu_count()} cores (load average {r['load average'][0]:.1f} at the window's start, "
          f"{r['load average'][1]:.1f} at its end)")
    print(f"offered {r['offered']:,.0f} msg/s; accepted {r['accepted']:,.0f} msg/s ({r['failures']} failed); "
          f"delivered {r['delivered']:,.0f} ops/s; spool {start:,} -> {end:,} messages; "
          f"intake p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms (max {r['max']:.0f})")
    print("CPU per message accepted (intake, load) or operation delivered (delivery, stand-in): " + ", ".join(
        f"{part} {us:.0f} µs ({r['cores'][part]:.2f} cores)" for part, us in r["cpu"].items()))
    print(f"delivery capacity on one whole core: {1e6 / max(r['cpu']['delivery'], 1e-9):,.0f} ops/s "
          f"(the delivery process's CPU per operation delivered)")
    on, waiting = r["worker"]
    print(f"delivery process's main thread: on a CPU {on:.0%} of the time, waiting for one {waiting:.0%}, "
          f"blocked (network, disk, idle) {max(0.0, 1 - on - waiting):.0%}")
    after = r["depth_after"]
    print(f"spool {'drained' if after == 0 else f'still held {after:,} messages'} {r['drain']:.1f} s after the "
          f"load; Customer.io requests {r['cio_mean']:.1f}/s on average, at most {r['cio_peak']} in one second")


def _table(results: list[tuple[str, dict]]) -> None:
    print("\n| code | offered msg/s | accepted msg/s | delivered ops/s | spool start → end | intake p50 | "
          "intake p99 | CPU µs/msg intake + delivery |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results:
        start, end = r["depth"]
        print(f"| {name} | {r['offered']:,.0f} | {r['accepted']:,.0f} | {r['delivered']:,.0f} | {start:,} → {end:,} | "
              f"{r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['cpu']['intake']:.0f} + {r['cpu']['delivery']:.0f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15, help="the measured window")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before the window")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=float, default=100,
                        help="requests/s on a fixed schedule (0: each connection as fast as answered)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--drain", type=float, default=60, help="most seconds to wait for the spool to drain")
    parser.add_argument("--rate-limit", type=float, default=1000,
                        help="[customerio] rate_limit, requests/s (Customer.io documents 1000)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="also run N replicas on one Redis store, after one instance on the same store")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis for --replicas")
    parser.add_argument("--before", metavar="REV", action="append", default=[],
                        help="also measure this git revision's code, first (repeatable)")
    parser.add_argument("--repeat", type=int, default=1, help="measure every revision this many times, in turn")
    args = parser.parse_args()

    if args.replicas <= 1:
        from revision import exported

        results = []
        with ExitStack() as trees:
            codes = [(rev, trees.enter_context(exported(rev)) / "path") for rev in args.before] + [("this tree", None)]
            for _ in range(args.repeat):  # in turn, so that a change in the machine's load falls on all of them
                for name, code in codes:
                    results.append((name, _run(args, 1, None, code)))
                    _print(*results[-1], args)
        if len(results) > 1:
            _table(results)
        return 0
    import redis

    prefix = f"gsbench-{os.getpid()}-{random.randrange(1 << 30):x}:"
    client = redis.Redis.from_url(args.redis)
    try:
        single = _run(args, 1, f"{args.redis}?prefix={prefix}1:")
        _print("Redis store", single, args)
        several = _run(args, args.replicas, f"{args.redis}?prefix={prefix}{args.replicas}:")
        _print("Redis store", several, args)
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        client.close()
    print(f"== {args.replicas} replicas / 1 instance, measured in this run: accepted messages/s "
          f"x{several['accepted'] / single['accepted']:.2f}, p50 x{several['p50'] / single['p50']:.2f}, "
          f"p99 x{several['p99'] / single['p99']:.2f}, delivered operations/s "
          f"x{several['delivered'] / single['delivered']:.2f}, "
          f"Customer.io requests/s x{several['cio_mean'] / max(single['cio_mean'], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
