"""Benchmark: `groupspec serve` under load on loopback, delivering to a counting stand-in for Customer.io.

    python bench/serve_load.py [--seconds 30] [--connections 4] [--batch 100] [--rate REQUESTS_PER_S]

Starts a minimal Customer.io stand-in (a child process that answers 200 and counts operations) and
`groupspec serve` (a child process, SQLite store and spool in a temporary folder), then posts `/v1/batch`
requests of `--batch` messages from `--connections` concurrent connections for `--seconds`. Prints accepted
messages/s, p50/p99 request latency, and delivered messages/s (during the load, and until the spool drained,
waiting at most `--drain` seconds). Everything stops by itself. `--before REV` first runs this benchmark as it
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


def _standin(port: int, counter) -> None:
    """Customer.io stand-in: 200 to every batch, operations counted in a shared integer."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else the body waits on a delayed ACK: 40 ms a request

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            n = len(orjson.loads(body)["batch"])
            with counter.get_lock():
                counter.value += n
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args) -> None:
            pass

    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def _config(work: Path, cio_port: int, rate_limit: float) -> Path:
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
url = "sqlite:///{work / 'store.db'}"
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


async def _load(url: str, templates: list[bytes], seconds: float, connections: int, rate: float):
    """Closed loop (each connection posts again as soon as answered) or, with `rate`, requests sent on a fixed
    schedule of `rate` per second, their latency counted from the scheduled time (no coordinated omission)."""
    latencies: list[float] = []
    failures = 0
    counter = iter(range(10**12))
    start = time.perf_counter()
    deadline = start + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, auth=(WRITE_KEY, ""), limits=limits, timeout=30) as client:

        async def one_connection() -> None:
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
                response = await client.post("/v1/batch", content=body, headers=headers)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - began)
                else:
                    failures += 1

        await asyncio.gather(*(one_connection() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    return latencies, failures, elapsed


def _depth(url: str) -> int:
    text = httpx.get(url + "/metrics", timeout=10).text
    return int(float(re.search(r"^groupspec_spool_depth (\S+)$", text, re.M).group(1)))


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

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        delivered = multiprocessing.Value("q", 0)
        cio_port, port = _free_port(), _free_port()
        cio = multiprocessing.Process(target=_standin, args=(cio_port, delivered), daemon=True)
        cio.start()
        config = _config(work, cio_port, args.rate_limit)
        log = (work / "service.log").open("wb")
        service = subprocess.Popen([sys.executable, "-m", "groupspec.plugin.cli", "serve", "--config", str(config),
                                    "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            templates = _templates(args.batch)
            latencies, failures, elapsed = asyncio.run(
                _load(url, templates, args.seconds, args.connections, args.rate))
            delivered_in_load = delivered.value
            depth_at_end = _depth(url)
            drain_began = time.perf_counter()
            while _depth(url) > 0 and time.perf_counter() - drain_began < args.drain:
                time.sleep(0.25)
            drain = time.perf_counter() - drain_began
            depth_after = _depth(url)
            delivered_total = delivered.value
        finally:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(30)
            except subprocess.TimeoutExpired:
                service.kill()
            cio.terminate()
            log.close()

    accepted = len(latencies) * args.batch
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    pacing = f"{args.rate:g} requests/s scheduled" if args.rate else "closed loop"
    print(f"load: {args.connections} connections, {pacing}, /v1/batch of {args.batch} messages, {elapsed:.1f} s, "
          f"{os.cpu_count()} cores")
    print(f"accepted: {accepted:,} messages = {accepted / elapsed:,.0f} messages/s "
          f"({len(latencies) / elapsed:,.0f} requests/s, {failures} failed)")
    print(f"request latency: p50 {pct(0.50):.1f} ms, p99 {pct(0.99):.1f} ms, max {pct(1.0):.1f} ms")
    print(f"delivered during the load: {delivered_in_load:,} operations = {delivered_in_load / elapsed:,.0f} /s; "
          f"spool depth at the end of the load: {depth_at_end:,} messages")
    print(f"delivered in all: {delivered_total:,} operations, {elapsed + drain:.1f} s until the spool "
          f"{'drained' if depth_after == 0 else f'still held {depth_after:,} (gave up waiting)'} = "
          f"{delivered_total / (elapsed + drain):,.0f} /s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
