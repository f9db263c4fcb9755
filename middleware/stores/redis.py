"""The shared store on Redis (redis-py): several service or app instances see one point-in-time view.

`redis://host:port/db` opens a single Redis, `redis+cluster://host:port[,host:port...]` a Redis Cluster (redis-py's
cluster client; the listed nodes are where it starts to discover the others).

Key layout — every key starts with a namespace prefix (default ``gs``) and carries a hash tag, so each
multi-key script touches one slot and the layout works on Redis Cluster:

| key | type | holds |
|---|---|---|
| ``{p:KEY}:l`` / ``:la`` | set / hash | person keys linked to KEY / linked key -> arrived (absent: always known) |
| ``{p:KEY}:e`` | hash | membership event ``[type, group, ts, joined]`` -> ``seq arrived`` (HSETNX dedupes) |
| ``{g:[TYPE,ID]}:n`` | string | the group's seq counter (INCR: order of recording) |
| ``{g:[TYPE,ID]}:d`` | set | deletions of the object: ``ts arrived`` |
| ``{g:[TYPE,ID]}:t:NAME`` | hash | trait history: message id -> ``seq [ts, value, arrived]`` |
| ``{g:[TYPE,ID]}:a`` / ``:ad`` | zset / hash | activity log (score = time) / its dedupe: message id -> seq |
| ``{rollups}:due`` / ``:seq`` | zset / hash | groups with unsent rollup changes: due time / up to which seq |
| ``{arrivals}:n`` / ``:ids`` / ``:t`` | string / hash / zset | arrival counter / message id -> arrival number / message id by its first arrival's event time (retention; a re-send gets it back) |
| ``{g:[TYPE,ID]}:r`` | hash | relationship attributes: person key -> ``[ts, attributes]`` (the latest by ts) |
| ``{migrations}:m`` / ``:n`` | hash / string | group id migrations: ``[type, old id]`` -> ``seq [new id, mode, at, keep_old, arrived]`` / the migration counter |
| ``{privacy}:key`` / ``:message_keys`` / ``:forgotten`` | string / string / set | the store's own hash key / ``keyed`` once message ids are keyed hashes (`rekey`) / keyed hashes of forgotten person keys |
| ``{format}:version`` / ``:lock`` | string / string | the keyspace's format version (`formats.py`; absent: written before versions) / held while a process migrates it |

Message ids are keyed hashes (`privacy.KeyedHash`), never plain message keys. A person's records are the keys
tagged ``{p:KEY}`` and KEY's entries in the link keys of the persons linked to it: `forget` reaches them by name
(on a cluster, whichever master holds each slot), so it needs no scan.

`arrived` is the arrival number of the message that recorded the fact; it is absent from values written before
arrival numbers existed (always known). A trait value's payload is ``[ts, value, arrived, source]`` (the writing
source; values written before format version 2 have no fourth item, and read as of no known source). Links are
never pruned; a keyspace written by a release that pruned them may hold ``{p:KEY}:lt`` hashes (link times), which
nothing reads.

Round trips: `lookup` (what a message needs before it is resolved, a group call's stale-trait check included) is
one script on a single Redis; on a cluster, where one script reaches one slot, it is pipelined rounds across the
masters: the arrival number, the person's links and membership events and a group call's own trait histories,
then the events of newly linked persons and the deletions and traits of the groups found (two rounds for an
unlinked person, one more per link hop). The writes of a message (`batch`) go out as one pipeline; on a cluster a
membership write first takes its group's seq (one more round). So a track message resolved by membership costs one
round trip on a single Redis, a group call with traits two (the lookup, the writes).

A door's chunk costs fewer: `prefetch` (inside `transaction()`) reads what its messages will look up at once and
reserves their arrival numbers (`_Chunk`; ARCHITECTURE.md, "The Redis store"), so a chunk of track messages costs
about three round trips in all, and queued writes ride with the next read.

A Redis error (refused connection, timeout, a cluster master gone, ...) raises `StoreError`; nothing answers
"unresolved" on an error. The format version is checked (and an older keyspace migrated) when the store is
opened, or at its first command when Redis did not answer then. A forked child makes its own client.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException
from redis.retry import Retry

from .. import forks
from ..migrations import Migration
from .base import Activity, Lookup, Membership, Store, StoreError, TraitEntry
from .formats import Format, FormatError
from .history import Deletion, Event, fold_memberships, latest_at, linked, stale_after

CLUSTER_SCHEME = "redis+cluster://"
_LINK_LIMIT = 1000  # the most person keys one identity walk visits (as `history.linked`)
_SPARE = 16  # arrival numbers a prefetch reserves beyond its messages', for messages it did not foresee

# KEYS: counter, one trait-history hash per name; ARGV: message id, one "[ts, value]" per name.
_APPLY_TRAITS = """
for i = 2, #KEYS do
  if redis.call('HEXISTS', KEYS[i], ARGV[1]) == 0 then
    redis.call('HSET', KEYS[i], ARGV[1], redis.call('INCR', KEYS[1]) .. ' ' .. ARGV[i])
  end
end
"""
# KEYS: linked keys set, their arrivals hash; ARGV: other key, arrived ("": always known). The first arrival stays.
_LINK = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 and ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
end
"""
# admit(arrival counter, message id hash, time zset, message id, event time): its arrival number, the first one
# given, and the event time of its first arrival (false: a record without one); the time index also lets
# `compact` prune arrival records by event time.
_ADMIT_BODY = """
local function admit(counter, ids, times, message_id, ts)
  local seen = redis.call('HGET', ids, message_id)
  if seen then return tonumber(seen), redis.call('ZSCORE', times, message_id) end
  local arrived = redis.call('INCR', counter)
  redis.call('HSET', ids, message_id, arrived)
  redis.call('ZADD', times, ts, message_id)
  return arrived, ts
end
"""
# KEYS: arrival counter, message id hash, time zset; ARGV: message id, event time. Returns {arrival, first time}.
_ADMIT = _ADMIT_BODY + "return {admit(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])}"
# KEYS: message id hash, time zset; ARGV: per message numbered from a `prefetch` reservation its id, event time
# and number. Writes their arrival records (a record already there stays).
_ADMIT_RESERVED = """
for i = 1, #ARGV, 3 do
  if redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 2]) == 1 then redis.call('ZADD', KEYS[2], ARGV[i + 1], ARGV[i]) end
end
"""
# KEYS: arrival counter; ARGV: the last number of a reservation, the last one used. Gives the unused rest back
# when no number was given after it (one process alone numbers as one message at a time would).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
"""
# KEYS: the group's seq counter, the person's events hash (two slots: a single Redis only);
# ARGV: event field, arrived ("": always known).
_RECORD_MEMBERSHIP = """
local seq = redis.call('INCR', KEYS[1])
if ARGV[2] ~= '' then seq = seq .. ' ' .. ARGV[2] end
redis.call('HSETNX', KEYS[2], ARGV[1], seq)
"""
# Everything a message needs before it is resolved, in one call on a single Redis (where a script may reach
# keys of any slot). KEYS: arrival counter, message id hash, time zset; ARGV: prefix, message id, the message's
# event time, ts (the time read at), the count of trait
# names and the names, the count of start keys and the keys, the count of group tags asked for and the tags,
# the tag of the group whose stale traits are asked ("": none), the count of their names and the names.
# Returns {arrival, {key, linked keys, their arrivals hash}..., events hash per visited key, group tags (asked
# for and of the events at or before ts), deletions per tag, per tag the trait hashes per name, the stale-asked
# group's trait hashes per name, the first arrival's event time}.
# A script's start keys and group tags (each a count, then its items, from ARGV[at]), without repeats and in order:
# `order` / `seen` and `tags` / `tagged`; `at` is left past them.
_DISTINCT = """
local seen, order = {}, {}
for i = 1, tonumber(ARGV[at]) do
  local key = ARGV[at + i]
  if not seen[key] then seen[key] = true; order[#order + 1] = key end
end
at = at + tonumber(ARGV[at]) + 1
local tagged, tags = {}, {}
for i = 1, tonumber(ARGV[at]) do
  local tag = ARGV[at + i]
  if not tagged[tag] then tagged[tag] = true; tags[#tags + 1] = tag end
end
at = at + tonumber(ARGV[at]) + 1
"""
_LOOKUP = _ADMIT_BODY + """
local prefix = ARGV[1]
local arrival, first = admit(KEYS[1], KEYS[2], KEYS[3], ARGV[2], ARGV[3])
local ts = tonumber(ARGV[4])
local at = 5
local names = {}
for i = 1, tonumber(ARGV[at]) do names[i] = ARGV[at + i] end
at = at + #names + 1
""" + _DISTINCT + """local stale = {}
if ARGV[at] ~= '' then
  for k = 1, tonumber(ARGV[at + 1]) do
    stale[k] = redis.call('HGETALL', prefix .. '{g:' .. ARGV[at] .. '}:t:' .. ARGV[at + 1 + k])
  end
end
local links, events = {}, {}
local i = 1
while i <= #order and i <= %(limit)d do
  local key = order[i]
  local others = redis.call('SMEMBERS', prefix .. '{p:' .. key .. '}:l')
  local stamps = redis.call('HGETALL', prefix .. '{p:' .. key .. '}:la')
  local known = {}
  for j = 1, #stamps, 2 do known[stamps[j]] = tonumber(stamps[j + 1]) end
  for _, other in ipairs(others) do
    if not seen[other] and not (known[other] and known[other] >= arrival) then
      seen[other] = true; order[#order + 1] = other
    end
  end
  links[i] = {key, others, stamps}
  local stored = redis.call('HGETALL', prefix .. '{p:' .. key .. '}:e')
  events[i] = stored
  for j = 1, #stored, 2 do
    local head, when = string.match(stored[j], '^(.*),([^,]*),[^,]*$')
    if head and tonumber(when) and tonumber(when) <= ts and not tagged[head .. ']'] then
      tagged[head .. ']'] = true; tags[#tags + 1] = head .. ']'
    end
  end
  i = i + 1
end
local deletions, traits = {}, {}
for j, tag in ipairs(tags) do
  local group = prefix .. '{g:' .. tag .. '}:'
  deletions[j] = redis.call('SMEMBERS', group .. 'd')
  local histories = {}
  for k, name in ipairs(names) do histories[k] = redis.call('HGETALL', group .. 't:' .. name) end
  traits[j] = histories
end
return {arrival, links, events, tags, deletions, traits, stale, first}
""" % {"limit": _LINK_LIMIT}
# What `prefetch` reads for a chunk, in one call on a single Redis. KEYS: arrival counter, message id hash, time
# zset; ARGV: prefix, how many arrival numbers to reserve, the count of message ids and the ids, the count of
# start keys and the keys, the count of group tags and the tags, the count of trait names and the names.
# Returns {the last number reserved, per id its arrival record (number, time; false: none), per person key
# visited (every link followed, at most the limit) {key, linked keys, their arrivals hash, events hash}, per
# group tag (asked for and of every event) {tag, deletions, trait hash per name}}.
_PREFETCH = """
local prefix = ARGV[1]
local last = redis.call('INCRBY', KEYS[1], tonumber(ARGV[2]))
local at = 3
local count = tonumber(ARGV[at])
local records = {}
for i = 1, count do
  local id = ARGV[at + i]
  local seen = redis.call('HGET', KEYS[2], id)
  records[i] = {seen, seen and redis.call('ZSCORE', KEYS[3], id)}
end
at = at + count + 1
""" + _DISTINCT + """local names = {}
for i = 1, tonumber(ARGV[at]) do names[i] = ARGV[at + i] end
local persons = {}
local i = 1
while i <= #order and i <= %(limit)d do
  local key = order[i]
  local others = redis.call('SMEMBERS', prefix .. '{p:' .. key .. '}:l')
  for _, other in ipairs(others) do
    if not seen[other] then seen[other] = true; order[#order + 1] = other end
  end
  local stored = redis.call('HGETALL', prefix .. '{p:' .. key .. '}:e')
  for j = 1, #stored, 2 do
    local head = string.match(stored[j], '^(.*),[^,]*,[^,]*$')
    if head and not tagged[head .. ']'] then tagged[head .. ']'] = true; tags[#tags + 1] = head .. ']' end
  end
  persons[i] = {key, others, #others > 0 and redis.call('HGETALL', prefix .. '{p:' .. key .. '}:la') or {}, stored}
  i = i + 1
end
local groups = {}
for j, tag in ipairs(tags) do
  local group = prefix .. '{g:' .. tag .. '}:'
  local histories = {}
  for k, name in ipairs(names) do histories[k] = redis.call('HGETALL', group .. 't:' .. name) end
  groups[j] = {tag, redis.call('SMEMBERS', group .. 'd'), histories}
end
return {last, records, persons, groups}
""" % {"limit": _LINK_LIMIT}
# KEYS: keys of one slot; ARGV: one letter per key, "s" (a set: SMEMBERS) or "h" (a hash: HGETALL). Their
# contents, in one command (a cluster pipeline pays per command).
_READ_KEYS = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call(string.sub(ARGV[1], i, i) == 's' and 'SMEMBERS' or 'HGETALL', key)
end
return out
"""
# KEYS: counter, activity zset, dedupe hash; ARGV: message id, ts, "[message id, values]". Returns the seq.
_RECORD_ACTIVITY = """
local seen = redis.call('HGET', KEYS[3], ARGV[1])
if seen then return tonumber(seen) end
local seq = redis.call('INCR', KEYS[1])
redis.call('HSET', KEYS[3], ARGV[1], seq)
redis.call('ZADD', KEYS[2], ARGV[2], seq .. ' ' .. ARGV[3])
return seq
"""

# KEYS: due zset, seq hash; ARGV: group, due, seq. Keeps the earliest due and the highest seq.
_MARK_PENDING = """
redis.call('ZADD', KEYS[1], 'LT', ARGV[2], ARGV[1])
if tonumber(ARGV[3]) > tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
"""
# KEYS: due zset, seq hash; ARGV: group, seq sent. A newer pending entry stays.
_CLEAR_PENDING = """
if tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') <= tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
"""
# KEYS: message id hash, time zset; ARGV: horizon, batch. Removes up to `batch` arrival records older than the
# horizon; returns how many.
_PRUNE_ARRIVALS = """
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
if #old > 0 then
  redis.call('HDEL', KEYS[1], unpack(old))
  redis.call('ZREM', KEYS[2], unpack(old))
end
return #old
"""
# KEYS: activity zset, its dedupe hash; ARGV: horizon. Removes the entries older than it; returns how many.
_PRUNE_ACTIVITY = """
local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
for _, member in ipairs(old) do
  redis.call('HDEL', KEYS[2], cjson.decode(string.sub(member, string.find(member, ' ') + 1))[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return #old
"""
# KEYS: relationships hash; ARGV: person, ts, attributes. Keeps the latest by ts.
_RELATE = """
local kept = redis.call('HGET', KEYS[1], ARGV[1])
if not kept or tonumber(cjson.decode(kept)[1]) <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], '[' .. ARGV[2] .. ',' .. ARGV[3] .. ']')
end
"""
# KEYS: migrations hash, migration counter; ARGV: [type, old id], [new id, mode, at, keep_old]. 1 when new.
_MIGRATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], redis.call('INCR', KEYS[2]) .. ' ' .. ARGV[2])
return 1
"""
_SCRIPTS = {"admit": _ADMIT, "admit_reserved": _ADMIT_RESERVED, "read_keys": _READ_KEYS, "release": _RELEASE, "prefetch": _PREFETCH, "relate": _RELATE, "migrate": _MIGRATE, "link": _LINK, "apply_traits": _APPLY_TRAITS,
            "record_membership": _RECORD_MEMBERSHIP,
            "lookup": _LOOKUP, "record_activity": _RECORD_ACTIVITY, "mark_pending": _MARK_PENDING,
            "clear_pending": _CLEAR_PENDING, "prune_arrivals": _PRUNE_ARRIVALS, "prune_activity": _PRUNE_ACTIVITY}


def _unversioned(store: RedisStore) -> None:
    """Version 0 -> 1: the keyspace of groupspec 0.1.0 is version 1's (nothing to change)."""


def _migrations_layout(store: RedisStore) -> None:
    """Version 1 -> 2, group id migrations (issue 21): the keys ``{migrations}:m`` / ``:n`` and
    ``{g:[TYPE,ID]}:r``, and a trait value's fourth payload item (its writing source). Nothing to change in an
    older keyspace: absent migration keys are no migrations (counter 0), absent ``:r`` hashes no relationship
    attributes, and a trait payload of three items ``[ts, value, arrived]`` still reads (its source unknown)."""


def _privacy(store: RedisStore) -> None:
    """Version 2 -> 3 (erasure, issue 23): the store's own random hash key (``{privacy}:key``) made, every message
    id (all plain before version 3) re-keyed with it (`rekey`: arrival records, trait histories, activity logs), then ``{privacy}:
    message_keys`` set to ``keyed``. Self-contained: renumbering it is moving it."""
    from ..privacy import KeyedHash  # the hash the engine uses (privacy.py imports the stores)

    store.rekey_message_keys(KeyedHash(store.privacy_key()), every=True)  # under the migration lock: once


#: the keyspace's format: `migrations[n]` takes version n to n + 1 (a later format appends its function)
FORMAT: Format[RedisStore] = Format("store", [_unversioned, _migrations_layout, _privacy])
MIGRATION_LOCK_MS = 600_000  # how long a migrating process that died holds the others back, at most
# KEYS: the migration lock; ARGV: its holder's token. Released only by its holder.
_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Keys:
    """Key names of the layout above under one namespace prefix."""

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"Redis key prefix {prefix!r} must not contain braces (they are hash tags)")
        self.prefix = prefix

    def person(self, key: str, kind: str) -> str:
        return f"{self.prefix}{{p:{key}}}:{kind}"

    def group(self, object_type_id: str, group_id: str, kind: str) -> str:
        return self.tagged(group_tag(object_type_id, group_id), kind)

    def tagged(self, tag: str, kind: str) -> str:
        """A group's key from its `group_tag`."""
        return f"{self.prefix}{{g:{tag}}}:{kind}"

    def pending(self, kind: str) -> str:
        return f"{self.prefix}{{rollups}}:{kind}"

    def arrivals(self, kind: str) -> str:
        return f"{self.prefix}{{arrivals}}:{kind}"

    def migrations(self, kind: str) -> str:
        return f"{self.prefix}{{migrations}}:{kind}"

    def privacy(self, kind: str) -> str:
        return f"{self.prefix}{{privacy}}:{kind}"

    def format(self, kind: str) -> str:
        return f"{self.prefix}{{format}}:{kind}"


def group_tag(object_type_id: str, group_id: Any) -> str:
    """What names a group inside its hash tag: ``[TYPE,ID]`` as JSON."""
    return orjson.dumps([object_type_id, group_id]).decode()


def membership_field(object_type_id: str, group_id: str, ts: float, joined: bool) -> bytes:
    """The hash field of one membership event (identical events share it, so they are stored once)."""
    return orjson.dumps([object_type_id, group_id, float(ts), joined])


def stamped(head: Any, arrived: int | None) -> str:
    """``"head arrived"``, or just ``"head"`` for a fact always known."""
    return str(head) if arrived is None else f"{head} {arrived}"


def unstamped(stored: str) -> tuple[str, int | None]:
    """``(head, arrived)`` of a `stamped` value."""
    head, _, arrived = stored.partition(" ")
    return head, int(arrived) if arrived else None


def _events(stored: dict[str, str], ts: float) -> Iterator[tuple]:
    """The membership events (`history.Event`) of one person's events hash at or before `ts`."""
    for field, value in stored.items():
        type_id, group_id, at, joined = orjson.loads(field)
        if at <= ts:
            seq, arrived = unstamped(value)
            yield type_id, group_id, at, int(seq), joined, arrived


def _trait_entries(stored: dict[str, str]) -> list[tuple[float, int, str, Any, int | None]]:
    """``(ts, seq, message_id, value, arrived)`` of one trait-history hash."""
    entries = []
    for message_id, entry in stored.items():
        seq, _, payload = entry.partition(" ")
        at, value, *arrived = orjson.loads(payload)  # no `arrived`: written before it existed
        entries.append((at, int(seq), message_id, value, arrived[0] if arrived else None))
    return entries


def _stale_names(names: list[str], histories: list[list[tuple]], ts: float, message_id: str,
                 before: int | None) -> set[str]:
    """`stale_traits` from the trait histories (`_trait_entries`) of `names`."""
    return {name for name, entries in zip(names, histories)
            if stale_after(((at, seq, mid, arrived) for at, seq, mid, _, arrived in entries), ts, message_id, before)}


def _deletions(stored) -> list[tuple[float, int | None]]:
    """``(ts, arrived)`` of a group's deletions set."""
    return [(float(at), arrived) for at, arrived in map(unstamped, stored)]


def _latest(entries, ts: float, before: int | None) -> tuple | None:
    return latest_at(((at, seq, value, arrived) for at, seq, _, value, arrived in entries), ts, before)


def _first_time(stored: str | None) -> float | None:
    """The first arrival's event time an arrival record holds (None: none, or 0 from a record written without)."""
    return (float(stored) or None) if stored else None


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))


def split_prefix(url: str) -> tuple[str, str]:
    """(the URL without its `prefix` query parameter, the key prefix it names or ``gs``): several deployments
    (or tests) can share one Redis under their own namespaces, `redis://host:6379/0?prefix=acme:`."""
    if "?" not in url:
        return url, "gs"
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    rest = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefixes[-1] if prefixes else "gs"


def _client(url: str) -> tuple[redis.Redis | _LazyCluster, str]:
    """The redis-py client of a store URL, and where it points without any password (for messages). A cluster
    client discovers the masters on its first command, so opening never waits for a server."""
    if not url.startswith(CLUSTER_SCHEME):
        parts = urlsplit(url)
        where = f"redis://{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        try:
            return redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_timeout=5), where
        except ValueError as exc:
            raise StoreError(f"bad Redis store url {where}: {exc}") from None
    credentials, _, hosts = url.removeprefix(CLUSTER_SCHEME).rpartition("@")
    username, _, password = credentials.partition(":")
    where = CLUSTER_SCHEME + hosts
    nodes = []
    for hostport in hosts.split(","):
        host, _, port = hostport.strip().rpartition(":")
        if not host or not port.isdigit():
            raise StoreError(f"bad Redis Cluster store url {where}: expected {CLUSTER_SCHEME}host:port[,host:port]")
        nodes.append(ClusterNode(host, int(port)))
    return _LazyCluster(nodes, username=username or None, password=password or None), where


def _adjacent(others: set[str] | list[str], arrivals: dict[str, str]) -> list[tuple[str, int | None]]:
    """``(linked key, arrived)`` pairs of one person key, in key order (every store walks links alike)."""
    return [(other, int(arrivals[other]) if other in arrivals else None) for other in sorted(others)]


class _LazyCluster:
    """A `RedisCluster` made on first use (its constructor asks a node for the slot map): a cluster that is
    down makes commands fail with StoreError, not the opening of the store. Short timeouts and one retry, so
    an outage fails fast."""

    def __init__(self, nodes: list[ClusterNode], **auth: Any) -> None:
        self._nodes, self._auth, self._client = nodes, auth, None
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # the client's commands, pipeline, nodes, ...
        return getattr(self.client(), name)

    def client(self) -> RedisCluster:
        with self._lock:
            if self._client is None:
                self._client = RedisCluster(startup_nodes=self._nodes, decode_responses=True,
                                            socket_connect_timeout=1, socket_timeout=2,
                                            retry=Retry(NoBackoff(), 1), **self._auth)
            return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


class _Chunk:
    """What `prefetch` read for the messages of one transaction (of one thread), and what they took from it.

    `records`: message id -> its arrival record when read (``(number, first time)``), or None (new). A new one
    takes the next number of the chunk's reservation (`next`, up to `last`: one INCRBY) at its `lookup`, so the
    messages are numbered in the order they are looked up, as one at a time; its record goes out with the next
    writes (`admits`). `links` / `events`: per person key its adjacency and membership events hash; `deletions`
    per group ``(type, id)``; `traits` per ``((type, id), name)``. Each parsed (`_events`, `_deletions`,
    `_trait_entries`). A write drops what it changes (read again from the server
    when a later message needs it)."""

    def __init__(self) -> None:
        self.records: dict[str, tuple[int, float | None] | None] = {}
        self.taken: dict[str, tuple[int, float | None]] = {}
        self.next, self.last = 1, 0
        self.unnumbered = 0  # foreseen new messages not yet numbered
        self.release: tuple[int, int] | None = None  # (last reserved, last used) to give back with the next writes
        self.admits: list[Any] = []  # id, event time, number: of each message numbered, not yet written
        self.links: dict[str, list[tuple[str, int | None]]] = {}
        self.events: dict[str, list[tuple]] = {}
        self.deletions: dict[tuple[str, Any], list[tuple[float, int | None]]] = {}
        self.traits: dict[tuple[tuple[str, Any], str], list[tuple]] = {}
        self.names: list[str] = []  # the trait names read for every group

    def reserved(self, last: int, count: int, ids: list[str], records: list[tuple[Any, Any]]) -> None:
        """The reservation (`count` numbers up to `last`) and the arrival records (number, time: as read) of
        `ids`."""
        self.next, self.last = last - count + 1, last
        for message_id, (number, at) in zip(ids, records):
            self.records[message_id] = (int(number), _first_time(at)) if number else None
        self.unnumbered = sum(record is None and key not in self.taken for key, record in self.records.items())

    def spare(self) -> bool:
        """Whether a number is left for a message not foreseen, after every foreseen new one has its own."""
        return self.last - self.next + 1 > self.unnumbered

    def end(self) -> None:
        """No more answers from what was read: the server numbers every later message, after the reservation's
        unused rest is given back (`_RELEASE`)."""
        if self.next <= self.last:
            self.release = (self.last, self.next - 1)
        self.next, self.last, self.unnumbered = 1, 0, 0
        for held in (self.records, self.taken, self.links, self.events, self.deletions, self.traits, self.names):
            held.clear()

    def drop(self, kind: str, *entries: Any) -> None:
        held = getattr(self, kind)
        for entry in entries:
            held.pop(entry, None)


class RedisStore(Store):
    """Point-in-time membership, identity links, group trait history and activity in Redis (one server or a
    cluster)."""

    prefetches = True

    def __init__(self, url: str, prefix: str | None = None) -> None:
        """`prefix` (else the URL's `?prefix=`, else ``gs``) is the namespace of every key."""
        url, named = split_prefix(url)
        try:
            self.keys = Keys(prefix if prefix is not None else named)
        except ValueError as exc:
            raise StoreError(f"bad Redis store url: {exc}") from None
        self.cluster = url.startswith(CLUSTER_SCHEME)
        self._url = url
        self.redis, where = _client(url)  # on a cluster: made at its first command
        self.where = f"Redis store at {where}"  # no password: for messages
        self._sha = {name: hashlib.sha1(script.encode()).hexdigest() for name, script in _SCRIPTS.items()}
        self._local = threading.local()  # the writes queued by the current thread's `batch`
        self._format_checked = False
        try:
            with self._guard():
                pass  # the format is checked now if Redis answers
        except FormatError:
            raise
        except StoreError:
            pass  # not answering: checked at the first command
        forks.register(self)

    def after_fork(self, child: bool) -> None:
        """A child makes its own client (the parent's connections and locks are not its own)."""
        if child:
            self.redis, _ = _client(self._url)
            self._local = threading.local()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            if not self._format_checked:
                self._check_format()
            yield
        except (redis.RedisError, RedisClusterException) as exc:
            raise StoreError(f"{self.where} unavailable: {type(exc).__name__}: {exc}") from None

    def _check_format(self) -> None:
        """Bring the keyspace to `FORMAT.current` (no version key: written before versions, or empty), migrating
        under a lock key every process honours, the version written after each step; FormatError when newer."""
        client, version, lock = self.redis, self.keys.format("version"), self.keys.format("lock")
        while (found := int(client.get(version) or 0)) != FORMAT.current:
            FORMAT.refuse_newer(found, self.where)
            token = uuid.uuid4().hex
            if not client.set(lock, token, nx=True, px=MIGRATION_LOCK_MS):
                time.sleep(0.05)  # another process is migrating: wait for its version
                continue
            try:
                found = int(client.get(version) or 0)
                FORMAT.refuse_newer(found, self.where)
                self._format_checked = True  # a migration may use the store's own methods
                FORMAT.migrate(self, found, lambda done: client.set(version, done))
            except BaseException:
                self._format_checked = False
                raise
            finally:
                client.eval(_UNLOCK, 1, lock, token)
        self._format_checked = True

    def _send(self, commands: list[tuple]) -> list[Any]:
        """Run `commands` (``(NAME, *args)``: a redis-py method and its arguments) as one pipeline; on a cluster,
        one batch per master, all sent before any reply is read."""
        try:
            return self._pipeline(commands).execute()
        except NoScriptError:  # a server that does not know the scripts yet (new, restarted, flushed): every
            for script in _SCRIPTS.values():  # command here is idempotent, so the batch is sent again whole
                self.redis.script_load(script)
            return self._pipeline(commands).execute()

    def _pipeline(self, commands: list[tuple]) -> Any:
        client = self.redis
        pipe = client.pipeline(transaction=False)
        for name, *args in commands:
            if name != "EVALSHA":
                getattr(pipe, name.lower())(*args)
            elif self.cluster:  # a cluster pipeline has no `evalsha`, and would ask a server for the script's keys
                pipe.execute_command(name, *args, target_nodes=client.get_node_from_key(args[2]))
            else:
                pipe.execute_command(name, *args)
        return pipe

    def _script(self, name: str, keys: list[str], args: list[Any]) -> tuple:
        return ("EVALSHA", self._sha[name], len(keys), *keys, *args)

    def _read(self, commands: list[tuple]) -> list[Any]:
        """Send `commands` after the writes this thread has queued (so a read sees them), in the same pipeline."""
        with self._guard():
            pending = self._pending()
            return self._send(pending + commands)[len(pending):]

    def _write(self, *commands: tuple) -> None:
        """Queue writes while a `batch` is open; send them now otherwise."""
        queue = getattr(self._local, "queue", None)
        if queue is not None:
            queue.extend(commands)
        else:
            with self._guard():
                self._send(list(commands))

    def _flush(self) -> None:
        """Send what this thread has pending, if anything (nothing to send: nothing asked of Redis)."""
        if commands := self._pending():
            with self._guard():
                self._send(commands)

    def _pending(self) -> list[tuple]:
        """What this thread has to send before anything else (taken off its queues): the arrival records of the
        messages numbered from a `prefetch` and a reservation's unused rest, then the queued writes."""
        chunk, queue = getattr(self._local, "chunk", None), getattr(self._local, "queue", None)
        commands = []
        if chunk is not None and chunk.admits:
            commands = [self._script("admit_reserved", self._arrival_keys()[1:], chunk.admits)]
            chunk.admits = []
        if chunk is not None and chunk.release:
            commands.append(self._script("release", self._arrival_keys()[:1], list(chunk.release)))
            chunk.release = None
        if queue:
            commands += queue
            queue.clear()
        return commands

    def _chunk(self) -> _Chunk | None:
        return getattr(self._local, "chunk", None)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The writes made inside go out together, as one pipeline, at the end (a read inside sends them
        first). Nothing is sent if the block raises."""
        if getattr(self._local, "queue", None) is not None:
            yield
            return
        self._local.queue = []
        try:
            yield
            if self._local.queue:  # a prefetched chunk's arrival records ride along, never alone
                self._flush()
        finally:
            self._local.queue = None

    def link(self, key: str, other: str, arrived: int | None = None) -> None:
        # two idempotent one-slot writes (the persons may live on different cluster slots)
        if key == other:
            return
        stamp = "" if arrived is None else arrived
        if (chunk := self._chunk()) is not None:
            chunk.drop("links", key, other)
        self._write(*(self._script("link", [self.keys.person(one, kind) for kind in ("l", "la")], [two, stamp])
                      for one, two in ((key, other), (other, key))))

    def _links(self, key: str) -> list[tuple[str, int | None]]:
        others, arrivals = self._read([("SMEMBERS", self.keys.person(key, "l")), ("HGETALL", self.keys.person(key, "la"))])
        return _adjacent(others, arrivals)

    def identities(self, key: str, before: int | None = None) -> list[str]:
        return linked(key, self._links, before)

    def _arrival_keys(self) -> list[str]:
        return [self.keys.arrivals(kind) for kind in ("n", "ids", "t")]

    def admit(self, message_id: str, ts: float = 0.0) -> int:
        return self.arrive(message_id, ts)[0]

    def arrive(self, message_id: str, ts: float = 0.0, timeless: bool = False) -> tuple[int, float | None]:
        if (chunk := self._chunk()) is not None:
            chunk.end()  # numbered by the server: after every reserved number
        (arrived, first), = self._read([self._script("admit", self._arrival_keys(), [message_id, repr(float(ts))])])
        return int(arrived), _first_time(first)

    def lookup(self, message_id: str, persons: list[str], ts: float, names: list[str] = (),
               group: tuple[str, Any] | None = None, event_ts: float | None = None,
               stale_group: tuple[str, Any] | None = None, stale_names: list[str] = (),
               timeless: bool = False) -> Lookup:
        names, stale_names = list(names), list(stale_names)
        event_ts = float(ts if event_ts is None else event_ts)
        chunk = self._chunk()
        got = None if chunk is None or not chunk.records else self._prefetched(
            chunk, message_id, event_ts, persons, ts, names, group if names else None, stale_group, stale_names)
        if got is None:
            tags = [group_tag(*group)] if group is not None and names else []
            stale_tag = "" if stale_group is None else group_tag(*stale_group)
            read = self._read_in_rounds if self.cluster else self._read_in_one_script
            got = read(message_id, event_ts, persons, ts, names, tags, stale_tag, stale_names)
        arrival, adjacency, events, groups, stale, first = got
        found = self._assemble(arrival, persons, adjacency, events, groups, ts, names)._replace(first_ts=first)
        if stale_group is None:
            return found
        return found._replace(stale=_stale_names(stale_names, stale, event_ts, message_id, arrival))

    def prefetch(self, message_ids: list[str], persons: list[str], groups: list[tuple[str, Any]],
                 names: list[str]) -> None:
        """Inside `transaction()`: reserve arrival numbers for the new ones of `message_ids` and read their arrival
        records, the links and membership events of `persons` and of every key linked to them, and the deletions
        and trait histories (`names`) of `groups` and of every group in those events: pipelined rounds (two for
        persons without links), one more per link hop. `lookup` then answers these messages from it
        (`_prefetched`)."""
        chunk = self._chunk()
        if chunk is None or not message_ids:
            return
        chunk.end()  # a reservation is used in order: the previous one's rest is given up
        ids, names = list(dict.fromkeys(message_ids)), list(dict.fromkeys(names))
        chunk.names = names
        starts, groups = list(dict.fromkeys(persons)), list(dict.fromkeys(groups))
        if self.cluster:
            self._prefetch_in_rounds(chunk, ids, starts, groups)
            return
        tags = [group_tag(*group) for group in groups]
        args = [self.keys.prefix, len(ids) + _SPARE, len(ids), *ids, len(starts), *starts, len(tags), *tags,
                len(names), *names]
        (last, records, found, read), = self._read([self._script("prefetch", self._arrival_keys(), args)])
        chunk.reserved(int(last), len(ids) + _SPARE, ids, [(number, at) for number, at in records])
        for key, others, arrivals, events in found:
            chunk.links[key] = _adjacent(others, _pairs(arrivals))
            chunk.events[key] = list(_events(_pairs(events), float("inf")))
        for tag, deletions, histories in read:
            group = tuple(orjson.loads(tag))
            chunk.deletions[group] = _deletions(deletions)
            for name, history in zip(names, histories):
                chunk.traits[group, name] = _trait_entries(_pairs(history))

    def _prefetch_in_rounds(self, chunk: _Chunk, ids: list[str], starts: list[str],
                            groups: list[tuple[str, Any]]) -> None:
        """`prefetch` on a cluster: pipelined rounds (the arrival records and the persons asked, then the groups
        of their events and the keys linked to them, ...)."""
        counter, records, times = self._arrival_keys()
        head = [("INCRBY", counter, len(ids) + _SPARE), ("HMGET", records, *ids), ("ZMSCORE", times, ids)]
        reserved, numbers, first = self._read_into(chunk, starts[:_LINK_LIMIT], groups, head)
        chunk.reserved(int(reserved), len(ids) + _SPARE, ids, list(zip(numbers, first)))
        new_keys = starts[:_LINK_LIMIT]
        while new_keys:
            found = dict.fromkeys(event[:2] for key in new_keys for event in chunk.events[key])
            linked_keys = dict.fromkeys(other for key in new_keys for other, _ in chunk.links[key])
            new_keys = [key for key in linked_keys if key not in chunk.links][:max(0, _LINK_LIMIT - len(chunk.links))]
            new_groups = [group for group in found if group not in chunk.deletions]
            if new_keys or new_groups:
                self._read_into(chunk, new_keys, new_groups)

    def _read_into(self, chunk: _Chunk, keys: list[str], groups: list[tuple[str, Any]], head: list[tuple] = ()) -> list:
        """Read the links and membership events of person `keys` and the deletions and trait histories (every
        name the chunk asks) of `groups` into `chunk`, in one pipeline after `head` (whose answers it returns)."""
        names, person, of_group = chunk.names, self.keys.person, self.keys.group
        commands = [*head, *(self._script("read_keys", [person(key, "l"), person(key, "la"), person(key, "e")],
                                          ["shh"]) for key in keys)]
        commands += [self._script("read_keys", [of_group(*group, "d"), *(of_group(*group, "t:" + name) for name in names)],
                                  ["s" + "h" * len(names)]) for group in groups]
        answers = self._read(commands)
        for key, (others, arrivals, events) in zip(keys, answers[len(head):]):
            chunk.links[key] = _adjacent(others, _pairs(arrivals))
            chunk.events[key] = list(_events(_pairs(events), float("inf")))
        for group, (deleted, *histories) in zip(groups, answers[len(head) + len(keys):]):
            chunk.deletions[group] = _deletions(deleted)
            for name, history in zip(names, histories):
                chunk.traits[group, name] = _trait_entries(_pairs(history))
        return answers[:len(head)]

    def _prefetched(self, chunk: _Chunk, message_id: str, event_ts: float, persons: list[str], ts: float,
                    names: list[str], group: tuple[str, Any] | None, stale_group: tuple[str, Any] | None,
                    stale_names: list[str]) -> tuple | None:
        """What `lookup` reads (as `_read_in_one_script`), from what `prefetch` read; what that lacks (not
        foreseen, or dropped by a write) is read into it first, one round trip per link hop. None for a message
        not foreseen once the reservation has no spare number: the server numbers it, after the reservation, which
        ends (a message not foreseen before that has its arrival record read first, one round trip)."""
        numbered = chunk.taken.get(message_id)
        if numbered is None:
            if message_id not in chunk.records:
                if not chunk.spare():
                    chunk.end()
                    return None
                _, records, times = self._arrival_keys()
                chunk.reserved(chunk.last, chunk.last - chunk.next + 1, [message_id],
                               [self._read([("HGET", records, message_id), ("ZSCORE", times, message_id)])])
            numbered = chunk.records[message_id]
            if numbered is None:  # new: the next reserved number, its record written with the next writes
                numbered = (chunk.next, _first_time(repr(event_ts)))
                chunk.admits += (message_id, repr(event_ts), chunk.next)
                chunk.next += 1
                chunk.unnumbered -= 1
            chunk.taken[message_id] = numbered
        arrival, first = numbered
        asked = [name for name in dict.fromkeys([*names, *stale_names]) if name not in chunk.names]
        chunk.names += asked  # names no prefetch asked for: every group read from now on has them too
        for _ in range(_LINK_LIMIT):
            absent: list[str] = []

            def neighbours(key: str) -> list[tuple[str, int | None]]:
                if key in chunk.links:
                    return chunk.links[key]
                absent.append(key)
                return []

            walked: list[str] = []
            for start in persons:  # most persons have no links: no walk
                walk = [start] if chunk.links.get(start) == [] else linked(start, neighbours, arrival)
                walked += [key for key in walk if key not in walked]
            absent += [key for key in walked if key not in chunk.events]
            found = [group] if group is not None else []
            found += [event[:2] for key in walked if key in chunk.events for event in chunk.events[key] if event[2] <= ts]
            if stale_group is not None:
                found.append(stale_group)
            missing = [one for one in dict.fromkeys(found) if one not in chunk.deletions
                       or any((one, name) not in chunk.traits for name in chunk.names)]
            if not absent and not missing:
                break
            self._read_into(chunk, list(dict.fromkeys(absent)), missing)
        else:
            return None
        events = {key: chunk.events[key] for key in walked}
        tagged = [group] if group is not None else []
        tagged += [event[:2] for key in walked for event in events[key] if event[2] <= ts]
        groups = {one: (chunk.deletions[one], [chunk.traits[one, name] for name in names])
                  for one in dict.fromkeys(tagged)}
        stale = [chunk.traits[stale_group, name] for name in stale_names] if stale_group is not None else []
        return arrival, {key: chunk.links[key] for key in walked}, events, groups, stale, first

    def _read_in_one_script(self, message_id: str, event_ts: float, persons: list[str], ts: float, names: list[str],
                            tags: list[str], stale_tag: str, stale_names: list[str]) -> tuple:
        """What `lookup` reads, on a single Redis: one script. ``(arrival, adjacency, events hash per key,
        per group tag its deletions and trait hashes, the trait hashes of `stale_names` of `stale_tag`, the first
        arrival's event time)``."""
        args = [self.keys.prefix, message_id, repr(event_ts), repr(float(ts)), len(names), *names, len(persons), *persons,
                len(tags), *tags, stale_tag, len(stale_names), *stale_names]
        (arrival, links, events, tags, deletions, traits, stale, first), = self._read(
            [self._script("lookup", self._arrival_keys(), args)])
        adjacency = {key: _adjacent(others, _pairs(stamps)) for key, others, stamps in links}
        stored = {key: list(_events(_pairs(flat), ts)) for (key, *_), flat in zip(links, events)}
        groups = {tuple(orjson.loads(tag)): (_deletions(deletion), [_trait_entries(_pairs(flat)) for flat in histories])
                  for tag, deletion, histories in zip(tags, deletions, traits)}
        stale = [_trait_entries(_pairs(flat)) for flat in stale]
        return int(arrival), adjacency, stored, groups, stale, _first_time(first)

    def _read_in_rounds(self, message_id: str, event_ts: float, persons: list[str], ts: float, names: list[str],
                        tags: list[str], stale_tag: str, stale_names: list[str]) -> tuple:
        """What `lookup` reads, on a cluster (as `_read_in_one_script`): pipelined rounds, the first asking for the
        arrival number and the stale-asked trait histories, each the links and events of the person keys newly
        found and the deletions and traits of the groups newly found."""
        keys = self.keys
        arrival = first_ts = None
        adjacency: dict[str, list[tuple[str, int | None]]] = {}
        stored: dict[str, dict[str, str]] = {}
        groups: dict[str, tuple[list[str], list[dict[str, str]]]] = {}
        stale: list[dict[str, str]] = []
        asked = list(dict.fromkeys(persons))
        new_keys, new_tags = asked[:], list(dict.fromkeys(tags))
        first = True
        while first or new_keys or new_tags:
            commands = []
            if first:
                commands.append(self._script("admit", self._arrival_keys(), [message_id, repr(event_ts)]))
                if stale_tag:
                    commands += [("HGETALL", keys.tagged(stale_tag, "t:" + name)) for name in stale_names]
            for key in new_keys:
                commands += [("SMEMBERS", keys.person(key, "l")), ("HGETALL", keys.person(key, "la")),
                             ("HGETALL", keys.person(key, "e"))]
            for tag in new_tags:
                commands += [("SMEMBERS", keys.tagged(tag, "d")), *(("HGETALL", keys.tagged(tag, "t:" + name)) for name in names)]
            answers = iter(self._read(commands))
            if first:
                (arrival, first_ts), first = next(answers), False
                arrival, first_ts = int(arrival), _first_time(first_ts)
                if stale_tag:
                    stale = [next(answers) for _ in stale_names]
            for key in new_keys:
                others, arrivals, stored[key] = next(answers), next(answers), next(answers)
                adjacency[key] = _adjacent(others, arrivals)
            for tag in new_tags:
                groups[tag] = (next(answers), [next(answers) for _ in names])
            found = [other for key in new_keys for other, at in adjacency[key] if at is None or at < arrival]
            new_keys = [k for k in dict.fromkeys(found) if k not in adjacency][:max(0, _LINK_LIMIT - len(adjacency))]
            new_tags = list(dict.fromkeys(
                group_tag(type_id, group_id) for key in stored for type_id, group_id, *_ in _events(stored[key], ts)))
            new_tags = [tag for tag in new_tags if tag not in groups]
        groups = {tuple(orjson.loads(tag)): (_deletions(deleted), [_trait_entries(one) for one in histories])
                  for tag, (deleted, histories) in groups.items()}
        events = {key: list(_events(one, ts)) for key, one in stored.items()}
        return arrival, adjacency, events, groups, [_trait_entries(one) for one in stale], first_ts

    def _assemble(self, arrival: int, starts: list[str], adjacency: dict[str, list[tuple[str, int | None]]],
                  stored: dict[str, list[tuple]], groups: dict[tuple[str, Any], tuple[list, list[list[tuple]]]],
                  ts: float, names: list[str]) -> Lookup:
        """The `Lookup` from what the server sent (or `prefetch` read): linked keys, their membership events
        (`_events`), and per group its deletions (`_deletions`) and trait histories (`_trait_entries`)."""
        persons: list[str] = []
        for start in starts:  # most persons have no links: no walk
            walk = linked(start, lambda k: adjacency.get(k, ()), arrival) if adjacency.get(start) else [start]
            persons += [k for k in walk if k not in persons]
        events = [event for person in persons for event in stored.get(person, ()) if event[2] <= ts]
        deletions, traits = {}, {}
        for group, (deleted, histories) in groups.items():
            if deleted:
                deletions[group] = deleted
            if names:
                found = {name: _latest(history, ts, arrival) for name, history in zip(names, histories)}
                traits[group] = {name: best[2] for name, best in found.items() if best is not None}
        memberships = fold_memberships(events, deletions, ts, arrival) if events else []
        return Lookup(arrival, persons, memberships, traits)

    def record_membership(self, person: str, object_type_id: str, group_id: str, ts: float, joined: bool,
                          arrived: int | None = None) -> None:
        counter, events = self.keys.group(object_type_id, group_id, "n"), self.keys.person(person, "e")
        field = membership_field(object_type_id, group_id, ts, joined)
        if (chunk := self._chunk()) is not None:
            chunk.drop("events", person)
        if not self.cluster:  # one script reaches both slots
            self._write(self._script("record_membership", [counter, events], [field, "" if arrived is None else arrived]))
            return
        seq, = self._read([("INCR", counter)])  # the group's slot first, then the person's
        self._write(("HSETNX", events, field, stamped(seq, arrived)))

    def record_object_deleted(self, object_type_id: str, group_id: str, ts: float, arrived: int | None = None) -> None:
        if (chunk := self._chunk()) is not None:
            chunk.drop("deletions", (object_type_id, group_id))
        self._write(("SADD", self.keys.group(object_type_id, group_id, "d"), stamped(repr(float(ts)), arrived)))

    def memberships_at(self, persons: list[str], ts: float, before: int | None = None) -> list[Membership]:
        stored = self._read([("HGETALL", self.keys.person(person, "e")) for person in persons])
        events = [event for one in stored for event in _events(one, ts)]
        if not events:
            return []
        groups = sorted({(type_id, group_id) for type_id, group_id, *_ in events})
        found = self._read([("SMEMBERS", self.keys.group(type_id, group_id, "d")) for type_id, group_id in groups])
        deletions = {group: [(float(at), arrived) for at, arrived in map(unstamped, deleted)]
                     for group, deleted in zip(groups, found) if deleted}
        return fold_memberships(events, deletions, ts, before)

    def _trait_histories(self, object_type_id: str, group_id: str,
                         names: list[str]) -> list[list[tuple[float, int, str, Any, int | None]]]:
        """Per name: ``(ts, seq, message_id, value, arrived)`` entries."""
        stored = self._read([("HGETALL", self.keys.group(object_type_id, group_id, "t:" + name)) for name in names])
        return [_trait_entries(one) for one in stored]

    def stale_traits(self, object_type_id: str, group_id: str, names: list[str], ts: float, message_id: str,
                     before: int | None = None) -> set[str]:
        return _stale_names(names, self._trait_histories(object_type_id, group_id, names), ts, message_id, before)

    def apply_traits(self, object_type_id: str, group_id: str, traits: dict[str, Any], ts: float, message_id: str,
                     arrived: int | None = None, source: str | None = None) -> None:
        if not traits:
            return
        if (chunk := self._chunk()) is not None:
            chunk.drop("traits", *(((object_type_id, group_id), name) for name in traits))
        keys = [self.keys.group(object_type_id, group_id, "n")]
        keys += [self.keys.group(object_type_id, group_id, "t:" + name) for name in traits]
        args = [message_id, *(orjson.dumps([float(ts), value, arrived, source]) for value in traits.values())]
        self._write(self._script("apply_traits", keys, args))

    def trait_history(self, object_type_id: str, group_id: str, name: str) -> list[TraitEntry]:
        stored, = self._read([("HGETALL", self.keys.group(object_type_id, group_id, "t:" + name))])
        entries = []
        for message_id, entry in stored.items():
            seq, _, payload = entry.partition(" ")
            at, value, *rest = orjson.loads(payload)
            rest += [None, None]
            entries.append(TraitEntry(at, int(seq), message_id, value, rest[0], rest[1]))
        return sorted(entries, key=lambda e: e.seq)

    def record_relationship(self, person: str, object_type_id: str, group_id: str, attributes: dict[str, Any],
                            ts: float) -> None:
        self._write(self._script("relate", [self.keys.group(object_type_id, group_id, "r")],
                                 [person, repr(float(ts)), orjson.dumps(attributes)]))

    def relationship_attributes(self, object_type_id: str, group_id: str) -> dict[str, dict[str, Any]]:
        stored, = self._read([("HGETALL", self.keys.group(object_type_id, group_id, "r"))])
        return {person: orjson.loads(kept)[1] for person, kept in sorted(stored.items())}

    def record_migration(self, migration: Migration) -> bool:
        keys = [self.keys.migrations("m"), self.keys.migrations("n")]
        args = [orjson.dumps(migration[:2]), orjson.dumps(list(migration[2:]))]
        new, = self._read([self._script("migrate", keys, args)])
        return bool(int(new))

    def migrations(self) -> list[Migration]:
        stored, = self._read([("HGETALL", self.keys.migrations("m"))])
        rows = []
        for field, value in stored.items():
            seq, _, payload = value.partition(" ")
            new_id, mode, at, keep_old, arrived = orjson.loads(payload)
            rows.append((int(seq), Migration(*orjson.loads(field), new_id, mode, float(at), bool(keep_old), arrived)))
        return [migration for _, migration in sorted(rows)]

    def migration_count(self) -> int:
        count, = self._read([("GET", self.keys.migrations("n"))])
        return int(count or 0)

    def membership_events(self, persons: list[str]) -> list[Event]:
        stored = self._read([("HGETALL", self.keys.person(person, "e")) for person in persons])
        return [event for one in stored for event in _events(one, float("inf"))]

    def deletions(self, groups: list[tuple[str, str]]) -> dict[tuple[str, str], list[Deletion]]:
        found = self._read([("SMEMBERS", self.keys.group(type_id, group_id, "d")) for type_id, group_id in groups])
        return {group: [(float(at), arrived) for at, arrived in map(unstamped, deleted)]
                for group, deleted in zip(groups, found) if deleted}

    def traits_at(self, object_type_id: str, group_id: str, names: list[str], ts: float,
                  before: int | None = None) -> dict[str, Any]:
        out = {}
        for name, entries in zip(names, self._trait_histories(object_type_id, group_id, names)):
            best = _latest(entries, ts, before)
            if best is not None:
                out[name] = best[2]
        return out

    def record_activity(self, object_type_id: str, group_id: str, message_id: str, ts: float, values: dict[str, Any]) -> int:
        keys = [self.keys.group(object_type_id, group_id, kind) for kind in ("n", "a", "ad")]
        seq, = self._read([self._script("record_activity", keys,
                                        [message_id, repr(float(ts)), orjson.dumps([message_id, values])])])
        return int(seq)

    def activity_since(self, object_type_id: str, group_id: str, since: float) -> list[Activity]:
        stored, = self._read([("ZRANGEBYSCORE", self.keys.group(object_type_id, group_id, "a"), since, "+inf",
                               None, None, True)])  # with scores
        out = []
        for member, at in stored:
            seq, _, entry = member.partition(" ")
            message_id, values = orjson.loads(entry)
            out.append(Activity(float(at), int(seq), message_id, values))
        out.sort()
        return out

    def mark_rollup_pending(self, object_type_id: str, group_id: str, due: float, seq: int) -> None:
        keys = [self.keys.pending("due"), self.keys.pending("seq")]
        self._write(self._script("mark_pending", keys, [orjson.dumps([object_type_id, group_id]), repr(float(due)), seq]))

    def clear_rollup_pending(self, object_type_id: str, group_id: str, seq: int) -> None:
        keys = [self.keys.pending("due"), self.keys.pending("seq")]
        self._write(self._script("clear_pending", keys, [orjson.dumps([object_type_id, group_id]), seq]))

    def due_rollups(self, until: float) -> list[tuple[str, str, float, int]]:
        due, = self._read([("ZRANGEBYSCORE", self.keys.pending("due"), "-inf", until, None, None, True)])
        seqs = self._read([("HMGET", self.keys.pending("seq"), *(member for member, _ in due))])[0] if due else []
        out = [(*orjson.loads(member), float(at), int(seq)) for (member, at), seq in zip(due, seqs) if seq is not None]
        out.sort(key=lambda row: (row[2], row[0], row[1]))
        return out

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Where `prefetch` keeps what it read for the chunk's lookups; at the end, the arrival records of the
        messages numbered from it (if not sent with earlier writes) and the reservation's unused rest go out."""
        if getattr(self._local, "chunk", None) is not None:
            yield
            return
        self._local.chunk = chunk = _Chunk()
        try:
            yield
        except BaseException:
            chunk.end()
            try:
                self._flush()
            except StoreError:
                pass  # the chunk's own error is the one to see
            raise
        else:
            chunk.end()
            self._flush()
        finally:
            self._local.chunk = None

    def close(self) -> None:
        self.redis.close()

    # -- privacy: the store's hash key, re-keying, erasure, the suppression list ---------------------------------

    def privacy_key(self) -> bytes:
        key = self.keys.privacy("key")
        with self._guard():
            self.redis.set(key, os.urandom(32).hex(), nx=True)  # the first process's stays
            stored, = self._send([("GET", key)])
        return bytes.fromhex(stored)

    def rekey_message_keys(self, hash_key, every: bool = False) -> int:
        marker = self.keys.privacy("message_keys")
        if (chunk := self._chunk()) is not None:
            chunk.end()  # message ids change
        with self._guard():
            if self.redis.exists(marker):
                return 0
            count = rekey(self, hash_key, every)  # without `every`, idempotent: a racing process changes what is left
            self.redis.set(marker, "keyed")
        return count

    def forget(self, keys: list[str], dry_run: bool = False) -> dict[str, int]:
        if (chunk := self._chunk()) is not None and not dry_run:
            chunk.end()  # links and events go; the server numbers what follows
        person = self.keys.person
        found = self._read([command for key in keys for command in (("SMEMBERS", person(key, "l")),
                                                                    ("HKEYS", person(key, "e")))])
        linked = dict(zip(keys, found[::2]))
        pairs = {frozenset((key, other)) for key, others in linked.items() for other in others}
        groups = {key: {tuple(orjson.loads(field)[:2]) for field in fields} for key, fields in zip(keys, found[1::2])}
        removed = {"links": len(pairs), "memberships": sum(map(len, found[1::2]))}
        if dry_run:
            return removed
        doomed = set(keys)
        commands = [("DELETE", person(key, kind)) for key in keys for kind in ("l", "la", "lt", "e")]
        for key, of in groups.items():  # relationship attributes are kept only for a group the person was in
            commands += [("HDEL", self.keys.group(type_id, group_id, "r"), key) for type_id, group_id in of]
        for key, others in linked.items():  # the other side of each link (another slot, maybe another master)
            for other in set(others) - doomed:
                commands += [("SREM", person(other, "l"), key), ("HDEL", person(other, "la"), key),
                             ("HDEL", person(other, "lt"), key)]
        self._write(*commands)
        return removed

    def suppress(self, hashes: list[str]) -> None:
        if hashes:
            self._write(("SADD", self.keys.privacy("forgotten"), *hashes))

    def suppressed(self, hashes: list[str]) -> bool:
        found, = self._read([("SMISMEMBER", self.keys.privacy("forgotten"), *hashes)])
        return any(found)

    def scrub(self) -> bool:
        return True  # a deleted key is gone from Redis; its AOF/RDB files are Redis's own (docs/privacy.md)

    # -- read-only enumeration for tools (`groupspec verify`): SCAN over the layout above, no writes ----------

    def groups(self) -> list[tuple[str, str]]:
        start = len(self.keys.prefix) + len("{g:")
        with self._guard():
            found = {_group_of(key, start) for key in self._scan("*", "g")}
        found.discard(None)
        return sorted(found)

    def members_at(self, object_type_id: str, group_id: str, ts: float) -> list[str]:
        group = (object_type_id, group_id)
        with self._guard():
            deleted = self.redis.smembers(self.keys.group(object_type_id, group_id, "d"))
        deletions = {group: [(float(at), arrived) for at, arrived in map(unstamped, deleted)]}
        return [person for person, events in self._group_events(group).items()
                if fold_memberships(events, deletions, ts)]

    def persons_seen(self, object_type_id: str, group_id: str) -> list[str]:
        return list(self._group_events((object_type_id, group_id)))

    def _group_events(self, group: tuple[str, str]) -> dict[str, list]:
        """Person key -> its membership events of `group`, for the persons that have some, in key order (a SCAN
        of every person's events: for tools)."""
        start = len(self.keys.prefix) + len("{p:")
        with self._guard():
            keys = sorted(self._scan("e", "p"))
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            stored = pipe.execute()
        found = {}
        for key, fields in zip(keys, stored):
            events = []
            for field, value in fields.items():
                type_id, gid, at, joined = orjson.loads(field)
                if (type_id, gid) == group:
                    seq, arrived = unstamped(value)
                    events.append((type_id, gid, at, int(seq), joined, arrived))
            if events:
                found[key[start:-len("}:e")]] = events
        return found

    def linked_to(self, key: str) -> list[str]:
        return sorted(self._read([("SMEMBERS", self.keys.person(key, "l"))])[0])

    def trait_names(self, object_type_id: str, group_id: str) -> list[str]:
        head = self.keys.group(object_type_id, group_id, "t:")
        with self._guard():
            return sorted(key[len(head):] for key in self.redis.scan_iter(match=_glob(head) + "*", count=1000))

    def deleted_at(self, object_type_id: str, group_id: str) -> float | None:
        with self._guard():
            stored = self.redis.smembers(self.keys.group(object_type_id, group_id, "d"))
        return max((float(unstamped(entry)[0]) for entry in stored), default=None)

    # retention: `compact` and `size` walk the keys of each kind with SCAN (every node of a cluster); each
    # removal is one key's (one slot's) and re-checks the time, so writers may go on meanwhile.

    def _scan(self, kind: str, tag: str) -> Iterator[str]:
        """Every key ``PREFIX{TAG:...}:KIND`` (`kind` may end with ``*``)."""
        return self.redis.scan_iter(match=f"{_glob(self.keys.prefix)}{{{tag}:*}}:{kind}", count=1000)

    def compact(self, horizon: float) -> dict[str, int]:
        removed = dict.fromkeys(("arrivals", "memberships", "deletions", "traits", "activity"), 0)
        if (chunk := self._chunk()) is not None:
            chunk.end()  # what was read may be removed now
        h = repr(float(horizon))
        with self._guard():
            ids, times = self.keys.arrivals("ids"), self.keys.arrivals("t")
            while (batch := int(self._send([self._script("prune_arrivals", [ids, times], [h, 1000])])[0])) > 0:
                removed["arrivals"] += batch
            for key in self._scan("e", "p"):
                old = {}
                for field, value in self.redis.hgetall(key).items():
                    type_id, group_id, at, _ = orjson.loads(field)
                    old.setdefault((type_id, group_id), []).append((at, int(unstamped(value)[0]), field))
                removed["memberships"] += self._drop(key, old, horizon, self.redis.hdel)
            for key in self._scan("d", "g"):
                old = {None: [(float(at), 0, stored) for stored in self.redis.smembers(key)
                              for at in [unstamped(stored)[0]]]}
                removed["deletions"] += self._drop(key, old, horizon, self.redis.srem)
            for key in self._scan("t:*", "g"):
                old = {None: [(orjson.loads(entry.partition(" ")[2])[0], int(entry.partition(" ")[0]), message_id)
                              for message_id, entry in self.redis.hgetall(key).items()]}
                removed["traits"] += self._drop(key, old, horizon, self.redis.hdel)
            for key in self._scan("a", "g"):
                removed["activity"] += int(self._send([self._script("prune_activity", [key, key + "d"], [h])])[0])
        return removed

    @staticmethod
    def _drop(key: str, histories: dict[Any, list[tuple[float, int, str]]], horizon: float, remove) -> int:
        """Remove the ``(ts, seq, member)`` entries of each history older than its latest before `horizon`."""
        doomed = []
        for entries in histories.values():
            old = sorted(entry for entry in entries if entry[0] < horizon)
            doomed += [member for _, _, member in old[:-1]]
        if doomed:
            remove(key, *doomed)
        return len(doomed)

    def size(self) -> dict[str, int]:
        with self._guard():
            out = {"arrivals": self.redis.hlen(self.keys.arrivals("ids")),
                   "pending": self.redis.zcard(self.keys.pending("due"))}
            for kind, (suffix, tag, count) in {"links": ("l", "p", "scard"), "memberships": ("e", "p", "hlen"),
                                               "deletions": ("d", "g", "scard"), "traits": ("t:*", "g", "hlen"),
                                               "activity": ("a", "g", "zcard")}.items():
                out[kind] = sum(getattr(self.redis, count)(key) for key in self._scan(suffix, tag))
            out["links"] //= 2
        return out


def rekey(store: RedisStore, hash_key, every: bool = False) -> int:
    """Replace every plain message id (written before ids were hashed: they contain U+001F; `every`: every id that
    is not a keyed hash already, as in a keyspace of format version 1) by `hash_key` of it: the arrival records, the
    trait histories and the activity logs, one key (one slot) at a time, each rewrite atomic (MULTI on that key);
    the ids changed. Idempotent, so a migration cut short runs again safely. The version 2 migration calls it."""
    plain = _not_hashed if every else (lambda message_id: "\x1f" in message_id)
    count = 0
    ids, times = store.keys.arrivals("ids"), store.keys.arrivals("t")
    changes = [(key, [(f, hash_key(f), v) for f, v in store.redis.hgetall(key).items() if plain(f)])
               for key in [ids, *store._scan("t:*", "g"), *(a + "d" for a in store._scan("a", "g"))]]
    for key, fields in changes:
        if fields:
            pipe = store.redis.pipeline(transaction=True)
            pipe.hdel(key, *(old for old, _, _ in fields))
            pipe.hset(key, mapping={new: value for _, new, value in fields})
            pipe.execute()
            count += len(fields)
    old_times = [(member, score) for member, score in store.redis.zrange(times, 0, -1, withscores=True)
                 if plain(member)]
    if old_times:
        pipe = store.redis.pipeline(transaction=True)
        pipe.zrem(times, *(member for member, _ in old_times))
        pipe.zadd(times, {hash_key(member): score for member, score in old_times})
        pipe.execute()
    for key in list(store._scan("a", "g")):
        entries = [(member, score) for member, score in store.redis.zrange(key, 0, -1, withscores=True)
                   if plain(_activity_id(member))]
        if entries:
            pipe = store.redis.pipeline(transaction=True)
            pipe.zrem(key, *(member for member, _ in entries))
            pipe.zadd(key, {_rekeyed_activity(member, hash_key): score for member, score in entries})
            pipe.execute()
    return count


def _not_hashed(message_id: str) -> bool:
    """Whether a message id is not a keyed hash (`privacy.KeyedHash`: 32 lowercase hex digits)."""
    return len(message_id) != 32 or any(c not in "0123456789abcdef" for c in message_id)


def _activity_id(member: str) -> str:
    """The message id of an activity entry ``seq [message id, values]``."""
    return orjson.loads(member.partition(" ")[2])[0]


def _rekeyed_activity(member: str, hash_key) -> str:
    """An activity entry ``seq [message id, values]`` with its message id hashed."""
    seq, _, entry = member.partition(" ")
    message_id, values = orjson.loads(entry)
    return f"{seq} {orjson.dumps([hash_key(message_id), values]).decode()}"


def _group_of(key: str, start: int) -> tuple[str, str] | None:
    """The ``(type, id)`` in a group key's hash tag (a JSON array starting at `start`): the first prefix that
    ends at a ``]}:`` and parses (a JSON array cannot close earlier than it does)."""
    end = key.find("]}:", start)
    while end != -1:
        try:
            found = orjson.loads(key[start:end + 1])
        except orjson.JSONDecodeError:
            end = key.find("]}:", end + 1)
            continue
        return (found[0], found[1]) if isinstance(found, list) and len(found) == 2 else None
    return None


def _glob(text: str) -> str:
    """`text` matched literally by a Redis SCAN pattern."""
    return "".join("\\" + char if char in "*?[]\\" else char for char in text)

