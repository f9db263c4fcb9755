"""Issue 17 item 13: store formats carry a version. Files (and a Redis keyspace) written by groupspec 0.1.0, before
versions (tests/data/legacy, made by its generate.py with the code of commit 16f43ba), open with today's code and
answer as 0.1.0 did; an older format is migrated once, under a lock, however many processes open it at once; a
newer one is refused with an error naming the file (or URL) and both versions.

Issue 23 (format version 2): a 0.1.0 store comes out re-keyed, no plain message id left (its message ids are
asked for by their keyed hash, `KeyedHash` of the store's own key, and answer as 0.1.0's did by their plain id);
a 0.1.0 spool gains the `erased` table."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
import redis
from redis_support import CLUSTER_SCHEME, REDIS_URL, RedisSandbox, needs_redis, needs_redis_server

from groupspec.middleware.message import message_key
from groupspec.middleware.privacy import KeyedHash
from groupspec.middleware.stores import StoreError, open_store
from groupspec.middleware.stores import redis as redis_store
from groupspec.middleware.stores import sqlite as sqlite_store
from groupspec.middleware.migrations import Migration
from groupspec.middleware.stores.formats import Format, FormatError
from groupspec.middleware.stores.migrated import migrated
from groupspec.plugin import spool as spool_module
from groupspec.plugin.spool import Spool, SpoolQueue

LEGACY = Path(__file__).resolve().parent / "data" / "legacy"
ANSWERS = json.loads((LEGACY / "answers.json").read_text())
OLD_PREFIX = "gsold:"  # what generate.py wrote the Redis keys under


def plain(value):
    """An answer as JSON data, as generate.py wrote 0.1.0's: named tuples as lists, sets sorted, tuple keys as text."""
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else json.dumps(plain(k))): plain(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


#: where a recorded question names a message id: the method and the argument's position
MESSAGE_ID_ARGS = {"admit": 0, "lookup": 0, "stale_traits": 4}


def ask(store, recorded: list) -> tuple[list, list]:
    """(what 0.1.0 answered, what `store` answers) to each recorded question. A `Lookup` has gained fields since
    0.1.0 (the first arrival's time): the fields 0.1.0 answered are compared. The store is re-keyed (format
    version 2): a message id is asked for by its keyed hash, and an activity entry's id is answered by it."""
    hasher = rekeyed(store)
    new = []
    for m, args, answer in recorded:
        args = list(args)
        if m in MESSAGE_ID_ARGS:
            args[MESSAGE_ID_ARGS[m]] = hasher(args[MESSAGE_ID_ARGS[m]])
        got = plain(getattr(store, m)(*args))
        if m == "activity_since":
            got = [[at, seq, original(store, message_id), values] for at, seq, message_id, values in got]
        new.append(got[:len(answer)] if m == "lookup" else got)
    return [answer for _, _, answer in recorded], new


def rekeyed(store) -> KeyedHash:
    """What the store keeps of a message id since format version 2 (no `[privacy] key`: the store's own)."""
    return KeyedHash(store.privacy_key())


def original(store, message_id: str) -> str:
    """The plain id (generate.py's m1..m9) a keyed hash stands for."""
    hasher = rekeyed(store)
    return next((f"m{n}" for n in range(1, 10) if hasher(f"m{n}") == message_id), message_id)


def is_keyed_hash(message_id: str) -> bool:
    return len(message_id) == 32 and all(c in "0123456789abcdef" for c in message_id)


def sqlite_message_ids(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [message_id for table in ("messages", "traits", "activity")
                for (message_id,) in db.execute(f"SELECT message_id FROM {table}")]


#: a message key as 0.1.0's engine stored it (plain: it names its person)
PLAIN_KEY = message_key(None, "u:alice-0.1.0@example.com", "group", "m-real")


def add_plain_sqlite_key(path: Path) -> int:
    """What a 0.1.0 store holds of a real message: its plain key in arrivals, trait history and activity; its
    arrival number."""
    with sqlite3.connect(path) as db:
        arrived = db.execute("INSERT INTO messages (message_id, ts) VALUES (?, 400.0)", (PLAIN_KEY,)).lastrowid
        db.execute("INSERT INTO traits (type_id, group_id, name, ts, message_id, value, arrived) VALUES"
                   " ('household', 'hh_1', 'size', 400.0, ?, '4', ?)", (PLAIN_KEY, arrived))
        db.execute("INSERT INTO activity (type_id, group_id, message_id, ts, value) VALUES"
                   " ('household', 'hh_1', ?, 400.0, '{}')", (PLAIN_KEY,))
    return arrived


def legacy_copy(tmp_path: Path, name: str) -> Path:
    """A copy of a committed legacy file (opening migrates it: the committed one stays as 0.1.0 wrote it)."""
    path = tmp_path / name
    shutil.copy(LEGACY / name, path)
    return path


def format_row(path: Path) -> tuple | None:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT kind, version FROM groupspec_format").fetchone()


def set_version(path: Path, kind: str, version: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("UPDATE groupspec_format SET kind = ?, version = ?", (kind, version))


# -- the SQLite store ---------------------------------------------------------------------------------------------

def test_a_sqlite_store_written_by_0_1_0_opens_and_answers_as_it_did(tmp_path):
    path = legacy_copy(tmp_path, "store.db")
    store = open_store(f"sqlite:///{path}")
    old, new = ask(store, ANSWERS["sqlite"])
    assert new == old
    # by hand, from generate.py's facts: alice is anon1, who joined hh_1 at 100; the plan became family at 200
    assert store.memberships_at(["u:alice", "a:anon1"], 110.0) == [("household", "hh_1", 100.0)]
    assert store.traits_at("household", "hh_1", ["plan"], 250.0) == {"plan": "family"}
    hasher = rekeyed(store)
    assert store.admit(hasher("m1"), 100.0) == 1 and store.admit(hasher("m-new"), 400.0) > 7  # numbering goes on
    store.close()
    assert format_row(path) == ("store", sqlite_store.FORMAT.current)
    ids = sqlite_message_ids(path)
    assert len(ids) == 12 and all(is_keyed_hash(message_id) for message_id in ids)  # no plain message id left


def test_a_sqlite_store_written_by_0_1_0_comes_out_rekeyed_with_its_plain_keys_gone_from_the_file(tmp_path):
    path = legacy_copy(tmp_path, "store.db")
    arrived = add_plain_sqlite_key(path)
    store = open_store(f"sqlite:///{path}")
    hasher = rekeyed(store)
    assert store.admit(hasher(PLAIN_KEY), 400.0) == arrived  # the same message: its arrival number, not a new one
    assert store.stale_traits("household", "hh_1", ["size"], 400.0, hasher(PLAIN_KEY)) == set()  # its own entry
    assert [a.message_id for a in store.activity_since("household", "hh_1", 400.0)] == [hasher(PLAIN_KEY)]
    old, new = ask(store, ANSWERS["sqlite"])
    differ = {question[0] for question, o, n in zip(ANSWERS["sqlite"], old, new) if o != n}
    assert differ <= {"size", "trait_names", "activity_since"}  # only what counts the added message
    store.close()
    assert all(is_keyed_hash(message_id) for message_id in sqlite_message_ids(path))
    raw = b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    assert b"alice-0.1.0" not in raw  # rebuilt: not in free pages, not in the WAL
    reopened = open_store(f"sqlite:///{path}")  # opened again: nothing to migrate, nothing re-keyed twice
    assert reopened.admit(hasher(PLAIN_KEY), 400.0) == arrived
    reopened.close()


def test_a_sqlite_store_from_before_arrival_numbers_gains_its_columns_and_keeps_its_facts(tmp_path):
    """An earlier 0.x file (the schema of commit fa80ef2: no arrival numbers, no event times on links)."""
    path = tmp_path / "early.db"
    with sqlite3.connect(path) as db:
        db.executescript("""
            CREATE TABLE links (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID;
            CREATE TABLE memberships (seq INTEGER PRIMARY KEY AUTOINCREMENT, person TEXT NOT NULL,
                type_id TEXT NOT NULL, group_id TEXT NOT NULL, ts REAL NOT NULL, joined INTEGER NOT NULL,
                UNIQUE (person, type_id, group_id, ts, joined));
            INSERT INTO links VALUES ('u:alice', 'a:anon1'), ('a:anon1', 'u:alice');
            INSERT INTO memberships (person, type_id, group_id, ts, joined) VALUES ('a:anon1', 'household', 'hh_1', 100, 1);
        """)
    store = open_store(f"sqlite:///{path}")
    assert store.memberships_at(store.identities("u:alice"), 110.0) == [("household", "hh_1", 100.0)]
    store.record_membership("u:bob", "household", "hh_1", 150.0, True, arrived=store.admit("m2", 150.0))
    assert store.members_at("household", "hh_1", 160.0) == ["a:anon1", "u:bob"]
    store.close()
    assert format_row(path) == ("store", sqlite_store.FORMAT.current)


def test_a_new_sqlite_store_is_written_at_the_current_version(tmp_path):
    open_store(f"sqlite:///{tmp_path / 'new.db'}").close()
    assert format_row(tmp_path / "new.db") == ("store", sqlite_store.FORMAT.current)


def test_a_version_1_sqlite_store_migrates_to_the_current_version_and_answers_migration_reads(tmp_path):
    """Issue 21: `store-v1.db` (generate_v1.py: format version 1, as groupspec wrote it before group id migrations)
    gains the `migrations` and `relationships` tables and `traits.source`; its facts answer as before and the new
    reads work on it."""
    path = legacy_copy(tmp_path, "store-v1.db")
    assert format_row(path) == ("store", 1)
    store = open_store(f"sqlite:///{path}")
    assert format_row(path) == ("store", sqlite_store.FORMAT.current)  # 2: group id migrations; 3: erasure
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"migrations", "relationships"} <= tables
        assert "source" in {row[1] for row in db.execute("PRAGMA table_info(traits)")}
    # version 1's facts, by hand from generate_v1.py
    assert store.memberships_at(store.identities("u:alice"), 110.0) == [("household", "hh_1", 100.0)]
    assert store.traits_at("household", "hh_1", ["plan", "name"], 250.0) == {"plan": "family", "name": "Smiths"}
    assert [(e.ts, e.value, e.source) for e in store.trait_history("household", "hh_1", "plan")] == [
        (100.0, "basic", None), (200.0, "family", None)]  # written before sources were kept
    # nothing migrated yet, then the reads of version 2
    assert store.migrations() == [] and store.migration_count() == 0
    assert store.relationship_attributes("household", "hh_1") == {}
    store.record_relationship("u:bob", "household", "hh_1", {"role": "owner"}, 150.0)
    rename = Migration("household", "hh_1", "hh_one", "rename", 300.0)
    assert store.record_migration(rename) and not store.record_migration(rename)
    assert store.migrations() == [rename] and store.migration_count() == 1
    assert store.relationship_attributes("household", "hh_1") == {"u:bob": {"role": "owner"}}
    through = migrated(store)
    through.refresh()
    assert through.memberships_at(["u:bob"], 160.0) == [("household", "hh_one", 150.0)]
    assert through.traits_at("household", "hh_one", ["plan"], 250.0) == {"plan": "family"}
    assert through.relationship_attributes("household", "hh_one") == {"u:bob": {"role": "owner"}}
    store.close()
    store = open_store(f"sqlite:///{path}")  # at the current version: opened as it is
    assert store.migrations() == [rename] and format_row(path) == ("store", sqlite_store.FORMAT.current)
    store.close()


def test_a_sqlite_store_of_a_newer_format_is_refused_naming_the_file_and_both_versions(tmp_path):
    path = tmp_path / "store.db"
    open_store(f"sqlite:///{path}").close()
    newer = sqlite_store.FORMAT.current + 1
    set_version(path, "store", newer)
    with pytest.raises(FormatError) as refused:
        open_store(f"sqlite:///{path}")
    message = str(refused.value)
    assert str(path) in message and f"version {newer}" in message and f"version {newer - 1} at most" in message
    assert format_row(path) == ("store", newer)  # left as it was


def test_a_spool_is_not_opened_as_a_store(tmp_path):
    path = legacy_copy(tmp_path, "spool.db")
    Spool(path).close()
    with pytest.raises(StoreError, match="is a groupspec spool file, not a store"):
        open_store(f"sqlite:///{path}")


def test_a_sqlite_migration_runs_once_across_processes_opening_at_once(tmp_path, monkeypatch):
    path = legacy_copy(tmp_path, "store.db")

    def count(db):  # a later migration (the current version -> the next): slow enough for every opener to meet it
        db.execute("CREATE TABLE IF NOT EXISTS runs (n INTEGER)")
        db.execute("INSERT INTO runs VALUES (1)")
        time.sleep(0.3)

    later = sqlite_store.FORMAT.current + 1
    monkeypatch.setattr(sqlite_store, "FORMAT", Format("store", [*sqlite_store.FORMAT.migrations, count]))
    assert run_openers(lambda: open_store(f"sqlite:///{path}").close()) == [0] * 8
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,)
    assert format_row(path) == ("store", later)
    store = open_store(f"sqlite:///{path}")
    assert ask(store, ANSWERS["sqlite"])[1] == ask(store, ANSWERS["sqlite"])[0]  # the facts are untouched


def test_a_failed_sqlite_migration_leaves_the_file_as_it_was(tmp_path, monkeypatch):
    path = legacy_copy(tmp_path, "store.db")

    def broken(db):
        db.execute("CREATE TABLE half_done (n INTEGER)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_store, "FORMAT", Format("store", [*sqlite_store.FORMAT.migrations, broken]))
    with pytest.raises(StoreError, match="disk I/O error"):
        open_store(f"sqlite:///{path}")
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "half_done" not in tables and "groupspec_format" not in tables  # still 0.1.0's file


def run_openers(open_once, processes: int = 8) -> list[int]:
    """Exit codes of `processes` forked processes that each open at the same moment."""
    fork = multiprocessing.get_context("fork")
    start = fork.Event()

    def opener():
        start.wait()
        open_once()

    procs = [fork.Process(target=opener) for _ in range(processes)]
    for proc in procs:
        proc.start()
    start.set()
    for proc in procs:
        proc.join(60)
    return [proc.exitcode for proc in procs]


# -- the spool ----------------------------------------------------------------------------------------------------

def test_a_spool_written_by_0_1_0_opens_with_its_entries_and_worker_state(tmp_path):
    path = legacy_copy(tmp_path, "spool.db")
    old = ANSWERS["spool"]
    spool = Spool(path)
    assert spool.depth == old["depth"] == 1 and spool.worker_state() == old["worker_state"]
    queue = SpoolQueue(path)
    waiting = [[e.seq, e.source, e.kind, e.received_at, e.messages, e.payload.decode()] for e in queue.take(0, 100)]
    assert waiting == old["waiting"] and waiting[0][2] == "identify"
    queue.close()
    spool.close()
    assert format_row(path) == ("spool", spool_module.FORMAT.current)
    with sqlite3.connect(path) as db:  # version 2 (erasure): the count of erased messages, none yet
        assert db.execute("SELECT count(*) FROM erased").fetchone() == (0,)


def test_a_spool_of_a_newer_format_is_refused(tmp_path):
    path = legacy_copy(tmp_path, "spool.db")
    Spool(path).close()
    set_version(path, "spool", spool_module.FORMAT.current + 1)
    with pytest.raises(FormatError, match=f"spool '{path}' has format version {spool_module.FORMAT.current + 1}"):
        Spool(path)
    Spool(tmp_path / "other.db").close()  # the lock was let go: nothing else is held


# -- the Redis store ----------------------------------------------------------------------------------------------

def restore(sandbox: RedisSandbox) -> None:
    """Write the keys 0.1.0 wrote (redis.json) under the sandbox's prefix."""
    if sandbox.url.startswith(CLUSTER_SCHEME):
        client = redis.RedisCluster.from_url("redis://" + sandbox.url.removeprefix(CLUSTER_SCHEME).split(",")[0],
                                             decode_responses=True)
    else:
        client = redis.Redis.from_url(sandbox.url, decode_responses=True)
    for kind, key, data in json.loads((LEGACY / "redis.json").read_text()):
        key = sandbox.prefix + key
        if kind == "string":
            client.set(key, data)
        elif kind == "hash":
            client.hset(key, mapping=data)
        elif kind == "set":
            client.sadd(key, *data)
        else:
            client.zadd(key, dict(data))
    client.close()


@pytest.fixture(params=[pytest.param("redis", marks=needs_redis), pytest.param("redis-cluster", marks=needs_redis_server)])
def sandbox(request):
    box = RedisSandbox(REDIS_URL if request.param == "redis" else request.getfixturevalue("redis_cluster"))
    yield box
    box.clean()


def test_a_redis_keyspace_written_by_0_1_0_opens_and_answers_as_it_did(sandbox):
    restore(sandbox)
    store = sandbox.open()
    old, new = ask(store, ANSWERS["redis"])
    assert new == old
    assert store.memberships_at(["u:bob"], 160.0) == [("household", "hh_1", 150.0)]  # by hand: bob joined at 150
    assert store.admit(rekeyed(store)("m-new"), 400.0) == 8
    assert store.redis.get(store.keys.format("version")) == str(redis_store.FORMAT.current)
    # version 1 -> 2 (group id migrations) changes nothing: 0.1.0's three-item trait payloads read, no source
    assert [(e.ts, e.value, e.source) for e in store.trait_history("household", "hh_1", "plan")] == [
        (100.0, "basic", None), (200.0, "family", None)]
    assert store.migrations() == [] and store.migration_count() == 0
    assert store.relationship_attributes("household", "hh_1") == {}
    ids = redis_message_ids(store)
    assert len(ids) == 21 and all(is_keyed_hash(message_id) for message_id in ids)  # no plain message id left
    store.close()


def redis_message_ids(store) -> list[str]:
    """Every message id the keyspace holds: arrival records (both keys), trait histories, activity logs."""
    client, keys = store.redis, store.keys
    ids = [*client.hkeys(keys.arrivals("ids")), *client.zrange(keys.arrivals("t"), 0, -1)]
    for key in store._scan("t:*", "g"):
        ids += client.hkeys(key)
    for key in store._scan("a", "g"):
        ids += client.hkeys(key + "d")
        ids += [orjson.loads(member.partition(" ")[2])[0] for member in client.zrange(key, 0, -1)]
    return ids


def test_a_redis_keyspace_written_by_0_1_0_comes_out_rekeyed(sandbox):
    restore(sandbox)
    client = redis.Redis.from_url(sandbox.url, decode_responses=True) if not sandbox.url.startswith(
        CLUSTER_SCHEME) else redis.RedisCluster.from_url(
        "redis://" + sandbox.url.removeprefix(CLUSTER_SCHEME).split(",")[0], decode_responses=True)
    client.hset(sandbox.prefix + "{arrivals}:ids", PLAIN_KEY, 8)  # a real message as 0.1.0 recorded it
    client.zadd(sandbox.prefix + "{arrivals}:t", {PLAIN_KEY: 400.0})
    client.close()
    store = sandbox.open()
    hasher = rekeyed(store)
    assert store.admit(hasher(PLAIN_KEY), 400.0) == 8  # its arrival number, under its keyed hash
    assert store.redis.get(store.keys.privacy("message_keys")) == "keyed"
    assert all(is_keyed_hash(message_id) for message_id in redis_message_ids(store))
    store.close()
    again = sandbox.open()  # nothing re-keyed twice
    assert again.admit(hasher(PLAIN_KEY), 400.0) == 8 and again.admit(hasher("m4"), 200.0) == 4
    again.close()


def test_a_redis_keyspace_of_a_newer_format_is_refused_naming_the_url(sandbox):
    store = sandbox.open()
    newer = redis_store.FORMAT.current + 1
    store.redis.set(store.keys.format("version"), newer)
    with pytest.raises(FormatError) as refused:
        sandbox.open()
    message = str(refused.value)
    where = "127.0.0.1" if sandbox.url.startswith(CLUSTER_SCHEME) else "redis://127.0.0.1:6379/0"
    assert where in message and f"version {newer}" in message and f"version {newer - 1} at most" in message


def test_a_redis_store_that_did_not_answer_at_open_checks_its_format_at_its_first_command(sandbox, monkeypatch):
    store = sandbox.open()
    store.redis.set(store.keys.format("version"), redis_store.FORMAT.current + 1)
    original = redis_store.RedisStore._check_format
    down = {"yes": True}

    def flaky(self):
        if down.pop("yes", False):
            raise redis.ConnectionError("Redis is down")
        return original(self)

    monkeypatch.setattr(redis_store.RedisStore, "_check_format", flaky)
    late = sandbox.open()  # Redis did not answer: opening does not wait for it
    with pytest.raises(FormatError):
        late.identities("u:alice")


def test_a_redis_migration_runs_once_across_processes_opening_at_once(sandbox, monkeypatch):
    restore(sandbox)
    runs = sandbox.prefix + "{format}:runs"

    def count(store):  # a later migration (the current version -> the next), using the store's own reads as a
        # migration may
        assert store.size()["arrivals"] == 7
        store.redis.incr(runs)
        time.sleep(0.3)

    later = str(redis_store.FORMAT.current + 1)
    monkeypatch.setattr(redis_store, "FORMAT", Format("store", [*redis_store.FORMAT.migrations, count]))
    assert run_openers(lambda: sandbox.open().close()) == [0] * 8
    store = sandbox.open()
    assert store.redis.get(runs) == "1" and store.redis.get(store.keys.format("version")) == later
    assert store.redis.get(store.keys.format("lock")) is None
    old, new = ask(store, ANSWERS["redis"])
    assert new == old


def test_the_command_line_says_which_file_is_too_new_without_a_traceback(tmp_path, capsys):
    from groupspec.plugin.cli import main

    path = tmp_path / "store.db"
    open_store(f"sqlite:///{path}").close()
    set_version(path, "store", sqlite_store.FORMAT.current + 1)
    fixtures = Path(__file__).resolve().parent.parent / "fixtures" / "households"
    code = main(["replay", str(fixtures / "stream.jsonl"), "--config", str(fixtures / "groupspec.toml"),
                 "--store", f"sqlite:///{path}", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"groupspec: format error: SQLite store '{path}' has format version")
    assert "Traceback" not in err
