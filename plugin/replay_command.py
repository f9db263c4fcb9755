"""`groupspec replay`, `check-config` and `quarantine replay`: read the inputs, run a `Replay`, compare."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson
from groupspec.middleware.config import load_config
from groupspec.middleware.errors import ConfigError
from groupspec.middleware.jsonl import read_lines
from groupspec.middleware.quarantine import payloads as quarantined_payloads

from .collector import streaming
from .migrate.rows import read_map
from .replay import Replay, compare


def replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.source is not None and args.source not in config.sources:
        raise ConfigError(f"{args.config}: sources.{args.source}: no such source (have: {', '.join(config.sources) or 'none'})")
    for path in args.inputs:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such input file")
    payloads = ((line, None) for path in args.inputs for line in read_lines(path))
    migrations = read_map(args.migrations) if args.migrations else []
    with streaming():
        summary = Replay(config, args.out, args.source, store_url=args.store, migrations=migrations).run(payloads)
    print(orjson.dumps(summary).decode())
    return _expect(args)


def quarantine_replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not Path(args.file).is_file():
        raise ConfigError(f"{args.file}: no such quarantine file")
    store_url = config.store_url("live" if args.deliver else "offline", args.store)  # --deliver: [store]
    replay = Replay(config, args.out, args.source, store_url=store_url, keep_sources=args.deliver)
    with streaming():
        summary = replay.run(quarantined_payloads(args.file))
    print(orjson.dumps(summary).decode())
    if args.deliver:
        from .quarantine_commands import deliver_and_print

        if deliver_and_print(config, args.out, replay.forwarded_sources):
            return 1
    return _expect(args)


def check_config(args: argparse.Namespace) -> int:
    """Validate the config; an unset `${VAR}` (a secret the run-time commands defer) is an error unless
    `--allow-unset`."""
    config = load_config(args.config)
    unset = [f"{config.path}: {key}: environment variable {var} is not set" for key, var in config.missing_env.items()]
    if unset and not args.allow_unset:
        raise ConfigError("; ".join(unset) + " (--allow-unset accepts unset variables, e.g. in CI without the secrets)")
    sources = ", ".join(config.sources) or "none"
    allowed = f"; unset: {', '.join(sorted(set(config.missing_env.values())))}" if unset else ""
    print(f"{args.config}: ok (contract {config.contract.version}; sources: {sources}{allowed})")
    return 0


def _expect(args: argparse.Namespace) -> int:
    if not args.expect:
        return 0
    diff = compare(args.out, args.expect)
    if diff:
        print("\n".join(diff))
        print(f"replay output in {args.out} differs from {args.expect}", file=sys.stderr)
        return 1
    print(f"replay output matches {args.expect}")
    return 0
