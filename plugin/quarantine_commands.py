"""`groupspec quarantine list|show` over the quarantine and the dead letter, and the delivery half of
`groupspec quarantine replay --deliver` (the replayed outputs sent to Customer.io and the upstream)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware import Config, ConfigError, load_config
from groupspec.middleware.jsonl import JsonlFile, read_lines

from .customerio.delivery import Delivery
from .sender import DeadLetterFile, SendFailed
from .sender.upstream import Upstream


def _file(args: argparse.Namespace) -> Path:
    """The file to read: FILE (which must exist), else the config's (which may not exist yet: nothing was
    quarantined or dead-lettered so far; its path is relative to the working directory)."""
    what = "dead letter" if args.dead_letter else "quarantine"
    if args.file is not None:
        path = Path(args.file)
        if not path.is_file():
            raise ConfigError(f"{path}: no such {what} file")
    elif args.config is not None:
        config = load_config(args.config)
        path = Path(config.customerio.dead_letter if args.dead_letter else config.quarantine.path)
        if not path.exists():
            print(f"groupspec: no {what} file yet at {path}: nothing recorded", file=sys.stderr)
    else:
        raise ConfigError("give a FILE or --config FILE (its [quarantine] path or [customerio] dead_letter)")
    return path


def _records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():  # the config's file, not written yet
        return []
    try:
        return JsonlFile(path).records()
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a JSONL file of records ({exc})") from None


def summary_line(index: int, rec: dict[str, Any]) -> str:
    """One line: index, time, source (or operation, or message type), and the violation codes (or the
    destination's reason)."""
    if "operation" in rec or "forwarded" in rec:  # a Customer.io or an upstream dead-letter record
        error = rec.get("error") or {}
        status = f"HTTP {error['status']}" if error.get("status") else "not sent"
        if "operation" in rec:
            op = rec.get("operation") or {}
            what = f"{op.get('type', '?')}/{op.get('action', '?')}"
        else:
            what = (rec.get("forwarded") or {}).get("type", "?")
        return f"{index}\t{rec.get('failed_at', '?')}\t{what}\t{error.get('reason', '?')} ({status})"
    codes = ",".join(v.get("code", "?") for v in rec.get("violations") or ())
    return f"{index}\t{rec.get('received_at', '?')}\t{rec.get('source') or '-'}\t{codes}"


def list_records(args: argparse.Namespace) -> int:
    for index, rec in enumerate(_records(_file(args)), 1):
        print(summary_line(index, rec))
    return 0


def show_records(args: argparse.Namespace) -> int:
    path = _file(args)
    records = _records(path)
    if not 1 <= args.index <= len(records):
        raise ConfigError(f"{path}: no record {args.index} (it holds {len(records)})")
    print(orjson.dumps(records[args.index - 1], option=orjson.OPT_INDENT_2).decode())
    return 0


def deliver(config: Config, out: str | Path, sources: list[str | None]) -> dict[str, int]:
    """Send a replay's `customerio.jsonl` to Customer.io and its `forwarded.jsonl` to the upstream, in order;
    `sources` are the forwarded messages' sources (each goes upstream under its source's write key)."""
    out = Path(out)
    done = {"delivered": 0, "dead_lettered": 0, "retries": 0, "upstream_forwarded": 0, "upstream_dead_lettered": 0}
    if config.customerio_configured:
        ops = [orjson.loads(line) for line in read_lines(out / "customerio.jsonl")]
        with Delivery.from_config(config, dead_letter=DeadLetterFile(config.customerio.dead_letter).add) as delivery:
            report = delivery.send(ops)
        done.update(delivered=report.delivered, dead_lettered=report.dead_lettered, retries=report.retries)
    if config.upstream.url is not None:
        bodies = [orjson.loads(line) for line in read_lines(out / "forwarded.jsonl")]
        upstream = Upstream(config)
        try:
            report = upstream.send(list(zip(sources, bodies, strict=True)))
        finally:
            upstream.close()
        done["retries"] += report.retries
        done.update(upstream_forwarded=report.delivered, upstream_dead_lettered=report.dead_lettered)
    return done


def deliver_and_print(config: Config, out: str | Path, sources: list[str | None]) -> int:
    """`deliver`, printing its counts (exit 0) or why it stopped (exit 1; a 401 is a config error, exit 2)."""
    try:
        done = deliver(config, out, sources)
    except SendFailed as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"groupspec: delivery stopped: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(done).decode())
    return 0
