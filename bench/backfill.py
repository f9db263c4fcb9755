"""Benchmark: `groupspec backfill` of person->group CSV rows, dry run to files and live to the Customer.io stand-in.

    python bench/backfill.py [--rows 100000] [--batch-size 100]

Generates a CSV (three people per household, two attributes), then times the dry run and a live run with a
checkpoint (the stand-in runs in this process and shares the CPU, so the live figure is a floor). Prints
records/s for each.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from cio_standin import CioStandin  # noqa: E402
from groupspec.middleware.config import parse_config  # noqa: E402
from groupspec.plugin.backfill.checkpoint import Checkpoint  # noqa: E402
from groupspec.plugin.backfill.run import Backfill  # noqa: E402
from groupspec.plugin.backfill.sinks import Files, Live  # noqa: E402
from groupspec.plugin.customerio.delivery import Delivery  # noqa: E402

CONTRACT = {"group_id_pattern": "^hh_[0-9]+$",
            "group_traits": {"plan_type": {"type": "string", "enum": ["basic", "family", "pro"]},
                             "seats": {"type": "integer"}}}


def timed(label: str, rows: int, backfill: Backfill, sink) -> None:
    started = time.perf_counter()
    counts = backfill.run()
    elapsed = time.perf_counter() - started
    sink.close()
    print(f"{label:<28} {rows / elapsed:>10,.0f} records/s  ({counts.operations:,} operations in {elapsed:.2f}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "accounts.csv"
        with csv.open("w") as out:
            out.write("user_id,group_id,plan_type,seats\n")
            out.writelines(f"user_{i},hh_{i // 3},family,{i % 5 + 1}\n" for i in range(args.rows))
        config = parse_config({"contract": CONTRACT, "customerio": {"batch_size": args.batch_size}})
        files = Files(Path(tmp) / "dry")
        timed("dry run (files)", args.rows, Backfill(config, [str(csv)], files, at=0.0), files)
        with CioStandin() as cio:
            settings = cio.customerio(batch_size=args.batch_size, rate_limit=1e9)
            live = Live(Delivery(settings, cio.site_id, cio.api_key, dead_letter=lambda op, error: None),
                        Path(tmp) / "quarantine.jsonl")
            checkpoint = Checkpoint(Path(tmp) / "checkpoint.json", [str(csv)])
            timed("live (stand-in, checkpoint)", args.rows,
                  Backfill(config, [str(csv)], live, at=0.0, checkpoint=checkpoint), live)
            assert len(cio.accepted) == args.rows


if __name__ == "__main__":
    main()
