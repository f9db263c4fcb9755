"""Hostile input through `groupspec replay` (issue #9): the `malformed` row's input limits (docs/contract.md: depth,
times, batch members, 64-bit integers), clock skew and dates in the future, and a bounded fuzz of random lines.
Every bad line is one quarantine record and replay still exits 0 with its `summary.json`."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from groupspec.plugin.cli import main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_support import examples
from hostile_support import JSON, MEMBER, dumps, nested

CONFIG = """
[contract]
version = "hostile-1"
group_id_pattern = "^hh_[a-z0-9]+$"
[contract.group_traits]
plan = { type = "string", enum = ["basic", "pro"] }
[sources.web]
write_key = "wk_web"
"""


def unix(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(timezone.utc).timestamp())


def track(user: str, ts: str, **extra) -> dict:
    return {"type": "track", "userId": user, "event": "Viewed", "messageId": f"m_{user}", "timestamp": ts, **extra}


def run(tmp_path: Path, lines: list, config: str = CONFIG) -> tuple[int, Path]:
    """Replay `lines` (dicts are written as JSON, bytes as they are); (exit code, output folder)."""
    stream, cfg, out = tmp_path / "in.jsonl", tmp_path / "groupspec.toml", tmp_path / "out"
    stream.write_bytes(b"\n".join(line if isinstance(line, bytes) else dumps(line) for line in lines) + b"\n")
    cfg.write_text(config)
    return main(["replay", str(stream), "--config", str(cfg), "--out", str(out), "--source", "web"]), out


def jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_bytes().split(b"\n") if line] if path.exists() else []


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def codes(record: dict) -> list[str]:
    return [v["code"] for v in record["violations"]]


# -- depth ---------------------------------------------------------------------------------------------------------

def test_a_line_nested_300_deep_is_quarantined_and_replay_finishes(tmp_path):
    code, out = run(tmp_path, [nested(300), track("ann", "2026-01-01T10:00:00Z")])
    assert code == 0
    assert summary(out)["received"] == 2 and summary(out)["forwarded"] == 1
    (record,) = jsonl(out / "quarantine.jsonl")
    assert codes(record) == ["malformed"]
    assert "nested deeper than 64 levels" in record["violations"][0]["message"]


def test_a_line_nested_64_deep_is_still_forwarded(tmp_path):
    code, out = run(tmp_path, [nested(64)])
    assert code == 0 and summary(out)["forwarded"] == 1
    (op,) = jsonl(out / "customerio.jsonl")
    value = op["attributes"]
    for _ in range(62):
        value = value["a"]
    assert value == {"leaf": 1}


# -- times ---------------------------------------------------------------------------------------------------------

def test_a_time_in_utc_year_10000_is_malformed_and_a_later_record_still_written(tmp_path):
    code, out = run(tmp_path, [track("ann", "9999-12-31T23:59:59-14:00"), b"not json"])
    assert code == 0
    records = jsonl(out / "quarantine.jsonl")
    assert [codes(r) for r in records] == [["malformed"], ["malformed"]]
    assert records[0]["violations"][0]["field"] == "timestamp"
    assert summary(out)["quarantined"] == 2


def test_lowercase_t_and_z_are_rfc3339_and_give_the_same_time(tmp_path):
    code, out = run(tmp_path, [track("ann", "2026-01-01t10:00:00z"), track("bob", "2026-01-01T10:00:00Z")])
    assert code == 0 and summary(out)["forwarded"] == 2
    assert [op["timestamp"] for op in jsonl(out / "customerio.jsonl")] == [unix("2026-01-01T10:00:00+00:00")] * 2


def test_a_time_before_1970_is_malformed(tmp_path):
    code, out = run(tmp_path, [track("ann", "1969-12-31T23:59:59Z")])
    assert code == 0 and summary(out)["forwarded"] == 0
    (record,) = jsonl(out / "quarantine.jsonl")
    assert codes(record) == ["malformed"]


# -- clock skew and the future ---------------------------------------------------------------------------------

def group(plan: str, ts: str, received: str, mid: str) -> dict:
    return {"type": "group", "userId": "ann", "groupId": "hh_1", "messageId": mid, "timestamp": ts,
            "receivedAt": received, "traits": {"plan": plan}}


def test_a_group_call_dated_2099_is_future_timestamp_and_freezes_nothing(tmp_path):
    code, out = run(tmp_path, [group("pro", "2099-01-01T00:00:00Z", "2026-03-01T00:00:00Z", "g1"),
                               group("basic", "2026-03-02T00:00:00Z", "2026-03-02T00:00:01Z", "g2")])
    assert code == 0
    (record,) = jsonl(out / "quarantine.jsonl")
    assert codes(record) == ["future_timestamp"]
    (forwarded,) = jsonl(out / "forwarded.jsonl")
    assert forwarded["messageId"] == "g2"
    assert "stale_group_update" not in [v["code"] for v in forwarded["context"]["groupspec"].get("violations", [])]
    (op,) = jsonl(out / "customerio.jsonl")
    assert op["attributes"]["plan"] == "basic"


def test_future_timestamp_flagged_takes_the_time_it_was_received(tmp_path):
    config = CONFIG + '[contract.actions]\nfuture_timestamp = "flag"\n'
    code, out = run(tmp_path, [track("ann", "2099-01-01T00:00:00Z", receivedAt="2026-03-01T00:00:00Z")], config)
    assert code == 0
    (forwarded,) = jsonl(out / "forwarded.jsonl")
    assert [v["code"] for v in forwarded["context"]["groupspec"]["violations"]] == ["future_timestamp"]
    (op,) = jsonl(out / "customerio.jsonl")
    assert op["timestamp"] == unix("2026-03-01T00:00:00+00:00")


def test_clock_skew_is_corrected_by_received_at_minus_sent_at(tmp_path):
    message = {"type": "track", "userId": "ann", "event": "Viewed", "messageId": "skew",
               "originalTimestamp": "2026-01-01T10:00:00Z", "sentAt": "2026-01-01T10:05:00Z",
               "receivedAt": "2026-01-01T10:00:30Z"}  # the device clock runs 4.5 minutes fast
    code, out = run(tmp_path, [message])
    assert code == 0
    (op,) = jsonl(out / "customerio.jsonl")
    assert op["timestamp"] == unix("2026-01-01T09:55:30+00:00")


# -- amplification -----------------------------------------------------------------------------------------------

def test_a_batch_of_200k_zeros_is_one_quarantine_record(tmp_path):
    code, out = run(tmp_path, [b'{"batch": [' + b",".join([b"0"] * 200_000) + b"]}"])
    assert code == 0
    assert len(jsonl(out / "quarantine.jsonl")) == 1
    assert summary(out)["quarantined"] == 1


def test_a_batch_of_3000_empty_members_is_one_quarantine_record(tmp_path):
    code, out = run(tmp_path, [{"batch": [{}] * 3000}])
    assert code == 0
    (record,) = jsonl(out / "quarantine.jsonl")
    assert codes(record) == ["malformed"]


# -- numbers -----------------------------------------------------------------------------------------------------

def test_an_integer_beyond_64_bits_is_malformed_with_a_reason(tmp_path):
    code, out = run(tmp_path, [track("ann", "2026-01-01T10:00:00Z", properties={"n": 2**70})])
    assert code == 0 and summary(out)["forwarded"] == 0
    (record,) = jsonl(out / "quarantine.jsonl")
    assert codes(record) == ["malformed"]
    assert "64 bits" in record["violations"][0]["message"]


def test_integers_up_to_64_bits_go_out_exactly(tmp_path):
    code, out = run(tmp_path, [track("ann", "2026-01-01T10:00:00Z", properties={"n": 2**63}),
                               track("bob", "2026-01-01T10:00:00Z", properties={"n": 2**64 - 1})])
    assert code == 0
    assert [op["attributes"]["n"] for op in jsonl(out / "customerio.jsonl")] == [2**63, 2**64 - 1]


# -- fuzz ----------------------------------------------------------------------------------------------------------

LINE = st.one_of(
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b" ")),
    JSON.map(dumps),
    MEMBER.map(dumps),
    st.lists(MEMBER | JSON, max_size=5).map(lambda members: dumps({"batch": members})),
    st.integers(min_value=2**63, max_value=2**80).map(lambda n: b'{"type": "track", "userId": "u", "event": "e", '
                                                                 b'"properties": {"n": %d}}' % n),
    st.integers(min_value=2, max_value=300).map(lambda n: dumps(nested(n))),
)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(LINE, min_size=1, max_size=8))
def test_fuzz_replay_never_crashes_and_counts_every_message(lines):
    with tempfile.TemporaryDirectory() as folder:
        code, out = run(Path(folder), lines)
        assert code == 0
        totals = summary(out)
        assert totals["received"] == totals["forwarded"] + totals["quarantined"]
        assert totals["quarantined"] == len(jsonl(out / "quarantine.jsonl"))
        assert totals["forwarded"] == len(jsonl(out / "forwarded.jsonl"))
