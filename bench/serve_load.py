"""Benchmark: `groupspec serve` under load on loopback, delivering to a counting stand-in for Customer.io.

    python bench/serve_load.py [--seconds 30] [--connections 4] [--batch 100] [--rate REQUESTS_PER_S]
                               [--replicas 3] [--redis redis://127.0.0.1:6379/0] [--rate-limit 1000]

Starts a minimal Customer.io stand-in (a child process that answers 200 and counts operations and requests per
second) and `groupspec serve` (a child process, SQLite store and spool in a temporary folder), then posts
`/v1/batch` requests of `--batch` messages from `--connections` concurrent connections for `--seconds`. Prints
accepted messages/s, p50/p99 request latency, delivered messages/s (during the load, and until the spool
drained, waiting at most `--drain` seconds) and Customer.io requests/s against `--rate-limit`. With
`--replicas N` (N > 1) it runs twice in one run, on a Redis store (`--redis`, under a throw-away key prefix
deleted afterwards): one instance, then N replicas sharing the store and its Customer.io rate limit, the
connections spread across them. Everything stops by itself. `--before REV` first runs this benchmark as it
was at git revision REV against that revision's code (`bench/revision.py`): before and after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
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


async def _load(urls: list[str], templates: list[bytes], seconds: float, connections: int, rate: float):
    """Closed loop (each connection posts again as soon as answered) or, with `rate`, requests sent on a fixed
    schedule of `rate` per second, their latency counted from the scheduled time (no coordinated omission).
    Connection i posts to `urls[i % len(urls)]`."""
    latencies: list[float] = []
    failures = 0
    counter = iter(range(10**12))
    start = time.perf_counter()
    deadline = start + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(auth=(WRITE_KEY, ""), limits=limits, timeout=30) as client:

        async def one_connection(url: str) -> None:
            nonlocal failures
            headers = {"Content-Type": "application/json"}
            while time.perf_counter() < deadline:
                n = next(counter)
                body = templates[n % len(templates)].replace(b"@@", str(n).encode())
                began = time.perf_counter()
                if rate:
                    began = start + n / rate
                    if began >= deadline:
                        return
                    await asyncio.sleep(max(0.0, began - time.perf_counter()))
                response = await client.post(url + "/v1/batch", content=body, headers=headers)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    failures += 1

        await asyncio.gather(*(one_connection(urls[i % len(urls)]) for i in range(connections)))
        elapsed = time.perf_counter() - start
    return latencies, failures, elapsed


def _depth(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=10).text
    return int(float(re.search(r"^groupspec_spool_depth (\S+)$", text, re.M).group(1)))


def _run(args: argparse.Namespace, replicas: int, store: str | None) -> dict[str, float]:
    """One measurement: `replicas` services (each with its own spool) on `store` (None: SQLite of its own)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        delivered = multiprocessing.Value("q", 0)
        per_second = multiprocessing.Array("q", 3600)
        cio_port = _free_port()
        cio = multiprocessing.Process(target=_standin, args=(cio_port, delivered, per_second), daemon=True)
        cio.start()
        services, urls, logs = [], [], []
        try:
            for i in range(replicas):
                folder = work / f"replica{i}"
                folder.mkdir()
                config = _config(folder, cio_port, args.rate_limit, store or f"sqlite:///{folder / 'store.db'}")
                port = _free_port()
                logs.append((folder / "service.log").open("wb"))
                services.append(subprocess.Popen(
                    [sys.executable, "-m", "groupspec.plugin.cli", "serve", "--config", str(config), "--port",
                     str(port)], stdout=logs[-1], stderr=subprocess.STDOUT))
                urls.append(f"http://127.0.0.1:{port}")
            for url in urls:
                for _ in range(200):
                    try:
                        if httpx.get(url + "/health", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.1)
            templates = _templates(args.batch)
            latencies, failures, elapsed = asyncio.run(
                _load(urls, templates, args.seconds, args.connections, args.rate))
            delivered_in_load = delivered.value
            depth_at_end = sum(map(_depth, urls))
            drain_began = time.perf_counter()
            while sum(map(_depth, urls)) > 0 and time.perf_counter() - drain_began < args.drain:
                time.sleep(0.25)
            drain = time.perf_counter() - drain_began
            depth_after = sum(map(_depth, urls))
            delivered_total = delivered.value
            counts = [n for n in per_second[:] if n]
        finally:
            for service in services:
                service.send_signal(signal.SIGTERM)
            for service in services:
                try:
                    service.wait(30)
                except subprocess.TimeoutExpired:
                    service.kill()
            cio.terminate()
            for log in logs:
                log.close()
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    full = counts[1:-1] or counts  # whole seconds only: the first and last are partial
    return {"replicas": replicas, "elapsed": elapsed, "accepted": len(latencies) * args.batch,
            "requests": len(latencies), "failures": failures, "p50": pct(0.50), "p99": pct(0.99), "max": pct(1.0),
            "delivered_in_load": delivered_in_load, "depth_at_end": depth_at_end, "drain": drain,
            "depth_after": depth_after, "delivered_total": delivered_total,
            "cio_requests": sum(counts), "cio_mean": sum(full) / len(full) if full else 0.0,
            "cio_peak": max(full, default=0)}


def _print(r: dict[str, float], args: argparse.Namespace, store: str) -> None:
    elapsed, accepted = r["elapsed"], r["accepted"]
    pacing = f"{args.rate:g} requests/s scheduled" if args.rate else "closed loop"
    print(f"== {r['replicas']} instance(s), {store} store: {args.connections} connections, {pacing}, /v1/batch of "
          f"{args.batch} messages, {elapsed:.1f} s, {os.cpu_count()} cores")
    print(f"accepted: {accepted:,} messages = {accepted / elapsed:,.0f} messages/s "
          f"({r['requests'] / elapsed:,.0f} requests/s, {r['failures']} failed)")
    print(f"request latency: p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, max {r['max']:.1f} ms")
    print(f"delivered during the load: {r['delivered_in_load']:,} operations = {r['delivered_in_load'] / elapsed:,.0f}"
          f" /s; spool depth at the end of the load: {r['depth_at_end']:,} messages")
    depth_after = r["depth_after"]
    print(f"delivered in all: {r['delivered_total']:,} operations, {elapsed + r['drain']:.1f} s until the spool "
          f"{'drained' if depth_after == 0 else f'still held {depth_after:,} (gave up waiting)'} = "
          f"{r['delivered_total'] / (elapsed + r['drain']):,.0f} /s")
    print(f"Customer.io requests: {r['cio_requests']:,}, {r['cio_mean']:.1f}/s on average and at most "
          f"{r['cio_peak']} in one second, all instances together (rate_limit = {args.rate_limit:g})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0,
                        help="requests/s on a fixed schedule (default 0: each connection as fast as answered)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--drain", type=float, default=60, help="most seconds to wait for the spool to drain")
    parser.add_argument("--rate-limit", type=float, default=1000,
                        help="[customerio] rate_limit, requests/s (Customer.io documents 1000)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="also run N replicas on one Redis store, after one instance on the same store")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="the Redis for --replicas")
    parser.add_argument("--before", metavar="REV", help="also run the benchmark of this git revision, first")
    args = parser.parse_args()
    if args.before:
        from revision import exported, run

        passed = ["--seconds", str(args.seconds), "--connections", str(args.connections), "--rate", str(args.rate),
                  "--batch", str(args.batch), "--drain", str(args.drain), "--rate-limit", str(args.rate_limit)]
        with exported(args.before) as tree:
            print(f"--- before ({args.before})")
            print(run(tree, "bench/serve_load.py", *passed), end="")
        print("--- after (this tree)")

    if args.replicas <= 1:
        _print(_run(args, 1, None), args, "SQLite")
        return 0
    import redis

    prefix = f"gsbench-{os.getpid()}-{random.randrange(1 << 30):x}:"
    client = redis.Redis.from_url(args.redis)
    try:
        single = _run(args, 1, f"{args.redis}?prefix={prefix}1:")
        _print(single, args, "Redis")
        several = _run(args, args.replicas, f"{args.redis}?prefix={prefix}{args.replicas}:")
        _print(several, args, "Redis")
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        client.close()
    rate = lambda r, key, seconds: r[key] / seconds(r)
    load = lambda r: r["elapsed"]
    whole = lambda r: r["elapsed"] + r["drain"]
    print(f"== {args.replicas} replicas / 1 instance, measured in this run: accepted messages/s "
          f"x{rate(several, 'accepted', load) / rate(single, 'accepted', load):.2f}, p50 x{several['p50'] / single['p50']:.2f}, "
          f"p99 x{several['p99'] / single['p99']:.2f}, delivered operations/s "
          f"x{rate(several, 'delivered_total', whole) / rate(single, 'delivered_total', whole):.2f}, "
          f"Customer.io requests/s x{several['cio_mean'] / max(single['cio_mean'], 1e-9):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
