"""The files a forgotten person's records are removed from: the quarantine, Customer.io's dead letter, the
upstream's dead letter (each rewritten atomically under its lock, `middleware/jsonl.py`) and the service's spool
(`spool.py`: their unsent messages, in its transaction, never under a delivery). Used by `groupspec people
forget` and, after an `[privacy] erase_on` event, by the service's worker.

A record is the person's only when an identity field names them (`middleware/privacy.py`); the files the user
asked for (`USER_FILES`) are never touched."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

from groupspec.middleware.config import Config
from groupspec.middleware.errors import GroupspecError
from groupspec.middleware.jsonl import rewrite
from groupspec.middleware.privacy import Erasure, keep_line, names_in_message

from . import spool

#: kind -> (the config's path of the file, the record field holding what names the person, how it is matched)
JSONL_FILES: dict[str, tuple[Callable[[Config], str], str, str]] = {
    "quarantine": (lambda c: c.quarantine.path, "message", "message"),
    "customerio dead letter": (lambda c: c.customerio.dead_letter, "operation", "operation"),
    "upstream dead letter": (lambda c: c.upstream.dead_letter, "forwarded", "message"),
}
SPOOL = "spool"
#: outputs written where the user asked: theirs to erase (`people forget` lists them)
USER_FILES = ("replay --out folders", "quarantine replay --out folders", "backfill --dry-run --out folders",
              "verify --json / --html files", "report --html files", "migration.json")


class UnreadableFile(GroupspecError):
    """A file an erasure must rewrite cannot be read: nothing was erased."""

    exit_code = 2


def paths(config: Config) -> dict[str, str]:
    """Each kind of file an erasure rewrites, and where the config puts it."""
    return {**{kind: where(config) for kind, (where, _, _) in JSONL_FILES.items()}, SPOOL: config.service.spool}


def check_readable(config: Config) -> None:
    """UnreadableFile naming the first file that exists and cannot be read (before anything is changed)."""
    for kind, path in paths(config).items():
        if not Path(path).exists():
            continue
        try:
            if kind == SPOOL:
                db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
                try:
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
                finally:
                    db.close()
            else:
                with open(path, "rb") as stream:
                    stream.read(1)
        except (OSError, sqlite3.Error) as exc:
            raise UnreadableFile(f"{path} ({kind}): cannot be read ({getattr(exc, 'strerror', None) or exc}); "
                                 "nothing was erased") from None


def erase_files(config: Config, names: list[str], *, dry_run: bool = False) -> dict[str, int]:
    """Remove the records naming the person (any of `names`) from every listed file; the records (spool: messages)
    removed by kind (`dry_run`: counted, nothing written). Call it inside `spool.erasing` of the config's spool."""
    found = frozenset(names)
    removed = {}
    for kind, (where, field, match) in JSONL_FILES.items():
        removed[kind] = rewrite(where(config), keep_line(field, match, found), dry_run=dry_run)
    removed[SPOOL] = erase_spool(config, found, dry_run=dry_run)
    return removed


def erase_people(config: Config, done: list[Erasure]) -> None:
    """The files' part of the erasures a chunk of the service made (`[privacy] erase_on`), the spool held."""
    held = spool.erasing(config.service.spool) if Path(config.service.spool).exists() else nullcontext()
    with held:
        for one in done:
            erase_files(config, one.names)


def erase_spool(config: Config, names: frozenset[str], *, dry_run: bool = False) -> int:
    """The person's unsent messages removed from the spool (none when there is no spool file)."""
    path = config.service.spool
    if not Path(path).exists():
        return 0
    return spool.erase(path, lambda message: names_in_message(message, names), sorted(names), dry_run=dry_run)

