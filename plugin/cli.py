"""The `groupspec` command. Exit codes: 0 ok, 1 a difference or failure found, 2 usage or config error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson
from groupspec.middleware.config import load_config
from groupspec.middleware.errors import ConfigError, GroupspecError
from groupspec.middleware.jsonl import read_lines
from groupspec.middleware.quarantine import payloads as quarantined_payloads

from . import backfill, contract_diff, quarantine_commands, report
from . import replay as replaying
from .service import serve as serving


def _replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.source is not None and args.source not in config.sources:
        raise ConfigError(f"{args.config}: sources.{args.source}: no such source (have: {', '.join(config.sources) or 'none'})")
    for path in args.inputs:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such input file")
    payloads = ((line, None) for path in args.inputs for line in read_lines(path))
    summary = replaying.Replay(config, args.out, args.source, store_url=args.store).run(payloads)
    print(orjson.dumps(summary).decode())
    return _expect(args)


def _expect(args: argparse.Namespace) -> int:
    if not args.expect:
        return 0
    diff = replaying.compare(args.out, args.expect)
    if diff:
        print("\n".join(diff))
        print(f"replay output in {args.out} differs from {args.expect}", file=sys.stderr)
        return 1
    print(f"replay output matches {args.expect}")
    return 0


def _quarantine_replay(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if not Path(args.file).is_file():
        raise ConfigError(f"{args.file}: no such quarantine file")
    store_url = config.store_url("live" if args.deliver else "offline", args.store)  # --deliver: the service's
    summary = replaying.Replay(config, args.out, args.source, store_url=store_url).run(quarantined_payloads(args.file))
    print(orjson.dumps(summary).decode())
    if args.deliver and quarantine_commands.deliver_and_print(config, args.out):
        return 1
    return _expect(args)


def _check_config(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sources = ", ".join(config.sources) or "none"
    print(f"{args.config}: ok (contract {config.contract.version}; sources: {sources})")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="groupspec", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="run recorded JSONL streams through the contract, offline")
    replay.add_argument("inputs", nargs="+", metavar="INPUT", help=".jsonl or .jsonl.gz streams")
    replay.add_argument("--config", required=True)
    replay.add_argument("--source", help="source for messages without a known writeKey")
    replay.add_argument("--out", required=True, help="folder for the outputs")
    replay.add_argument("--expect", help="folder of expected outputs; exit 1 on a difference")
    replay.add_argument("--store", help="store url, overriding [store] (default: memory://)")
    replay.set_defaults(run=_replay)

    check = commands.add_parser("check-config", help="validate a config file")
    check.add_argument("config")
    check.set_defaults(run=_check_config)

    quarantine = commands.add_parser("quarantine", help="work with quarantined messages")
    verbs = quarantine.add_subparsers(dest="verb", required=True)
    q_replay = verbs.add_parser("replay", help="run quarantined messages through the current contract")
    q_replay.add_argument("file", help="a quarantine.jsonl")
    q_replay.add_argument("--config", required=True)
    q_replay.add_argument("--source")
    q_replay.add_argument("--out", required=True)
    q_replay.add_argument("--expect")
    q_replay.add_argument("--store", help="store url, overriding [store]")
    q_replay.set_defaults(run=_quarantine_replay)
    quarantine_commands.register(verbs, q_replay)
    contract_diff.register(commands)
    report.register(commands)
    backfill.register(commands)
    serving.register(commands)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except GroupspecError as exc:
        print(f"groupspec: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, EOFError) as exc:  # unreadable input or output: say which, no traceback
        print(f"groupspec: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
