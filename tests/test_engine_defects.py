"""Regression tests for the defects of issue #8 in the offline doors (replay, backfill); the service's are in
test_service_faults.py. Each failed before the engine refactor."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from groupspec.plugin.cli import main

DEPTH = 300  # orjson.loads accepts up to 1024 levels; orjson.dumps refuses more than 255


def deep_message(depth: int = DEPTH) -> bytes:
    """A track call whose properties nest `depth` levels: readable, but it cannot be written out again."""
    inner = b'"x"'
    for _ in range(depth):
        inner = b'{"a":' + inner + b"}"
    return b'{"type":"track","userId":"u","event":"E","messageId":"deep","timestamp":"2026-01-01T00:00:00Z",' \
           b'"properties":' + inner + b"}"


def good(n: int) -> bytes:
    return orjson.dumps({"type": "track", "userId": f"user_{n}", "event": "Viewed", "messageId": f"m{n}",
                         "timestamp": f"2026-01-01T00:0{n}:00Z"})


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_deep_message_is_readable_but_not_writable():  # the premise of the next test
    loaded = orjson.loads(deep_message())
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(loaded)


def test_replay_quarantines_a_message_that_cannot_be_serialised_and_goes_on(tmp_path):
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join([good(1), deep_message(), good(2)]) + b"\n")
    config = tmp_path / "groupspec.toml"
    config.write_text('[contract]\nversion = "t"\n')
    out = tmp_path / "out"
    assert main(["replay", str(stream), "--config", str(config), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["received"], summary["forwarded"], summary["quarantined"]) == (3, 2, 1)
    assert summary["violations"] == {"malformed": 1}
    assert [m["messageId"] for m in jsonl(out / "forwarded.jsonl")] == ["m1", "m2"]
    (record,) = jsonl(out / "quarantine.jsonl")
    assert [v["code"] for v in record["violations"]] == ["malformed"]
    kept = record["message"]  # nothing is lost: the message itself, or its JSON text where orjson cannot write it
    assert (json.loads(kept) if isinstance(kept, str) else kept) == json.loads(deep_message())


# -- rollups flushed at the end of a run use the message's (source) contract ----------------------------------

ROLLUPS_IN_SOURCE_ONLY = """
[contract]
version = "t"
group_id_pattern = "^hh_[a-z0-9]+$"
rollup_interval = "5m"

[sources.web]
write_key = "wk_web"
[sources.web.contract.rollups]
last_order_at = { event = "Order Placed", value = "timestamp" }
last_order_total = { event = "Order Placed", value = "properties.total" }
orders_30d = { event = "Order Placed", count_window = "30d" }
"""

T = "2026-01-01T00:0{}:00Z"
HOUSEHOLD = [
    {"type": "group", "userId": "alice", "groupId": "hh_1", "timestamp": T.format(0), "messageId": "g"},
    *({"type": "track", "userId": "alice", "event": "Order Placed", "properties": {"total": total},
       "timestamp": T.format(minute), "messageId": f"o{minute}"} for minute, total in ((1, 10.0), (2, 20.0),
                                                                                       (3, 30.0))),
]
# All three orders fall in one 5-minute slot and nothing follows them: only the end-of-run flush sends the rollup.
ROLLUP = {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "hh_1"},
          "attributes": {"last_order_at": 1767225780, "last_order_total": 30.0, "orders_30d": 3}}  # 00:03:00Z


@pytest.fixture
def household(tmp_path) -> tuple[str, str]:
    stream = tmp_path / "stream.jsonl"
    stream.write_bytes(b"\n".join(orjson.dumps(m) for m in HOUSEHOLD) + b"\n")
    config = tmp_path / "groupspec.toml"
    config.write_text(ROLLUPS_IN_SOURCE_ONLY)
    return str(stream), str(config)


def rollup_updates(out: Path) -> list[dict]:
    return [op for op in jsonl(out / "customerio.jsonl")
            if op["type"] == "object" and op["action"] == "identify" and op.get("attributes")]


def test_replay_flushes_rollups_with_the_source_contract(household, tmp_path):
    stream, config = household
    out = tmp_path / "out"
    assert main(["replay", stream, "--config", config, "--source", "web", "--out", str(out)]) == 0
    assert rollup_updates(out) == [ROLLUP]


def test_backfill_flushes_rollups_with_the_source_contract(household, tmp_path):
    stream, config = household
    out = tmp_path / "out"
    assert main(["backfill", stream, "--config", config, "--source", "web", "--dry-run", "--out", str(out),
                 "--at", "2026-01-02T00:00:00Z", "--quiet"]) == 0
    assert rollup_updates(out) == [ROLLUP]


# -- a bad --store is a usage error in every door ----------------------------------------------------------------

def test_backfill_with_an_unknown_store_scheme_exits_2_naming_the_option(household, tmp_path, capsys):
    stream, config = household
    code = main(["backfill", stream, "--config", config, "--store", "bogus://x", "--dry-run",
                 "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--store" in err and "bogus://x" in err
    assert "Traceback" not in err
