"""Benchmark: what `install()` costs the caller of `track`, and how fast the consumer takes messages through it.

    python bench/sdk_overhead.py [--calls 5000] [--people 1000] [--rounds 3] [--interval-us 300] [--sdk segment]
                                 [--burst 20000] [--only latency|through|consumer ...] [--before REV]

Caller-visible cost: the same paced `track` calls (one every `--interval-us`, as a web app's requests make
them) on a bare client and on an installed one (consumer mode, the default), each with its consumer thread
running and uploading to a local `/v1/batch` stand-in on 127.0.0.1; every call is timed on its own. Runs on the
default store (`sqlite:///` in a temporary folder) and on `memory://`, both seeded with every person's household
(`group` calls). Reports median and p99 µs per call, bare vs hooked, and the ratios (targets on the default
store: median ≤ 1.1, p99 ≤ 1.5); then the same for `mode="inline"`, where the caller pays the decision.

Through-upload: the app enqueues `--burst` tracks as fast as it can (one thread, the SDK's default queue of
10,000 and batches of 100) while the consumer uploads them to a counting `/v1/batch` stand-in in another process;
messages that reached it per second (first call to the queue drained), bare vs hooked in alternating rounds, and
the SDK's refusals (`track` returning False: its queue was full), and the process's CPU time (every thread: the app,
the consumer) per message sent, steadier than the rate on a shared machine; its ratio (bare / hooked) is what the
rates' ratio tends to while one GIL is the limit. Target: hooked ≥ 0.9 of bare on the
default store.

`--before REV` first runs this same script against git revision REV's code (`bench/revision.py`): before and
after in one run.

Consumer throughput: SDK messages (as the SDK queues them) through the hook's batch path (`Consumer.request`,
batches of 100, one transaction each, the upload itself stubbed out) in this one thread: messages/s per core
(target ≥ 20,000 on `memory://`). Not a timed test: it reports what it measures.
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import logging
import multiprocessing
import os
import subprocess
import sys
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson

from groupspec.middleware import install
from groupspec.middleware.config import parse_config
from groupspec.middleware.sdk import hook_of

CONTRACT = {
    "version": "bench",
    "group_id_pattern": "^hh_[0-9]+$",
    "require_group": ["Order Placed"],
    "group_traits": {"subscription_status": {"type": "string", "enum": ["active", "paused", "cancelled"]}},
}
EVENTS = ["Product Viewed", "Cart Updated", "Order Placed", "Checkout Started"]


class Sink:
    """A `/v1/batch` stand-in on loopback that answers 200 at once."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _counting_sink(count: Any, ready: Any) -> None:
    """The `/v1/batch` stand-in of `through_upload`, in its own process: counts the messages it receives."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint
        disable_nagle_algorithm = True  # headers and body go out without waiting for an ACK

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received = len(orjson.loads(body)["batch"])
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")
            with count.get_lock():
                count.value += received

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ready.put(server.server_address[1])
    server.serve_forever()


class CountingSink:
    """`_counting_sink` started in a spawned process (it takes no GIL of the app's): `url`, `received()`."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.count, ready = context.Value("q", 0), context.Queue()
        self.process = context.Process(target=_counting_sink, args=(self.count, ready), daemon=True)
        self.process.start()
        self.url = f"http://127.0.0.1:{ready.get(timeout=30)}"

    def received(self) -> int:
        return self.count.value

    def stop(self) -> None:
        self.process.terminate()
        self.process.join()


def work(n: int, people: int) -> list[tuple[str, str, dict]]:
    return [(f"user_{i % people}", EVENTS[i % len(EVENTS)], {"sku": f"sku_{i % 97}", "price": 12.5, "quantity": 1})
            for i in range(n)]


def paced(client: Any, calls: list[tuple[str, str, dict]], interval: float) -> list[float]:
    """µs of each `track` call, one call every `interval` seconds."""
    out = []
    start = time.perf_counter()
    for i, (user, event, properties) in enumerate(calls):
        t0 = time.perf_counter()
        client.track(user, event, properties)
        out.append((time.perf_counter() - t0) * 1e6)
        wait = start + (i + 1) * interval - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def caller_cost(module: Any, url: str, store: str, config: Any, args: argparse.Namespace,
                mode: str = "consumer") -> dict[str, float]:
    def client() -> Any:
        return module.Client("bench", host=url, upload_interval=0.05, max_queue_size=100_000)

    bare, hooked = client(), install(client(), config, store=store, mode=mode)
    for i in range(args.people):
        hooked.group(f"user_{i}", f"hh_{i % (args.people // 3 or 1)}", {"subscription_status": "active"})
    hooked.flush()
    calls = work(args.calls, args.people)
    for c in (bare, hooked):  # warm up both
        paced(c, calls[:500], args.interval_us / 1e6)
        c.flush()
    times: dict[str, list[float]] = {"bare": [], "hooked": []}
    pair = [("bare", bare), ("hooked", hooked)]
    for round_ in range(args.rounds):  # alternate which goes first
        for label, c in (pair if round_ % 2 == 0 else pair[::-1]):
            times[label] += paced(c, calls, args.interval_us / 1e6)
            c.flush()
    hook = hook_of(hooked)
    assert hook.failures == 0 and hook.counts.forwarded >= args.calls * args.rounds
    for c in (bare, hooked):
        c.join()
    return {f"{label}_{stat}": fn(values) for label, values in times.items()
            for stat, fn in (("median", statistics.median), ("p99", p99))}


def through_upload(module: Any, sink: CountingSink, store: str, config: Any,
                   args: argparse.Namespace) -> dict[str, float]:
    """Messages/s reaching the sink and refusals, bare vs hooked: `--burst` tracks enqueued as fast as one thread
    can, the SDK's defaults otherwise (queue of 10,000, batches of 100), timed until the queue is drained."""
    def client() -> Any:
        return module.Client("bench", host=sink.url)

    bare, hooked = client(), install(client(), config, store=store)
    for i in range(args.people):
        hooked.group(f"user_{i}", f"hh_{i % (args.people // 3 or 1)}", {"subscription_status": "active"})
    hooked.flush()
    calls = work(args.burst, args.people)
    out = {f"{label}_{what}": 0.0 for label in ("bare", "hooked") for what in ("seconds", "cpu", "sent", "refused")}
    pair = [("bare", bare), ("hooked", hooked)]
    for round_ in range(args.rounds):
        for label, c in (pair if round_ % 2 == 0 else pair[::-1]):
            before = sink.received()
            start, cpu = time.perf_counter(), time.process_time()
            refused = sum(not c.track(user, event, properties)[0] for user, event, properties in calls)
            c.flush()
            out[f"{label}_seconds"] += time.perf_counter() - start
            out[f"{label}_cpu"] += time.process_time() - cpu
            out[f"{label}_sent"] += sink.received() - before
            out[f"{label}_refused"] += refused
    for c in (bare, hooked):
        c.join()
    for label in ("bare", "hooked"):
        out[f"{label}_rate"] = out[f"{label}_sent"] / out[f"{label}_seconds"]
        out[f"{label}_cpu_us"] = out[f"{label}_cpu"] / out[f"{label}_sent"] * 1e6
    return out


def consumer_rate(module: Any, store: str, config: Any, args: argparse.Namespace) -> float:
    """Messages/s through the hook's batch path in this thread (the upload stubbed out), best round."""
    hook = hook_of(install(module.Client("bench", send=False), config, store=store))
    shaper = module.Client("bench", send=False)  # the messages as the SDK queues them

    def request(batch: list[dict]) -> None:  # what the hooked Consumer.request does, the upload left out
        hook.request(lambda kept: None, batch)

    for i in range(args.people):
        request([shaper.group(f"user_{i}", f"hh_{i % (args.people // 3 or 1)}")[1]])
    best = float("inf")
    for _ in range(args.rounds):  # new messages each round: each is seen by the store for the first time
        messages = [shaper.track(user, event, props)[1] for user, event, props in work(args.calls * 2, args.people)]
        batches = [messages[i:i + 100] for i in range(0, len(messages), 100)]
        start = time.process_time()
        for batch in batches:
            request(batch)
        best = min(best, time.process_time() - start)
    return len(messages) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5_000)
    parser.add_argument("--people", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--interval-us", type=float, default=300.0, help="one track call every so many µs")
    parser.add_argument("--burst", type=int, default=20_000, help="tracks enqueued at once for through-upload")
    parser.add_argument("--only", choices=["latency", "through", "consumer"], action="append",
                        help="run only these measures (repeatable; default: all)")
    parser.add_argument("--sdk", default="segment", choices=["segment", "rudderstack", "customerio"])
    parser.add_argument("--before", metavar="REV", help="first run this script against this git revision's code")
    args = parser.parse_args()
    if args.before:
        from revision import exported

        passed = [a for i, a in enumerate(sys.argv[1:])
                  if a != "--before" and sys.argv[i] != "--before" and not a.startswith("--before=")]
        with exported(args.before) as tree:
            print(f"--- before ({args.before})", flush=True)
            subprocess.run([sys.executable, __file__, *passed], check=True,
                           env=dict(os.environ, PYTHONPATH=str(tree / "path")))
        print("--- after (this tree)", flush=True)
    only = set(args.only or ["latency", "through", "consumer"])
    print(f"groupspec from {Path(install.__code__.co_filename).parent}", flush=True)
    module = importlib.import_module(f"{args.sdk}.analytics")
    logging.getLogger(module.Client.log.name).setLevel(logging.ERROR)  # not a "queue is full" line per refusal
    with tempfile.TemporaryDirectory() as tmp:
        config = parse_config({"contract": CONTRACT, "quarantine": {"path": str(Path(tmp) / "quarantine.jsonl")}})
        stores = {"default (sqlite)": f"sqlite:///{Path(tmp) / 'groupspec.db'}", "memory://": "memory://"}
        if "latency" in only:
            caller_latency(module, stores, config, args)
        if "through" in only:
            sink = CountingSink()
            print(f"through-upload: {args.burst:,} tracks enqueued as fast as one thread can, x {args.rounds} rounds; "
                  f"SDK defaults (queue 10,000, batches of 100), uploading to another process on 127.0.0.1")
            print(f"{'store':<18} {'bare msg/s':>11} {'hooked msg/s':>13} {'ratio':>6} {'bare refused':>13} "
                  f"{'hooked refused':>15} {'CPU us/msg bare':>16} {'hooked':>7} {'ratio':>6}")
            for name, store in stores.items():
                store = store.replace("groupspec.db", "through.db")
                r = through_upload(module, sink, store, config, args)
                print(f"{name:<18} {r['bare_rate']:>11,.0f} {r['hooked_rate']:>13,.0f} "
                      f"{r['hooked_rate'] / r['bare_rate']:>6.2f} {r['bare_refused']:>13,.0f} {r['hooked_refused']:>15,.0f} "
                      f"{r['bare_cpu_us']:>16.0f} {r['hooked_cpu_us']:>7.0f} "
                      f"{r['bare_cpu_us'] / r['hooked_cpu_us']:>6.2f}")
            print("target on the default store: through-upload ratio >= 0.90")
            sink.stop()
        if "consumer" in only:
            for name, store in stores.items():
                store = f"sqlite:///{Path(tmp) / 'consumer.db'}" if name.startswith("default") else store
                print(f"consumer throughput, {name}: {consumer_rate(module, store, config, args):,.0f} messages/s "
                      f"per core (CPU time; batches of 100, one transaction each)")
            print("target on memory://: >= 20,000 messages/s per core")


def caller_latency(module: Any, stores: dict[str, str], config: Any, args: argparse.Namespace) -> None:
    sink = Sink()
    print(f"{args.sdk}: {args.calls} paced track calls x {args.rounds} rounds, one every {args.interval_us:.0f} "
          f"us, {args.people} people known to the store; consumers running, uploading to 127.0.0.1")
    print(f"{'store (mode)':<26} {'bare med':>9} {'hooked med':>11} {'ratio':>6} {'bare p99':>9} {'hooked p99':>11} "
          f"{'ratio':>6}")
    rows = [(name, store, "consumer") for name, store in stores.items()]
    rows += [(f"{name}, inline", store.replace("groupspec.db", "inline.db"), "inline") for name, store in stores.items()]
    for name, store, mode in rows:
        r = caller_cost(module, sink.url, store, config, args, mode)
        print(f"{name:<26} {r['bare_median']:>8.1f}u {r['hooked_median']:>10.1f}u "
              f"{r['hooked_median'] / r['bare_median']:>6.2f} {r['bare_p99']:>8.1f}u {r['hooked_p99']:>10.1f}u "
              f"{r['hooked_p99'] / r['bare_p99']:>6.2f}")
    print("targets on the default store, consumer mode (the default): median ratio <= 1.10, p99 ratio <= 1.50")

if __name__ == "__main__":
    main()
