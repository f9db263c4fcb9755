"""`groupspec verify --config FILE [--store URL] [--sample N | --group TYPE:ID ...] [--json FILE] [--html FILE]
[--max-pages N] [--time-limit DURATION] [--repair [--delete-unknown] [--dry-run]]`: exit 1 when Customer.io
drifted from the store's view (or a group could not be read whole), 2 on a usage or config error."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from groupspec.middleware.config import Config, ConfigError, load_config
from groupspec.middleware.engine import trait_owners
from groupspec.middleware.stores import Store, open_store
from groupspec.middleware.stores.migrated import migrated

from . import report
from .appapi import AppApi, AppApiError
from .compare import Actual, GroupResult, compare
from .expected import GroupView, choose, owned_attributes, view
from .repair import operations


def fetch(api: AppApi, group: GroupView, owned: set[str]) -> Actual:
    """What Customer.io holds for a group: its attributes, its relationships, its members' attributes; an
    `incomplete` answer when any read was cut short (an error, the object gone mid-read, a limit reached)."""
    try:
        attributes = api.object_attributes(group.object_type_id, group.group_id)
        relationships = [] if attributes is None else api.object_relationships(group.object_type_id, group.group_id)
        if relationships is None:
            raise AppApiError("Customer.io App API: the object's attributes were read, then its relationships "
                              "answered HTTP 404")
        people = [(ids, api.customer_attributes(ids)) for ids in group.members] if owned else []
    except AppApiError as exc:
        return Actual(None, [], incomplete=str(exc))
    return Actual(attributes, relationships, people)


def verify(store: Store, config: Config, api: AppApi, groups: list[tuple[str, str]],
           advance: Callable[[], None] = lambda: None) -> list[GroupResult]:
    """Compare each group with what Customer.io holds."""
    owned = owned_attributes(config)
    results = []
    for type_id, group_id in groups:
        group = view(store, config, type_id, group_id)
        results.append(GroupResult(group, compare(group, fetch(api, group, owned), owned)))
        advance()
    return results


@contextmanager
def progress(total: int) -> Iterator[Callable[[], None]]:
    """An `advance()` for a bar on stderr, shown only on a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda: None
        return
    columns = (TextColumn("verify"), BarColumn(), MofNCompleteColumn(), TextColumn("groups"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("verify", total=total)
        yield lambda: bar.advance(task)


def run(args: argparse.Namespace) -> int:
    for flag, given in (("--dry-run", args.dry_run), ("--delete-unknown", args.delete_unknown)):
        if given and not args.repair:
            raise ConfigError(f"verify: {flag} goes with --repair")
    config = load_config(args.config)
    limits = {"verify_max_pages": args.max_pages, "verify_time_limit": args.time_limit}  # the flags win
    limits = {name: value for name, value in limits.items() if value is not None}
    config = config.model_copy(update={"customerio": config.customerio.model_copy(update=limits)})
    store = migrated(open_store(config.store_url("live", args.store)), trait_owners(config))
    try:
        store.refresh()  # a migrated id is checked as gone (or kept with migrated_to), its new id with its members
        known = set(store.groups()) if args.group else set()
        unknown = [f"{t}:{g}" for t, g in args.group or [] if (t, g) not in known]
        if unknown:
            raise ConfigError(f"verify: --group {', '.join(unknown)}: the store knows no such group")
        groups = choose(store, args.group, args.sample)
        with AppApi.from_config(config) as api, progress(len(groups)) as advance:
            results = verify(store, config, api, groups, advance)
    finally:
        store.close()
    repairs = [op for result in results for op in operations(result, args.delete_unknown)] if args.repair else None
    doc = report.document(results, repairs)
    report.render(doc, results)
    _write(args.json, report.to_json(doc))
    _write(args.html, report.html(doc).encode())
    if repairs and not args.dry_run:
        _send(config, repairs)
    return 1 if doc["drifts"] else 0


def _write(path: str | None, data: bytes) -> None:
    if path:
        Path(path).write_bytes(data)
        print(f"wrote {path}", file=sys.stderr)


def _send(config: Config, ops: list[dict[str, Any]]) -> None:
    """Deliver the repair through the normal Customer.io delivery (its batching, retries and dead letter)."""
    from ..customerio.delivery import Delivery

    with Delivery.from_config(config) as delivery:
        sent = delivery.send(ops)
    print(f"repair: {len(ops)} operations, {sent.delivered} delivered, {sent.dead_lettered} dead-lettered "
          f"({config.customerio.dead_letter})", file=sys.stderr)
