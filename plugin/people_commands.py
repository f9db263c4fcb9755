"""`groupspec people forget`: erase people on a request that comes from outside the stream (a privacy tool,
Segment's deletion regulations). Per id, in this order, while the service's spool is held against delivery (the
chunk being sent finishes first): Customer.io's person `delete` (only for users the store knows: on its
evidence), then the store (`privacy.forget`, scrubbed), then the files (`erasure.erase_files`). `--dry-run` says
what would go and changes nothing."""

from __future__ import annotations

import argparse
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware import ConfigError, load_config, open_store
from groupspec.middleware.errors import GroupspecError
from groupspec.middleware.privacy import Erasure, KeyedHash, forget as forget_person, keyed_hash
from groupspec.middleware.stores import Store

from . import erasure
from .customerio import identifiers
from . import spool

UPSTREAM_NOTE = ("the upstream (Segment, RudderStack) keeps its own copy: groupspec does not call its deletion API "
                 "(Segment: a deletion regulation; RudderStack: its data regulation API)")


def forget(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    url = config.store_url("live", args.store)
    if url.startswith("memory://"):
        where = "--store" if args.store else f"{config.path}: store.url"
        raise ConfigError(f"{where}: memory:// lives inside the one process that holds it, so no other process can "
                          "forget anyone in it; name the store the service or SDK hook uses (sqlite:///..., redis://...)")
    if any(not person.strip() for person in args.ids):
        raise ConfigError("ID: expected a userId, an anonymousId or an email, got an empty string")
    erasure.check_readable(config)
    delivery = _delivery(config) if not args.dry_run else None
    store = open_store(url)
    held = spool.erasing(config.service.spool) if Path(config.service.spool).exists() else nullcontext()
    try:
        hasher = keyed_hash(config, store)
        with held:
            for person in dict.fromkeys(args.ids):
                _forget_one(config, store, hasher, person, delivery, args.dry_run)
    except TimeoutError as exc:
        raise GroupspecError(str(exc)) from None
    finally:
        store.close()
        if delivery is not None:
            delivery.close()
    print(f"not erased by groupspec: {UPSTREAM_NOTE}")
    print(f"files you asked for are yours to delete: {', '.join(erasure.USER_FILES)}")
    return 0


def _forget_one(config: Any, store: Store, hasher: KeyedHash, person: str, delivery: Any, dry_run: bool) -> None:
    roots = ["u:" + person, "a:" + person]
    plan = forget_person(store, hasher, roots, names=[person], dry_run=True)
    files = erasure.erase_files(config, plan.names, dry_run=True)
    if not any(plan.removed.values()) and not any(files.values()):
        print(f"{person}: nothing to forget (the store never saw this id and no file holds it)")
        return
    known = [key for key in plan.keys if key.startswith("u:") and any(store.forget([key], dry_run=True).values())
             and config.customerio_configured]
    deletes = [{"type": "person", "action": "delete", "identifiers": identifiers.person(key[2:])} for key in known]
    if dry_run:
        _print(person, plan, files, deletes, "would remove", "would send")
        return
    sent = _send(delivery, deletes)
    done = forget_person(store, hasher, roots, names=[person], suppress=config.privacy.suppress_forgotten)
    scrubbed = store.scrub()
    files = erasure.erase_files(config, done.names)
    _print(person, done, files, deletes if sent else [], "removed", "sent")
    if not scrubbed:
        print(f"{person}: the store's WAL is held by a reader: run `groupspec people forget` again to finish "
              "wiping the removed rows from its files")


def _delivery(config: Any) -> Any:
    if not config.customerio_configured:
        return None
    from .customerio.delivery import Delivery

    return Delivery.from_config(config, dead_letter=_refused)


def _refused(op: dict[str, Any], error: dict[str, Any]) -> None:
    """A delete Customer.io refused is an error to report, not a dead letter (which this erasure rewrites)."""
    raise GroupspecError(f"Customer.io refused the person delete: {error.get('message') or error}; nothing was erased")


def _send(delivery: Any, deletes: list[dict[str, Any]]) -> bool:
    """Send Customer.io the deletes (before anything local goes: a failure leaves the evidence to try again)."""
    if not deletes or delivery is None:
        return False
    from .sender import SendFailed

    try:
        delivery.send(deletes)
    except SendFailed as exc:
        raise GroupspecError(f"Customer.io: the person delete was not sent ({exc}); nothing was erased") from None
    return True


def _print(person: str, done: Erasure, files: dict[str, int], deletes: list[dict[str, Any]], verb: str,
           sent: str) -> None:
    print(f"{person}: {verb}")
    print("kind\tcount")
    for kind, count in done.removed.items():
        print(f"store {kind}\t{count}")
    for kind, count in files.items():
        print(f"{kind}\t{count}")
    if done.kept:
        print(f"kept (linked to another person too): {', '.join(done.kept)}")
    for op in deletes:
        print(f"Customer.io: person delete {sent} for {orjson.dumps(op['identifiers']).decode()}")
    if not deletes and any(done.removed.values()):
        print("Customer.io: no delete sent (not configured, or the person is known by anonymous ids only)")
