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

from .customerio.dead_letter import DeadLetterFile
from .customerio.delivery import Delivery, DeliveryFailed
from .service.serve import customerio_configured
from .service.upstream import Upstream, UpstreamFailed


def _file(args: argparse.Namespace) -> Path:
    if args.file is not None:
        path = Path(args.file)
    elif args.config is not None:
        config = load_config(args.config)
        path = Path(config.customerio.dead_letter if args.dead_letter else config.quarantine.path)
    else:
        raise ConfigError("give a FILE or --config FILE (its [quarantine] path or [customerio] dead_letter)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such {'dead letter' if args.dead_letter else 'quarantine'} file")
    return path


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        return JsonlFile(path).records()
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not a JSONL file of records ({exc})") from None


def summary_line(index: int, rec: dict[str, Any]) -> str:
    """One line: index, time, source (or operation), and the violation codes (or Customer.io's reason)."""
    if "operation" in rec:  # a dead-letter record
        op, error = rec.get("operation") or {}, rec.get("error") or {}
        status = f"HTTP {error['status']}" if error.get("status") else "not sent"
        return (f"{index}\t{rec.get('failed_at', '?')}\t{op.get('type', '?')}/{op.get('action', '?')}\t"
                f"{error.get('reason', '?')} ({status})")
    codes = ",".join(v.get("code", "?") for v in rec.get("violations") or ())
    return f"{index}\t{rec.get('received_at', '?')}\t{rec.get('source') or '-'}\t{codes}"


def _list(args: argparse.Namespace) -> int:
    for index, rec in enumerate(_records(_file(args)), 1):
        print(summary_line(index, rec))
    return 0


def _show(args: argparse.Namespace) -> int:
    path = _file(args)
    records = _records(path)
    if not 1 <= args.index <= len(records):
        raise ConfigError(f"{path}: no record {args.index} (it holds {len(records)})")
    print(orjson.dumps(records[args.index - 1], option=orjson.OPT_INDENT_2).decode())
    return 0


def deliver(config: Config, out: str | Path) -> dict[str, int]:
    """Send a replay's `customerio.jsonl` to Customer.io and its `forwarded.jsonl` to the upstream, in order."""
    out = Path(out)
    done = {"delivered": 0, "dead_lettered": 0, "retries": 0, "upstream_forwarded": 0}
    if customerio_configured(config):
        ops = [orjson.loads(line) for line in read_lines(out / "customerio.jsonl")]
        with Delivery.from_config(config, dead_letter=DeadLetterFile(config.customerio.dead_letter).add) as delivery:
            report = delivery.send(ops)
        done.update(delivered=report.delivered, dead_lettered=report.dead_lettered, retries=report.retries)
    if config.upstream.url is not None:
        bodies = [orjson.loads(line) for line in read_lines(out / "forwarded.jsonl")]
        upstream = Upstream(config)
        try:
            done["retries"] += upstream.send(bodies)
        finally:
            upstream.close()
        done["upstream_forwarded"] = len(bodies)
    return done


def deliver_and_print(config: Config, out: str | Path) -> int:
    """`deliver`, printing its counts (exit 0) or why it stopped (exit 1; a 401 is a config error, exit 2)."""
    try:
        done = deliver(config, out)
    except (DeliveryFailed, UpstreamFailed) as exc:
        if isinstance(exc, ConfigError):
            raise
        print(f"groupspec: delivery stopped: {exc}", file=sys.stderr)
        return 1
    print(orjson.dumps(done).decode())
    return 0


def register(verbs: argparse._SubParsersAction, replay: argparse.ArgumentParser) -> None:
    """Add `list` and `show` to `groupspec quarantine`, and `--deliver` to its `replay`."""
    for name, run, help_text in (("list", _list, "one line per record: index, time, source, violation codes"),
                                 ("show", _show, "one record in full")):
        cmd = verbs.add_parser(name, help=help_text)
        if name == "show":
            cmd.add_argument("index", type=int, help="the record's number, as `list` prints it (1 is the first)")
        cmd.add_argument("file", nargs="?", help="a quarantine or dead-letter JSONL (default: from --config)")
        cmd.add_argument("--config", help="read the file's path from this config")
        cmd.add_argument("--dead-letter", action="store_true",
                         help="the dead letter ([customerio] dead_letter) instead of the quarantine")
        cmd.set_defaults(run=run)
    replay.add_argument("--deliver", action="store_true",
                        help="also deliver the outputs to Customer.io (and the upstream), on the service's store")

