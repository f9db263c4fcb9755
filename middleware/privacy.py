"""Erasure (docs/privacy.md): which store records and file records name a person, what a forgotten person's
erasure removes, the keyed hash the stores keep instead of message keys and forgotten ids, and the step that
refuses a forgotten id's later messages (`[privacy] suppress_forgotten`).

Who is erased: the person keys named (``u:ID``; ``a:ID`` when named on its own), and every key linked to them that
links to no other remaining person; a shared device's anonymous id stays, without its link to the forgotten person.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import forks
from .config import Config
from .jsonl import rewrite
from .message import Message
from .stores import Store

#: where a spec message names its person (file records are matched on these, never on free text)
MESSAGE_PATHS = (("userId",), ("anonymousId",), ("previousId",), ("traits", "email"), ("context", "traits", "email"))
#: where a Track API v2 operation names a person: its identifiers (person operations), a merge's two people, the
#: people of its relationships, and the person attributes that carry an id
OPERATION_IDS = ("id", "email", "anonymous_id", "cio_id")


class KeyedHash:
    """BLAKE2b keyed with the privacy key (128-bit hex digests): what the stores keep instead of a message key or
    a forgotten id. Without the key a digest cannot be tied to the person it came from.

    The key is made on first use by `prepare` (which may read the store: a store that does not answer then makes
    that message `store_unavailable`, and the next use tries again)."""

    __slots__ = ("_keyed", "_prepare", "_lock", "__weakref__")

    def __init__(self, secret: bytes | None = None, prepare: Callable[[KeyedHash], bytes] | None = None) -> None:
        self._keyed = None if secret is None else _keyed(secret)  # copied per hash: the key is set up once
        self._prepare = prepare
        self._lock = threading.Lock()
        forks.register(self)

    def after_fork(self, child: bool) -> None:
        """A forked child's own lock (another thread may have been preparing the key)."""
        if child:
            self._lock = threading.Lock()

    def __call__(self, text: str) -> str:
        keyed = self._keyed
        if keyed is None:
            keyed = self._ready()
        one = keyed.copy()
        one.update(text.encode())
        return one.hexdigest()

    def _ready(self) -> Any:
        with self._lock:
            if self._keyed is None:
                self._keyed = _keyed(self._prepare(self))
            return self._keyed

    def __repr__(self) -> str:
        return "KeyedHash(<secret>)"


def _keyed(secret: bytes) -> Any:
    return hashlib.blake2b(key=hashlib.sha256(secret).digest(), digest_size=16)


def keyed_hash(config: Config, store: Store) -> KeyedHash:
    """The hash of `[privacy] key`, else of the store's own random key; before its first use, a store that still
    holds plain message keys (written before they were hashed) is re-keyed, once."""
    configured = config.privacy.key

    def prepare(hasher: KeyedHash) -> bytes:
        secret = configured.get_secret_value().encode() if configured is not None else store.privacy_key()
        store.rekey_message_keys(KeyedHash(secret))
        return secret

    return KeyedHash(prepare=prepare)


@dataclass
class Erasure:
    """What forgetting a person removed (or, in a dry run, would remove) from the store."""

    names: list[str]  # every identifier of the person: the ids named, those of the erased keys, emails
    keys: list[str] = field(default_factory=list)  # the person keys erased
    kept: list[str] = field(default_factory=list)  # linked keys kept: they link to another remaining person
    removed: dict[str, int] = field(default_factory=dict)  # store records by kind


def erasable(store: Store, roots: Iterable[str], candidates: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """``(keys to erase, linked keys kept)``: the `roots`, then every key linked to an erased one (or among
    `candidates`) whose links all lead to erased keys, until none is added."""
    erase = list(dict.fromkeys(roots))
    links: dict[str, list[str]] = {}

    def linked(key: str) -> list[str]:
        if key not in links:
            links[key] = store.linked_to(key)
        return links[key]

    pending = list(dict.fromkeys(candidates))
    while True:
        around = [k for k in dict.fromkeys([*pending, *(o for e in erase for o in linked(e))]) if k not in erase]
        added = [k for k in around if all(o in erase for o in linked(k))]
        if not added:
            return erase, around
        erase += added


def forget(store: Store, hasher: KeyedHash, roots: list[str], candidates: list[str] = (), names: Iterable[str] = (),
           *, suppress: bool = False, dry_run: bool = False) -> Erasure:
    """Erase a person from the store (see the module docstring); with `suppress`, remember the keyed hashes of the
    erased keys so their later messages are refused."""
    keys, kept = erasable(store, roots, candidates)
    removed = store.forget(keys, dry_run=dry_run)
    if suppress and not dry_run:
        store.suppress([hasher(key) for key in keys])
    return Erasure(list(dict.fromkeys([*names, *(key[2:] for key in keys)])), keys, kept, removed)


def forget_message(store: Store, hasher: KeyedHash, msg: Message, suppress: bool) -> Erasure:
    """The erasure an `[privacy] erase_on` event asks for: its user (else its anonymous id) and every key linked
    only to them; the message's anonymous id too unless it links to another remaining person."""
    user = None if msg.user_id is None else "u:" + msg.user_id
    device = None if msg.anonymous_id is None else "a:" + msg.anonymous_id
    roots = [user or device]
    emails = [value for path in MESSAGE_PATHS[3:] if isinstance(value := _at(msg.body, path), str)]
    return forget(store, hasher, roots, [device] if user and device else [], emails, suppress=suppress)


def message_keys(msg: Message) -> list[str]:
    """The person keys a message names (its userId, anonymousId and an alias's previousId)."""
    keys = [] if msg.user_id is None else ["u:" + msg.user_id]
    if msg.anonymous_id is not None:
        keys.append("a:" + msg.anonymous_id)
    previous = msg.body.get("previousId") if msg.type == "alias" else None
    if isinstance(previous, str | int) and not isinstance(previous, bool):
        keys.append("u:" + str(previous))
    return keys


class Suppress:
    """The first step under `[privacy] suppress_forgotten`: a message naming a forgotten id is dropped before the
    store sees it (no arrival record, nothing learnt), written nowhere, and counted `suppressed`."""

    def __init__(self, store: Store, hasher: KeyedHash) -> None:
        self.store, self.hasher = store, hasher

    def __call__(self, msg: Message) -> Message:
        keys = message_keys(msg)
        if keys and self.store.suppressed([self.hasher(key) for key in keys]):
            msg.suppress()
        return msg


# -- file records -------------------------------------------------------------------------------------------------

def _at(node: Any, path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _is(value: Any, names: frozenset[str]) -> bool:
    if isinstance(value, str):
        return value in names
    return isinstance(value, int) and not isinstance(value, bool) and str(value) in names


def names_in_message(message: Any, names: frozenset[str]) -> bool:
    """Whether a spec message (or a raw line a quarantine kept as text) names the person: an identity field
    holds one of `names`; in raw text, one of them as a JSON string."""
    if isinstance(message, str):
        return any(f'"{name}"' in message for name in names)
    return isinstance(message, dict) and any(_is(_at(message, path), names) for path in MESSAGE_PATHS)


def _names_ids(ids: Any, names: frozenset[str]) -> bool:
    return isinstance(ids, dict) and any(
        _is(ids.get(key), names) or (key == "cio_id" and _is(f"cio_{ids.get(key)}", names)) for key in OPERATION_IDS)


def operation_without(op: Any, names: frozenset[str]) -> Any:
    """A Track API v2 operation without the person: None when it is the person's (its identifiers, a merge,
    attributes naming them, or its only relationships), else the operation with their relationships left out."""
    if not isinstance(op, dict):
        return op
    if op.get("type") == "person" and (_names_ids(op.get("identifiers"), names)
                                       or _names_ids(op.get("attributes"), names)):
        return None
    if any(_names_ids(op.get(side), names) for side in ("primary", "secondary")):
        return None
    related = op.get("cio_relationships")
    if isinstance(related, list):
        others = [r for r in related if not (isinstance(r, dict) and _names_ids(r.get("identifiers"), names))]
        if len(others) < len(related):
            return None if not others else {**op, "cio_relationships": others}
    return op


def keep_line(field: str, match: str, names: frozenset[str]) -> Callable[[bytes], bytes | None]:
    """The `jsonl.rewrite` filter of a file of records (quarantine: the "message" of each; a dead letter: its
    "operation" or "forwarded"): a line without the person as it is, theirs left out, a dead-lettered operation
    naming others too without the person's relationships. `match` says what `field` holds: "message" or
    "operation"."""

    def keep(line: bytes) -> bytes | None:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:  # not JSON: the person's only if it holds one of their ids as a JSON string
            return None if names_in_message(line.decode("utf-8", "replace"), names) else line
        item = record.get(field) if isinstance(record, dict) else None
        if match == "message":
            return None if names_in_message(item, names) else line
        kept = operation_without(item, names)
        if kept is None:
            return None
        return line if kept is item else orjson.dumps({**record, field: kept})

    return keep


def forget_in_quarantine(path: str, done: Iterable[Erasure]) -> int:
    """Remove the erased people's records from a quarantine file (atomically, under its lock); how many."""
    names = frozenset(name for one in done for name in one.names)
    return rewrite(path, keep_line("message", "message", names)) if names else 0
