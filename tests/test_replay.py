"""`groupspec replay` and `groupspec quarantine replay` end to end: the four outputs, gzip input, --expect,
exit codes, and replaying the quarantine after a config fix."""

from __future__ import annotations

import gzip
import json

import orjson
import pytest
from core_support import at, group, identify, track
from groupspec.plugin.cli import main

CONFIG = """
[contract]
version = "2026-11"
group_id_pattern = "^hh_[a-z0-9]+$"
require_group = ["Order Placed"]

[sources.web]
write_key = "wk_web"
[sources.app]
write_key = "wk_app"
"""

STREAM = [
    group("alice", "hh_1", 1, plan="pro"),
    track("alice", "Order Placed", 2),
    track("alice", "Order Placed", 2, context={"groupId": "bob@example.com"}),  # invalid: dropped
    track("bob", "Order Placed", 2, properties={"group_id": "hh_2"}),
    track("carol", "Order Placed", 2),                                          # flagged missing_group_id
    {**identify("dave", 3), "writeKey": "wk_app"},
    {"batch": [track("alice", "Viewed", 3), track("erin", "Viewed", 3, context={"groupId": "hh_1"})],
     "context": {"library": {"name": "analytics-python"}}},
]
LINES = [orjson.dumps(m) for m in STREAM] + [b"this is not json", b"", b"[1, 2]"]


@pytest.fixture
def files(tmp_path):
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(LINES) + b"\n")
    config = tmp_path / "groupspec.toml"
    config.write_text(CONFIG)
    return stream, config


def replay(*args) -> int:
    return main(["replay", *map(str, args)])


def jsonl(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_replay_writes_the_four_outputs(files, tmp_path, capsys):
    stream, config = files
    out = tmp_path / "out"
    assert replay(stream, "--config", config, "--out", out) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((out / "summary.json").read_text())
    assert printed == summary
    assert summary == {
        "received": 10, "forwarded": 7, "quarantined": 3,  # 8 messages (batch members count) + 2 bad lines
        "violations": {"invalid_group_id": 1, "malformed": 2, "missing_group_id": 1},
        "resolution": {"explicit": 2, "property": 1, "membership": 2, "unresolved": 2},
    }
    forwarded = jsonl(out / "forwarded.jsonl")
    assert [m["type"] for m in forwarded] == ["group", "track", "track", "track", "identify", "track", "track"]
    assert [m.get("userId") for m in forwarded] == ["alice", "alice", "bob", "carol", "dave", "alice", "erin"]
    assert all(m["context"]["groupspec"]["contract"] == "2026-11" for m in forwarded)
    assert forwarded[1]["context"]["groupId"] == "hh_1"
    assert forwarded[3]["context"]["groupspec"]["violations"][0]["code"] == "missing_group_id"
    assert forwarded[5]["context"]["library"] == {"name": "analytics-python"}
    ops = jsonl(out / "customerio.jsonl")
    assert [(op["type"], op["action"]) for op in ops] == [
        ("object", "identify"), ("person", "event"), ("person", "event"), ("person", "event"),
        ("person", "identify"), ("person", "event"), ("person", "event")]
    quarantine = jsonl(out / "quarantine.jsonl")
    assert [q["message"] for q in quarantine] == [STREAM[2], "this is not json", [1, 2]]
    assert all(set(q) == {"message", "source", "violations", "received_at"} for q in quarantine)
    assert quarantine[0]["violations"][0]["code"] == "invalid_group_id"
    assert quarantine[0]["received_at"] == "2026-01-03T00:00:00.000Z"  # stream time, not the wall clock


def test_source_comes_from_the_write_key_else_from_dash_dash_source(tmp_path, files):
    _, config = files
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"\n".join(orjson.dumps(m) for m in [
        {**track("u", days=1), "context": {"groupId": "x y"}},
        {**track("u", days=1), "context": {"groupId": "x y"}, "writeKey": "wk_app"},
    ]))
    assert replay(stream, "--config", config, "--out", tmp_path / "o", "--source", "web") == 0
    assert [q["source"] for q in jsonl(tmp_path / "o" / "quarantine.jsonl")] == ["web", "app"]


def test_gzip_input_gives_the_same_outputs(files, tmp_path):
    stream, config = files
    gz = tmp_path / "stream.jsonl.gz"
    gz.write_bytes(gzip.compress(stream.read_bytes()))
    assert replay(stream, "--config", config, "--out", tmp_path / "plain") == 0
    assert replay(gz, "--config", config, "--out", tmp_path / "gz") == 0
    for name in ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "gz" / name).read_bytes()


def test_several_inputs_are_one_stream_in_order(files, tmp_path):
    stream, config = files
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl.gz"
    first.write_bytes(b"\n".join(LINES[:3]) + b"\n")
    second.write_bytes(gzip.compress(b"\n".join(LINES[3:]) + b"\n"))
    assert replay(stream, "--config", config, "--out", tmp_path / "one") == 0
    assert replay(first, second, "--config", config, "--out", tmp_path / "two") == 0
    for name in ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_expect_exits_0_when_equal_and_1_with_a_diff_when_not(files, tmp_path, capsys):
    stream, config = files
    expected = tmp_path / "expected"
    assert replay(stream, "--config", config, "--out", expected) == 0
    capsys.readouterr()
    assert replay(stream, "--config", config, "--out", tmp_path / "again", "--expect", expected) == 0
    assert "matches" in capsys.readouterr().out

    lines = (expected / "customerio.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace('"Order Placed"', '"Order Cancelled"')
    (expected / "customerio.jsonl").write_text("\n".join(lines) + "\n")
    assert replay(stream, "--config", config, "--out", tmp_path / "third", "--expect", expected) == 1
    captured = capsys.readouterr()
    assert '-{"type":"person","action":"event"' in captured.out and "Order Cancelled" in captured.out
    assert '+{"type":"person","action":"event"' in captured.out and "customerio.jsonl" in captured.out
    assert "differs" in captured.err


def test_expect_notices_a_changed_summary(files, tmp_path, capsys):
    stream, config = files
    expected = tmp_path / "expected"
    assert replay(stream, "--config", config, "--out", expected) == 0
    summary = json.loads((expected / "summary.json").read_text())
    summary["received"] += 1
    (expected / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert replay(stream, "--config", config, "--out", tmp_path / "o", "--expect", expected) == 1
    assert "summary.json" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["bad config", "missing config", "missing input", "unknown source", "bad store"])
def test_usage_and_config_errors_exit_2_without_a_traceback(files, tmp_path, capsys, problem):
    stream, config = files
    args = [stream, "--config", config, "--out", tmp_path / "o"]
    if problem == "bad config":
        config.write_text('[contract]\ngroup_id_pattern = "(("')
    elif problem == "missing config":
        args[2] = tmp_path / "nope.toml"
    elif problem == "missing input":
        args[0] = tmp_path / "nope.jsonl"
    elif problem == "unknown source":
        args += ["--source", "mobile"]
    else:
        args += ["--store", "postgres://db"]
    assert replay(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("groupspec: config error:") and "Traceback" not in err
    expected_word = {"bad config": "group_id_pattern", "missing config": "nope.toml", "missing input": "nope.jsonl",
                     "unknown source": "mobile", "bad store": "--store"}[problem]
    assert expected_word in err


def test_a_gzip_file_that_is_not_gzip_is_an_error_not_a_traceback(files, tmp_path, capsys):
    _, config = files
    fake = tmp_path / "s.jsonl.gz"
    fake.write_bytes(b'{"type": "track"}\n')
    assert replay(fake, "--config", config, "--out", tmp_path / "o") != 0
    assert "Traceback" not in capsys.readouterr().err


def test_quarantine_replay_after_a_config_fix_forwards_what_was_dropped(files, tmp_path, capsys):
    stream, config = files
    out = tmp_path / "out"
    assert replay(stream, "--config", config, "--out", out) == 0
    fixed = tmp_path / "fixed.toml"
    fixed.write_text(CONFIG.replace('group_id_pattern = "^hh_[a-z0-9]+$"', "")
                     + '[contract.actions]\ninvalid_group_id = "flag"\n')
    again = tmp_path / "again"
    assert main(["quarantine", "replay", str(out / "quarantine.jsonl"), "--config", str(fixed),
                 "--out", str(again)]) == 0
    summary = json.loads((again / "summary.json").read_text())
    assert (summary["received"], summary["forwarded"], summary["quarantined"]) == (3, 1, 2)  # not-JSON stays
    (forwarded,) = jsonl(again / "forwarded.jsonl")
    assert forwarded["context"]["groupId"] == "bob@example.com"
    assert forwarded["context"]["groupspec"]["violations"][0]["code"] == "invalid_group_id"
    assert [q["message"] for q in jsonl(again / "quarantine.jsonl")] == ["this is not json", [1, 2]]
    (op,) = jsonl(again / "customerio.jsonl")
    assert op["attributes"]["group_id"] == "bob@example.com"


def test_quarantine_replay_keeps_each_records_source(files, tmp_path):
    _, config = files
    records = tmp_path / "q.jsonl"
    records.write_bytes(orjson.dumps({"message": {**track("u", days=1), "context": {"groupId": "x y"}},
                                      "source": "app", "violations": [], "received_at": at(1)}) + b"\n")
    assert main(["quarantine", "replay", str(records), "--config", str(config), "--out", str(tmp_path / "o")]) == 0
    assert jsonl(tmp_path / "o" / "quarantine.jsonl")[0]["source"] == "app"


def test_quarantine_replay_of_a_missing_file_exits_2(files, tmp_path, capsys):
    _, config = files
    assert main(["quarantine", "replay", str(tmp_path / "nope.jsonl"), "--config", str(config),
                 "--out", str(tmp_path / "o")]) == 2
    assert "nope.jsonl" in capsys.readouterr().err



def test_a_plain_replay_never_writes_the_configs_store(files, tmp_path, capsys):
    """Issue 18, one store rule: `replay` (and `quarantine replay` without --deliver) uses a persistent store only
    when --store names it; `[store]` is the service's, and stays untouched."""
    stream, config = files
    service_db = tmp_path / "service.db"
    config.write_text(CONFIG + f'[store]\nurl = "sqlite:///{service_db}"\n')
    assert replay(stream, "--config", config, "--out", tmp_path / "out") == 0
    assert not service_db.exists()
    assert main(["quarantine", "replay", str(tmp_path / "out" / "quarantine.jsonl"), "--config", str(config),
                 "--out", str(tmp_path / "again")]) == 0
    assert not service_db.exists()
    named = tmp_path / "named.db"
    assert replay(stream, "--config", config, "--out", tmp_path / "out2", "--store", f"sqlite:///{named}") == 0
    assert named.exists() and not service_db.exists()
