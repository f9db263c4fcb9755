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
from .replay import Replay, compare


def replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.source is not None and args.source not in config.sources:
        raise ConfigError(f"{args.config}: sources.{args.source}: no such source (have: {', '.join(config.sources) or 'none'})")
    for path in args.inputs:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such input file")
    payloads = ((line, None) for path in args.inputs for line in read_lines(path))
    with streaming():
        summary = Replay(config, args.out, args.source, store_url=args.store).run(payloads)
    print(orjson.dumps(summary).decode())
    return _expect(args)


def quarantine_replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not Path(args.file).is_file():
        raise ConfigError(f"{args.file}: no such quarantine file")
    store_url = config.store_url("live" if args.deliver else "offline", args.store)  # --deliver: the service's
    with streaming():
        summary = Replay(config, args.out, args.source, store_url=store_url).run(quarantined_payloads(args.file))
    print(orjson.dumps(summary).decode())
    if args.deliver:
        from .quarantine_commands import deliver_and_print

        if deliver_and_print(config, args.out):
            return 1
    return _expect(args)


def check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sources = ", ".join(config.sources) or "none"
    print(f"{args.config}: ok (contract {config.contract.version}; sources: {sources})")
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
