"""Benchmark: `Delivery.send` throughput to the local Customer.io stand-in over loopback.

    python bench/delivery.py [--ops 100000] [--batch-size 100] [--rate-limit 1000000]

Sends N event operations (~300 bytes each) in one `send` call and prints operations/s, requests/s and the
mean request time. The stand-in (tests/cio_standin.py) runs in this process: its JSON parsing and validation
share the CPU with the client, so the figure is a floor for the client alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cio_standin import CioStandin  # noqa: E402
from groupspec.plugin.customerio.delivery import Delivery  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--rate-limit", type=float, default=1_000_000)
    args = parser.parse_args()
    ops = [{"type": "person", "action": "event", "identifiers": {"id": f"user-{i % 5000}"}, "name": "Song Played",
            "id": f"01J{i:023d}", "timestamp": 1_767_225_600 + i,
            "attributes": {"song": f"song-{i % 997}", "duration": 215, "group_id": f"hh_{i % 2500}",
                           "group_traits": {"plan_type": "family", "subscription_status": "active"}}}
           for i in range(args.ops)]
    with CioStandin() as cio:
        settings = cio.customerio(batch_size=args.batch_size, rate_limit=args.rate_limit)
        with Delivery(settings, cio.site_id, cio.api_key, dead_letter=lambda op, error: None) as delivery:
            started = time.perf_counter()
            report = delivery.send(ops)
            elapsed = time.perf_counter() - started
        assert report.delivered == args.ops == len(cio.accepted), report
    print(f"operations: {args.ops}  batch size: {args.batch_size}  rate limit: {args.rate_limit:g} requests/s")
    print(f"delivered:  {args.ops / elapsed:,.0f} operations/s  {report.requests / elapsed:,.0f} requests/s  "
          f"{1000 * elapsed / report.requests:.2f} ms/request")


if __name__ == "__main__":
    main()
