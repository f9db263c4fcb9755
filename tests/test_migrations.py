"""Group id migrations (issue 21): the store facts on every store kind (memory, SQLite, Redis, Redis Cluster), the
store read through them, messages naming a migrated id, the migration map's checks, `groups migrate` (dry run,
delivery, verify afterwards, a second delivery) and `replay --migrations`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from appapi_standin import AppApiStandin
from groupspec.middleware import Engine
from groupspec.middleware.config import parse_config
from groupspec.middleware.migrations import Migration, MigrationMap
from groupspec.middleware.stores import Membership, open_store
from groupspec.middleware.stores.history import fold_memberships
from groupspec.middleware.stores.memory import MemoryStore
from groupspec.middleware.stores.migrated import Migrated
from groupspec.middleware.stores.sqlite import SQLiteStore
from groupspec.plugin.cli import main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis_support import RedisSandbox, needs_redis, needs_redis_server, sandbox_url

KINDS = ["memory", "sqlite", pytest.param("redis", marks=needs_redis),
         pytest.param("redis-cluster", marks=needs_redis_server)]
DAY = 86400.0
T0 = 1_767_225_600.0  # 2026-01-01


@pytest.fixture(params=KINDS)
def opener(request, tmp_path) -> Callable[[], object]:
    """Opens a raw store of the kind under test; every call opens the same data (memory: the same store)."""
    opened, sandbox = [], None
    if request.param == "redis":
        sandbox = RedisSandbox()
    elif request.param == "redis-cluster":
        sandbox = RedisSandbox(request.getfixturevalue("redis_cluster"))
    memory = MemoryStore()

    def open_one():
        store = {"memory": lambda: memory, "sqlite": lambda: SQLiteStore(str(tmp_path / "g.db"))}.get(
            request.param, sandbox and sandbox.open)()
        opened.append(store)
        return store

    open_one.kind = request.param
    open_one.url = {"memory": None, "sqlite": f"sqlite:///{tmp_path / 'g.db'}"}.get(
        request.param, sandbox and sandbox_url(sandbox))
    yield open_one
    for store in opened:
        if store is not memory:
            store.close()
    if sandbox is not None:
        sandbox.clean()


@pytest.fixture
def store(opener) -> Migrated:
    return Migrated(opener(), owners={"plan": "billing"})


def migrate(store: Migrated, *rows: Migration) -> None:
    for row in rows:
        assert store.record_migration(row)
    assert store.refresh()


def groups_of(found: list[Membership]) -> list[str]:
    return [m.group_id for m in found]


# the store facts

def test_a_migration_is_one_fact_recorded_once_and_the_counter_moves(opener):
    raw = opener()
    assert raw.migration_count() == 0 and raw.migrations() == []
    rename = Migration("1", "hh_a", "hh_b", "rename", T0, False, 7)
    assert raw.record_migration(rename) is True
    assert raw.record_migration(rename._replace(new_id="hh_c")) is False  # an old id migrates once
    merge = Migration("2", "12", "acct_12", "merge", T0 + DAY, True, None)
    assert raw.record_migration(merge) is True
    assert raw.migrations() == [rename, merge] and raw.migration_count() == 2
    if opener.kind != "memory":  # another process (a replica) sees it
        assert opener().migrations() == [rename, merge]


def test_a_trait_value_keeps_its_writing_source_and_relationship_attributes_are_kept(opener):
    raw = opener()
    raw.apply_traits("1", "hh_a", {"plan": "pro"}, T0, "m1", arrived=3, source="billing")
    raw.apply_traits("1", "hh_a", {"plan": "basic"}, T0 + 1, "m2")
    history = raw.trait_history("1", "hh_a", "plan")
    assert [(e.ts, e.message_id, e.value, e.arrived, e.source) for e in history] == [
        (T0, "m1", "pro", 3, "billing"), (T0 + 1, "m2", "basic", None, None)]
    raw.record_relationship("u:1", "1", "hh_a", {"role": "owner"}, T0 + 10)
    raw.record_relationship("u:1", "1", "hh_a", {"role": "member"}, T0)  # older: the newer stays
    raw.record_relationship("u:2", "1", "hh_a", {"role": "kid"}, T0)
    assert raw.relationship_attributes("1", "hh_a") == {"u:1": {"role": "owner"}, "u:2": {"role": "kid"}}


def test_raw_membership_events_and_deletions(opener):
    raw = opener()
    raw.record_membership("u:1", "1", "hh_a", T0, True, arrived=4)
    raw.record_object_deleted("1", "hh_a", T0 + DAY)
    assert [(t, g, at, joined, arrived) for t, g, at, _, joined, arrived in raw.membership_events(["u:1", "u:2"])] == [
        ("1", "hh_a", T0, True, 4)]
    assert raw.deletions([("1", "hh_a"), ("1", "hh_b")]) == {("1", "hh_a"): [(T0 + DAY, None)]}


# reading through the migrations

def test_a_rename_moves_the_whole_history_and_a_leave_sent_under_the_new_id_ends_it(store):
    store.record_membership("u:1", "1", "hh_a", T0, True)
    store.record_membership("u:2", "1", "hh_a", T0, True)
    migrate(store, Migration("1", "hh_a", "hh_b", "rename", T0 + 10 * DAY))
    assert store.memberships_at(["u:1"], T0 + DAY) == [Membership("1", "hh_b", T0)]  # whatever the time
    store.record_membership("u:1", "1", "hh_b", T0 + 20 * DAY, False)  # the sender now says hh_b
    assert store.memberships_at(["u:1"], T0 + 21 * DAY) == []
    assert groups_of(store.memberships_at(["u:2"], T0 + 21 * DAY)) == ["hh_b"]
    assert store.members_at("1", "hh_b", T0 + 21 * DAY) == ["u:2"] and store.members_at("1", "hh_a", T0 + DAY) == []


def test_a_merge_is_point_in_time_late_joins_count_and_a_later_leave_ends_it(store):
    at = T0 + 10 * DAY
    store.record_membership("u:1", "1", "hh_a", T0, True)
    store.record_membership("u:9", "1", "hh_b", T0, True)
    migrate(store, Migration("1", "hh_a", "hh_b", "merge", at))
    assert groups_of(store.memberships_at(["u:1"], at - 1)) == ["hh_a"]  # before: each group as it was
    assert store.memberships_at(["u:1"], at) == [Membership("1", "hh_b", at)]
    store.record_membership("u:2", "1", "hh_a", T0 + DAY, True)  # a late join, dated before the merge
    assert groups_of(store.memberships_at(["u:2"], at + DAY)) == ["hh_b"]
    store.record_membership("u:1", "1", "hh_b", at + 2 * DAY, False)
    assert store.memberships_at(["u:1"], at + 3 * DAY) == []
    assert store.members_at("1", "hh_b", at + 3 * DAY) == ["u:2", "u:9"]
    assert store.members_at("1", "hh_a", at - 1) == ["u:1", "u:2"]


def test_a_deletion_of_the_new_id_ends_the_carried_memberships(store):
    store.record_membership("u:1", "1", "hh_a", T0, True)
    migrate(store, Migration("1", "hh_a", "hh_b", "rename", T0 + DAY))
    store.record_object_deleted("1", "hh_b", T0 + 5 * DAY)
    assert store.memberships_at(["u:1"], T0 + 6 * DAY) == []


def test_chains_resolve_to_the_last_id(store):
    store.record_membership("u:1", "1", "a", T0, True)
    store.record_membership("u:2", "1", "c", T0, True)
    migrate(store, Migration("1", "a", "b", "rename", T0 + DAY), Migration("1", "b", "c", "merge", T0 + 2 * DAY))
    assert groups_of(store.memberships_at(["u:1"], T0 + 1)) == ["b"]
    assert groups_of(store.memberships_at(["u:1"], T0 + 3 * DAY)) == ["c"]
    assert store.members_at("1", "c", T0 + 3 * DAY) == ["u:1", "u:2"]


def test_traits_a_rename_carries_its_history_a_merge_keeps_the_newest_from_the_owner(store):
    store.apply_traits("1", "a", {"plan": "basic", "tier": "x"}, T0, "m1", source="billing")
    store.apply_traits("1", "a", {"status": "active"}, T0, "m1")
    migrate(store, Migration("1", "a", "b", "rename", T0 + 10 * DAY))
    assert store.traits_at("1", "b", ["plan", "tier"], T0 + 1) == {"plan": "basic", "tier": "x"}
    assert store.traits_at("1", "b", ["plan"], T0 - 1) == {}  # point in time
    assert store.trait_names("1", "b") == ["plan", "status", "tier"]
    # merge into c: per trait the newest value, from the owner source where it wrote one
    store.apply_traits("1", "c", {"plan": "pro", "tier": "y"}, T0 + DAY, "m2", source="web")
    migrate(store, Migration("1", "b", "c", "merge", T0 + 20 * DAY))
    assert store.traits_at("1", "c", ["plan", "tier"], T0 + 19 * DAY) == {"plan": "pro", "tier": "y"}  # before
    assert store.traits_at("1", "c", ["plan", "tier", "status"], T0 + 20 * DAY) == {
        "plan": "basic", "tier": "y", "status": "active"}  # plan: billing owns it; tier: the newest
    assert store.stale_traits("1", "c", ["tier"], T0 + 12 * 3600, "m9") == {"tier"}


def test_the_activity_logs_are_combined_and_relationship_attributes_carried(store):
    store.record_activity("1", "a", "e1", T0, {"orders": 1})
    store.record_activity("1", "b", "e2", T0 + 1, {"orders": 1})
    store.record_relationship("u:1", "1", "a", {"role": "owner"}, T0)
    migrate(store, Migration("1", "a", "b", "merge", T0 + DAY))
    assert [e.message_id for e in store.activity_since("1", "b", T0 - 1)] == ["e1", "e2"]
    assert store.relationship_attributes("1", "b") == {"u:1": {"role": "owner"}}


def test_a_replica_sees_a_migration_once_it_refreshes_and_a_message_sees_what_it_saw_first(opener):
    if opener.kind == "memory":
        pytest.skip("a memory store lives in one process")
    one, two = Migrated(opener()), Migrated(opener())
    one.record_membership("u:1", "1", "a", T0, True)
    assert two.refresh() is False
    arrival = one.admit("later message")
    one.record_migration(Migration("1", "a", "b", "rename", T0, False, one.admit("the migration")))
    assert two.refresh() is True and two.refresh() is False  # the counter is checked, the map read once
    assert groups_of(two.memberships_at(["u:1"], T0 + 1)) == ["b"]
    assert groups_of(two.memberships_at(["u:1"], T0 + 1, before=arrival)) == ["a"]  # arrived before the migration


# messages naming a migrated id

CONFIG = {"contract": {"version": "v1", "group_id_pattern": "^acct_[0-9]+$", "attach_group_traits": ["plan"],
                       "group_traits": {"plan": {}}, "actions": {"invalid_group_id": "flag"}}}


def engine(store, **contract) -> Engine:
    config = parse_config({"contract": {**CONFIG["contract"], **contract}})
    return Engine(config, store, clock=None)


def send(engine: Engine, **message) -> dict:
    out = engine.process(json.dumps({"messageId": message.pop("mid", None) or str(id(message)), **message}))
    return out.forwarded[0] if out.forwarded else out.quarantined[0]


def test_a_message_naming_an_old_id_is_mapped_before_the_checks_and_flagged(store):
    run = engine(store)
    send(run, type="group", userId="u1", groupId="12", timestamp="2026-01-01T00:00:00Z", traits={"plan": "pro"})
    migrate(run.store, Migration("1", "12", "acct_12", "rename", T0 + DAY))
    body = send(run, type="track", userId="u1", event="Order", context={"groupId": "12"}, timestamp="2026-01-01T05:00:00Z")
    info = body["context"]["groupspec"]
    assert body["context"]["groupId"] == "acct_12" and info["migrated_from"] == "12"
    assert [v["code"] for v in info["violations"]] == ["group_id_migrated"]  # the new id passes the pattern
    assert info["group_traits"] == {"plan": "pro"}
    group = send(run, type="group", userId="u2", groupId="12", timestamp="2026-01-03T00:00:00Z")
    assert group["groupId"] == "acct_12" and group["context"]["groupspec"]["migrated_from"] == "12"
    prop = send(run, type="track", userId="u3", event="Order", properties={"group_id": "12"},
                timestamp="2026-01-03T00:00:00Z")
    assert prop["properties"]["group_id"] == "acct_12"
    left = send(run, type="track", userId="u2", event="Relationship Deleted", properties={"objectId": "12"},
                timestamp="2026-01-04T00:00:00Z")
    assert left["properties"]["objectId"] == "acct_12"
    assert run.store.memberships_at(["u:2"], T0 + 4 * DAY) == []


def test_after_a_merge_the_message_time_decides_and_drop_is_an_action(store):
    run = engine(store, group_id_pattern=None)
    send(run, type="group", userId="u1", groupId="hh_a", timestamp="2026-01-01T00:00:00Z")
    send(run, type="group", userId="u9", groupId="hh_b", timestamp="2026-01-01T00:00:00Z")
    migrate(run.store, Migration("1", "hh_a", "hh_b", "merge", T0 + 10 * DAY))
    late = send(run, type="track", userId="u1", event="Order", context={"groupId": "hh_a"},
                timestamp="2026-01-05T00:00:00Z")
    assert late["context"]["groupId"] == "hh_a" and late["context"]["groupspec"]["violations"] == []
    after = send(run, type="track", userId="u1", event="Order", context={"groupId": "hh_a"},
                 timestamp="2026-01-12T00:00:00Z")
    assert after["context"]["groupId"] == "hh_b"
    dropping = engine(run.store.raw, group_id_pattern=None, actions={"group_id_migrated": "drop"})
    dropping.transaction()
    record = send(dropping, type="track", userId="u1", event="Order", context={"groupId": "hh_a"},
                  timestamp="2026-01-12T00:00:00Z")
    assert [v["code"] for v in record["violations"]] == ["group_id_migrated"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["u:1", "u:2"]), st.sampled_from(["a", "b", "c"]),
                          st.integers(0, 20), st.booleans()), max_size=14),
       st.integers(0, 20), st.integers(0, 25))
def test_property_a_rename_reads_as_if_every_fact_had_been_written_under_the_new_id(events, at, ts):
    """The invariant of a rename: reading through it is reading a store where the old id never existed."""
    migrations = MigrationMap([Migration("1", "a", "b", "rename", float(at))])
    stored = [("1", g, float(t), seq, joined, None) for seq, (_, g, t, joined) in enumerate(events)]
    mine = [e for e, (person, *_) in zip(stored, events) if person == "u:1"]
    renamed = [(t, "b" if g == "a" else g, *rest) for t, g, *rest in mine]
    assert migrations.fold(mine, {}, float(ts)) == fold_memberships(renamed, {}, float(ts))
    assert MigrationMap().fold(mine, {}, float(ts)) == fold_memberships(mine, {}, float(ts))


# the migration map, `groups migrate` and `replay --migrations`

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "household-merge"


@pytest.fixture
def built(opener, tmp_path, monkeypatch):
    """The household-merge stream replayed (without its migrations) into the store under test; `run(*args)` is
    `groupspec groups migrate` against it with a config naming the Customer.io and App API stand-ins."""
    if opener.kind == "memory":
        pytest.skip("groups migrate works on a persistent store")
    url = opener.url
    config = tmp_path / "g.toml"
    config.write_text((FIXTURE / "groupspec.toml").read_text())
    assert main(["replay", str(FIXTURE / "stream.jsonl"), "--config", str(config), "--out", str(tmp_path / "r"),
                 "--store", url]) == 0

    def run(*args: str, with_config: Path = config) -> int:
        return main(["groups", "migrate", "--config", str(with_config), "--store", url, *args])

    run.url, run.config, run.tmp = url, config, tmp_path
    return run


def write_map(tmp_path: Path, text: str) -> str:
    path = tmp_path / "map.csv"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, problem", [
    ("1,hh_maple,hh_oak\n1,hh_oak,hh_maple\n", "map.csv:2: a cycle (hh_oak -> hh_maple -> hh_oak)"),
    ("1,hh_nowhere,hh_oak\n", "map.csv:1: old id 1:hh_nowhere is unknown to the store"),
    ("2,12345,ACCT-1\n", "map.csv:1: new id: group id 'ACCT-1' does not match ^(hh|acct)_[a-z0-9]+$"),
    ("1,hh_maple,hh_oak,rename\n", "map.csv:1: rename to 'hh_oak', which the store knows already"),
    ("1,hh_maple,hh_new,merge\n", "map.csv:1: merge into 'hh_new', which the store does not know"),
    ("1,hh_maple,hh_oak,swap\n", "map.csv:1: mode: expected rename | merge (or nothing), got 'swap'"),
    ("x,hh_maple,hh_oak\n", "map.csv:1: object_type_id: expected a positive integer, got 'x'"),
    ("1,hh_maple,hh_oak,merge,yesterday\n", "map.csv:1: at: expected an ISO-8601 time, got 'yesterday'"),
    ("1,hh_maple\n", "map.csv:1: expected object_type_id,old_id,new_id[,mode][,at], got 2 columns"),
])
def test_a_bad_row_is_named_exit_2_and_nothing_changes(built, capsys, text, problem):
    assert built("--map", write_map(built.tmp, text), "--deliver") == 2
    assert problem in capsys.readouterr().err
    assert open_store(built.url).migration_count() == 0


def test_dry_run_writes_the_plan_and_changes_nothing(built, capsys):
    path = write_map(built.tmp, "object_type_id,old_id,new_id\n1,hh_maple,hh_oak\n2,12345,acct_12345\n")
    assert built("--map", path, "--at", "2026-03-10T00:00:00Z", "--dry-run", "--out", str(built.tmp / "plan")) == 0
    ops = [json.loads(line) for line in (built.tmp / "plan" / "customerio.jsonl").read_text().splitlines()]
    assert [(op["action"], op["identifiers"]["object_id"]) for op in ops] == [
        ("identify", "hh_oak"), ("add_relationships", "hh_oak"), ("delete", "hh_maple"),
        ("identify", "acct_12345"), ("add_relationships", "acct_12345"), ("delete", "12345")]
    report = json.loads((built.tmp / "plan" / "migration.json").read_text())
    assert report[0]["mode"] == "merge" and report[0]["members_moved"] == ["u:user_priya", "u:user_sam"]
    assert report[0]["traits"]["conflicting"] == [{"trait": "plan_type", "old": "basic", "new": "family",
                                                   "kept": "family"}]
    assert report[1]["mode"] == "rename" and report[1]["traits"]["carried"] == {"company": "Northwind"}  # at `at`
    assert ops[3]["attributes"] == {"company": "Northwind Traders"}  # the new object as it is now
    assert open_store(built.url).migration_count() == 0


@pytest.mark.parametrize("keep_old", [False, True])
def test_deliver_then_verify_is_clean_and_a_second_deliver_sends_nothing(built, cio, capsys, keep_old):
    config = built.tmp / "live.toml"
    config.write_text(built.config.read_text() + f'\n[customerio]\nsite_id = "site-standin"\n'
                      f'api_key = "key-standin-not-a-real-secret"\nurl = "{cio.url}"\n'
                      f'dead_letter = "{built.tmp / "dead.jsonl"}"\napp_api_key = "app-key-standin-not-a-real-secret"\n')
    with AppApiStandin() as app:
        config.write_text(config.read_text() + f'app_url = "{app.url}"\n')
        replayed = [json.loads(line) for line in (built.tmp / "r" / "customerio.jsonl").read_text().splitlines()]
        app.apply(replayed)  # what Customer.io holds before: the stream as it was sent
        path = write_map(built.tmp, "1,hh_maple,hh_oak\n2,12345,acct_12345\n")
        extra = ["--keep-old"] if keep_old else []
        assert built("--map", path, "--deliver", *extra, with_config=config) == 0
        sent = list(cio.accepted)
        assert [op["action"] for op in sent][-1] == ("identify" if keep_old else "delete")
        app.apply(sent)
        verify = ["verify", "--config", str(config), "--store", built.url, "--json", str(built.tmp / "v.json")]
        assert main(verify) == 0, capsys.readouterr().out
        checked = {g["group_id"]: g["status"] for g in json.loads((built.tmp / "v.json").read_text())["groups"]}
        assert checked == {"hh_maple": "ok", "hh_oak": "ok", "12345": "ok", "acct_12345": "ok"}
        assert (("1", "hh_maple") in app.objects) is keep_old
        assert built("--map", path, "--deliver", *extra, with_config=config) == 0
        assert cio.accepted == sent  # nothing new
        assert '"recorded_before":2' in capsys.readouterr().out


def test_replay_needs_a_time_on_every_row(tmp_path, capsys):
    path = write_map(tmp_path, "1,hh_maple,hh_oak\n")
    assert main(["replay", str(FIXTURE / "stream.jsonl"), "--config", str(FIXTURE / "groupspec.toml"), "--out",
                 str(tmp_path / "o"), "--migrations", path]) == 2
    assert "map.csv:1: no at" in capsys.readouterr().err


def test_a_replayed_row_the_store_refuses_stops_the_replay_naming_it(tmp_path, capsys):
    path = write_map(tmp_path, "1,hh_nowhere,hh_oak,,2026-03-10T00:00:00Z\n")
    assert main(["replay", str(FIXTURE / "stream.jsonl"), "--config", str(FIXTURE / "groupspec.toml"), "--out",
                 str(tmp_path / "o"), "--migrations", path]) == 2
    assert "map.csv:1: old id 1:hh_nowhere is unknown to the store" in capsys.readouterr().err


# seeing that a migration is needed

def test_the_report_lists_a_group_whose_members_all_moved_to_one_other_group(tmp_path, capsys):
    lines = [{"type": "group", "userId": user, "groupId": group, "timestamp": f"2026-03-{day:02d}T00:00:00Z",
              "messageId": f"{user}-{group}"}
             for user, group, day in (("u1", "hh_old", 1), ("u2", "hh_old", 1), ("u1", "hh_new", 20), ("u2", "hh_new", 22),
                                      ("u3", "hh_x", 1), ("u4", "hh_x", 1), ("u3", "hh_y", 5), ("u4", "hh_z", 5),
                                      ("u5", "hh_p", 1), ("u6", "hh_p", 1), ("u5", "hh_q", 2), ("u6", "hh_q", 28))]
    stream = tmp_path / "s.jsonl"
    stream.write_text("".join(json.dumps(line) + "\n" for line in lines))
    config = tmp_path / "g.toml"
    config.write_text('[contract]\nid_change_window = "7d"\n')
    assert main(["replay", str(stream), "--config", str(config), "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "o"), "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "hh_old" in printed and "hh_new" in printed
    assert "hh_x" not in printed and "hh_p" not in printed  # two groups / more than 7 days apart


def test_without_migrations_a_message_reads_the_store_directly():
    """The per-message path costs nothing more while no migration is recorded (and reads through them after)."""
    raw = MemoryStore()
    store = Migrated(raw)
    assert store.lookup == raw.lookup and store.traits_at == raw.traits_at
    migrate(store, Migration("1", "a", "b", "rename", T0))
    assert store.lookup != raw.lookup
