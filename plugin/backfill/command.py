"""`groupspec backfill INPUT... --config FILE [--dry-run --out DIR] [--checkpoint FILE]`."""

from __future__ import annotations

import argparse
import sys
import time
from functools import partial
from pathlib import Path

import orjson
from groupspec.middleware.config import ConfigError, load_config
from groupspec.middleware.message import parse_time

from ..collector import streaming
from ..customerio.delivery import Delivery
from ..erasure import erase_people
from ..sender import SendFailed, Unauthorized
from .checkpoint import Checkpoint, Position
from .inputs import InputError, check, count
from .interrupts import Interrupts
from .progress import progress_bar
from .run import Backfill
from .sinks import Files, Live


def _check(args: argparse.Namespace) -> None:
    if args.dry_run != (args.out is not None):
        raise ConfigError("backfill: --dry-run and --out DIR go together (a dry run writes its operations to DIR)")
    if args.dry_run and args.checkpoint:
        raise ConfigError("backfill: a dry run is not resumable; drop --checkpoint")
    for path in args.inputs:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such input file")
        try:
            check(path)  # a header that repeats a column, a file that is not gzip: refused before anything is sent
        except InputError as exc:
            raise ConfigError(str(exc)) from None


def _start(args: argparse.Namespace, checkpoint: Checkpoint | None) -> tuple[Position, float]:
    """Where to start and the run's time: from the checkpoint of an earlier run, else the beginning and now."""
    earlier = checkpoint.load() if checkpoint else None
    if earlier is not None:
        return earlier
    if args.at is None:
        return Position(), float(int(time.time()))
    at = parse_time(args.at)
    if at is None:
        raise ConfigError(f"backfill: --at: expected an ISO-8601 time, got {args.at!r}")
    return Position(), at


def _stopped(reason: str, backfill: Backfill, checkpoint: Checkpoint | None) -> None:
    position = backfill.position
    done = (f"records done up to {backfill.inputs[position.file]}:{position.line}"
            if position.file < len(backfill.inputs) else "every record done")
    resume = (f"rerun the same command to resume from {checkpoint.path}" if checkpoint
              else "no --checkpoint was given, so a rerun starts from the beginning")
    print(f"groupspec: backfill stopped: {reason}; {done}; {resume}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    _check(args)
    if args.source is not None and args.source not in config.sources:
        raise ConfigError(f"{args.config}: sources.{args.source}: no such source")
    checkpoint = Checkpoint(args.checkpoint, args.inputs) if args.checkpoint else None
    start, at = _start(args, checkpoint)
    if checkpoint and checkpoint.complete(start):
        print(f"backfill already complete according to {checkpoint.path}", file=sys.stderr)
        return 0
    sink = Files(args.out) if args.dry_run else Live(Delivery.from_config(config), config.quarantine.path,
                                                     erase=partial(erase_people, config))
    total = lambda: sum(count(path) for path in args.inputs)  # noqa: E731
    try:
        # SIGTERM stops a backfill like Ctrl-C; either waits for the batch in flight to be recorded (interrupts.py)
        with progress_bar(total, enabled=not args.quiet) as advance, Interrupts() as interrupts, streaming():
            store_url = config.store_url("offline" if args.dry_run else "live", args.store)  # a dry run changes nothing
            backfill = Backfill(config, args.inputs, sink, at=at, source=args.source, store_url=store_url,
                                checkpoint=checkpoint, every=args.checkpoint_every, progress=advance,
                                interrupts=interrupts)
            try:
                counts = backfill.run(start)
            except Unauthorized:
                raise
            except SendFailed as exc:
                _stopped(str(exc), backfill, checkpoint)
                return 1
            except InputError as exc:  # an input that cannot be read on (a bad row is quarantined instead)
                _stopped(str(exc), backfill, checkpoint)
                return 2
            except KeyboardInterrupt:
                _stopped("interrupted", backfill, checkpoint)
                return 130
    finally:
        sink.close()
    summary = {**counts.as_dict(), **sink.totals()}
    if args.dry_run:
        (Path(args.out) / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    print(orjson.dumps(summary).decode())
    return 0
