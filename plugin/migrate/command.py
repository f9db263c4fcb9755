"""`groupspec groups migrate --config FILE --map MAP.csv [--at TIME] [--store URL] [--dry-run --out DIR | --deliver]
[--keep-old]`: rename or merge group ids (exit 2 on a bad row: nothing changed)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson
from groupspec.middleware.config import ConfigError, load_config
from groupspec.middleware.engine import trait_owners
from groupspec.middleware.message import parse_time
from groupspec.middleware.stores import open_store
from groupspec.middleware.stores.migrated import migrated

from ..sender import SendFailed
from .plan import admit, plan, record
from .rows import check, read_map


def run(args: argparse.Namespace) -> int:
    if args.dry_run == args.deliver:
        raise ConfigError("groups migrate: give one of --dry-run (with --out DIR) or --deliver")
    if args.dry_run != (args.out is not None):
        raise ConfigError("groups migrate: --dry-run and --out DIR go together")
    config = load_config(args.config)
    now = at = time.time()
    if args.at is not None:
        at = parse_time(args.at)
        if at is None:
            raise ConfigError(f"groups migrate: --at: expected an ISO-8601 time, got {args.at!r}")
    rows = read_map(args.map)
    store = migrated(open_store(config.store_url("live", args.store)), trait_owners(config))
    try:
        store.refresh()
        todo, done = check(rows, store, config, at, keep_old=args.keep_old)
        plans = plan(store, config, [(row.where, migration) for row, migration in todo], now)
        ops = [op for one in plans for op in one.ops]
        summary = {"rows": len(rows), "recorded_before": len(done), "migrated": len(plans), "operations": len(ops)}
        if args.dry_run:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            (out / "customerio.jsonl").write_bytes(b"".join(orjson.dumps(op) + b"\n" for op in ops))
            (out / "migration.json").write_bytes(
                orjson.dumps([one.report for one in plans], option=orjson.OPT_INDENT_2) + b"\n")
        elif plans:
            if not _send(config, ops, summary):
                return 1
            record(store, [admit(store, one.migration) for one in plans])
    finally:
        store.close()
    print(orjson.dumps(summary).decode())
    return 0


def _send(config, ops, summary) -> bool:
    """Deliver through the normal Customer.io delivery (rate limit, retries, dead letter); False when it stopped
    (nothing is recorded: the same command sends again)."""
    from ..customerio.delivery import Delivery

    try:
        with Delivery.from_config(config) as delivery:
            sent = delivery.send(ops)
    except SendFailed as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"groupspec: groups migrate: delivery stopped, nothing recorded (run the same command again): {exc}",
              file=sys.stderr)
        return False
    summary.update(delivered=sent.delivered, dead_lettered=sent.dead_lettered)
    return True
