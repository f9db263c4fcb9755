"""`groupspec backfill`: rows and spec messages through the contract, dry run to files, live to the Customer.io
stand-in, and resuming after an interruption with every operation delivered exactly once."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
from groupspec.middleware.config import ConfigError, parse_config
from groupspec.plugin.backfill.checkpoint import Checkpoint, Position
from groupspec.plugin.backfill.inputs import count
from groupspec.plugin.backfill.interrupts import Interrupts
from groupspec.plugin.backfill.progress import progress_bar
from groupspec.plugin.backfill.run import Backfill
from groupspec.plugin.cli import main
from groupspec.plugin.customerio.delivery import Delivery
from groupspec.plugin.sender import SendFailed, SendReport
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis_support import examples

CONTRACT = """
[contract]
version = "2026-11"
group_id_pattern = "^hh_[a-z0-9]+$"
require_group = ["Order Placed"]
[contract.group_traits]
plan_type = { type = "string", enum = ["basic", "family", "pro"] }
store_credit_balance = { type = "number" }
seats = { type = "integer" }
paying = { type = "boolean" }
"""

CSV = """user_id,anonymous_id,group_id,object_type_id,plan_type,store_credit_balance,seats,paying,name,timestamp
user_1,,hh_aaa,,family,15.5,3,yes,Aaa household,2026-01-01T00:00:00Z
user_2,,hh_aaa,,,,,,,
,anon_9,hh_bbb,2,basic,,,,,
,,hh_ccc,,basic,,,,,
user_4,,,,basic,,,,,
user_5,,hh_ddd,,pro,,,,,,surplus
user_6,,Bad Id,,,,,,,
"""


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def config(tmp_path) -> str:
    return write(tmp_path, "groupspec.toml", CONTRACT + f'[quarantine]\npath = "{tmp_path / "q.jsonl"}"\n')


def dry_run(inputs: list[str], config: str, out: Path, *extra: str) -> int:
    return main(["backfill", *inputs, "--config", config, "--dry-run", "--out", str(out),
                 "--at", "2026-11-28T00:00:00Z", "--quiet", *extra])


def test_dry_run_of_csv_rows(tmp_path, config, capsys):
    assert dry_run([write(tmp_path, "accounts.csv", CSV)], config, tmp_path / "out") == 0
    ops = lines(tmp_path / "out" / "customerio.jsonl")
    assert ops[0] == {"type": "object", "action": "identify", "identifiers": {"object_type_id": "1", "object_id": "hh_aaa"},
                      "attributes": {"plan_type": "family", "store_credit_balance": 15.5, "seats": 3, "paying": True,
                                     "name": "Aaa household"},
                      "cio_relationships": [{"identifiers": {"id": "user_1"}}]}
    assert ops[1]["attributes"] == {}  # empty cells are left out, never sent as "" (which erases in Customer.io)
    assert ops[2] == {"type": "object", "action": "identify_anonymous",
                      "identifiers": {"object_type_id": "2", "object_id": "hh_bbb"}, "attributes": {"plan_type": "basic"},
                      "cio_relationships": [{"identifiers": {"anonymous_id": "anon_9"}}]}
    assert len(ops) == 3
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary == {"received": 7, "forwarded": 3, "quarantined": 4, "operations": 3, "skipped": 0,
                       "violations": {"invalid_group_id": 1, "malformed": 3}}
    assert json.loads(capsys.readouterr().out) == summary


def test_bad_rows_are_quarantined_with_their_reasons(tmp_path, config):
    assert dry_run([write(tmp_path, "accounts.csv", CSV)], config, tmp_path / "out") == 0
    records = lines(tmp_path / "out" / "quarantine.jsonl")
    reasons = [(r["violations"][0]["code"], r["violations"][0]["message"]) for r in records]
    assert reasons == [
        ("malformed", "accounts.csv:4: row has neither user_id nor anonymous_id"),
        ("malformed", "accounts.csv:5: row has no group_id"),
        ("malformed", "accounts.csv:6: row has 1 more cell(s) than the header"),
        ("invalid_group_id", "group id 'Bad Id' contains whitespace; use a stable id"),
    ]
    assert records[1]["message"]["user_id"] == "user_4"  # the row itself, to fix and backfill again
    assert records[2]["message"]["(extra cells)"] == ["surplus"]
    assert records[3]["message"] == {"type": "group", "userId": "user_6", "groupId": "Bad Id", "traits": {}}
    assert all(r["received_at"] == "2026-11-28T00:00:00.000Z" for r in records)


STREAM = [
    {"user_id": "user_1", "group_id": "hh_aaa", "plan_type": "family", "timestamp": "2026-01-01T00:00:00Z"},
    {"type": "track", "userId": "user_1", "event": "Order Placed", "messageId": "m1",
     "timestamp": "2026-02-01T00:00:00Z"},
    {"type": "track", "userId": "user_2", "event": "Order Placed", "messageId": "m2",
     "timestamp": "2026-02-01T00:00:00Z"},
    {"batch": [{"type": "group", "userId": f"user_{i}", "groupId": "hh_bbb", "messageId": f"g{i}"}
               for i in (3, 4, 5)], "context": {"library": {"name": "export"}}},
    {"user_id": "user_6", "group_id": "hh_ccc", "plan_type": "gold"},
]


def jsonl(tmp_path: Path, name: str = "export.jsonl", extra: str = "") -> str:
    return write(tmp_path, name, "".join(json.dumps(m) + "\n" for m in STREAM) + extra)


def test_dry_run_of_jsonl_mixes_messages_and_rows_through_the_contract(tmp_path, config):
    gz = tmp_path / "export.jsonl.gz"
    gz.write_bytes(gzip.compress(Path(jsonl(tmp_path, extra="{not json\n")).read_bytes()))
    assert dry_run([str(gz)], config, tmp_path / "out") == 0
    ops = lines(tmp_path / "out" / "customerio.jsonl")
    events = [op for op in ops if op["action"] == "event"]
    assert events[0]["attributes"] == {"group_id": "hh_aaa"}  # resolved from the row's membership
    assert events[1]["attributes"] == {}
    assert [op["identifiers"]["object_id"] for op in ops if op["type"] == "object"] == \
        ["hh_aaa", "hh_bbb", "hh_bbb", "hh_bbb", "hh_ccc"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["received"], summary["forwarded"], summary["quarantined"]) == (8, 7, 1)
    assert summary["violations"] == {"invalid_group_trait": 1, "malformed": 1, "missing_group_id": 1}


def test_usage_errors_exit_2(tmp_path, config, capsys):
    csv = write(tmp_path, "a.csv", CSV)
    assert main(["backfill", csv, "--config", config, "--dry-run"]) == 2
    assert main(["backfill", csv, "--config", config, "--dry-run", "--out", str(tmp_path / "o"),
                 "--checkpoint", str(tmp_path / "c.json")]) == 2
    assert main(["backfill", str(tmp_path / "missing.csv"), "--config", config, "--dry-run",
                 "--out", str(tmp_path / "o")]) == 2
    assert main(["backfill", csv, "--config", config]) == 2  # live without credentials
    err = capsys.readouterr().err
    assert "--dry-run and --out DIR go together" in err and "not resumable" in err
    assert "missing.csv: no such input file" in err and "customerio.site_id" in err


def reasons(out: Path) -> list[str]:
    return [r["violations"][0]["message"] for r in lines(out / "quarantine.jsonl")]


def objects(out: Path) -> list[str]:
    return [op["identifiers"]["object_id"] for op in lines(out / "customerio.jsonl")]


def test_an_oversized_row_is_quarantined_and_the_rows_after_it_still_run(tmp_path, config):
    # Python's csv stops a cell at 131,072 characters by default (csv.field_size_limit); a row over the bound is
    # quarantined, whether one cell is too big, a quoted cell spans lines, or many cells add up.
    text = ("user_id,group_id,name\n"
            "user_1,hh_1,one\n"
            f"user_2,hh_2,{'a' * 200_000}\n"                      # data row 2, line 3
            f'user_3,hh_3,"first\n{"b" * 200_000}\nlast"\n'       # data row 3, lines 4-6
            f"user_4,hh_4,{','.join(['c' * 30_000] * 5)}\n"       # data row 4, line 7: no cell over the csv limit
            "user_5,hh_5,five\n")
    assert dry_run([write(tmp_path, "big.csv", text)], config, tmp_path / "out") == 0
    got = reasons(tmp_path / "out")
    where = ["big.csv:2: line 3", "big.csv:3: lines 4-6", "big.csv:4: line 7"]
    assert [r.split(": the row is")[0] for r in got] == where
    assert all("over the 131,072-byte bound of a row" in r for r in got)
    assert objects(tmp_path / "out") == ["hh_1", "hh_5"]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert (summary["received"], summary["quarantined"]) == (5, 3)
    shown = lines(tmp_path / "out" / "quarantine.jsonl")[0]["message"]
    assert shown == {"(row text, first 1000 characters)": "user_2,hh_2," + "a" * 988}
    assert count(tmp_path / "big.csv") == 5


def test_an_undecodable_row_is_quarantined_naming_its_own_row(tmp_path, config):
    rows = [f"user_{i},hh_{i}\n".encode() for i in range(1, 6001)]
    rows[5000] = b"user_5001,hh_5001,caf\xe9\n"  # data row 5001, line 5002 (after the header)
    late = tmp_path / "late.csv"
    late.write_bytes(b"user_id,group_id,name\n" + b"".join(rows))
    early = tmp_path / "early.csv"  # the first data row: once reported as "cannot read the CSV header"
    early.write_bytes(b"user_id,group_id,name\nuser_1,hh_x,\xff\xfe\nuser_2,hh_y,ok\n")
    assert dry_run([str(late), str(early)], config, tmp_path / "out") == 0
    assert reasons(tmp_path / "out") == [
        "late.csv:5001: line 5002 is not UTF-8 (byte 0xe9 at byte 22 of the line; shown escaped as \\xe9)",
        "early.csv:1: line 2 is not UTF-8 (byte 0xff at byte 13 of the line; shown escaped as \\xff)",
    ]
    assert lines(tmp_path / "out" / "quarantine.jsonl")[0]["message"] == {
        "user_id": "user_5001", "group_id": "hh_5001", "name": "caf\\xe9"}
    assert objects(tmp_path / "out")[-2:] == ["hh_6000", "hh_y"]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["received"] == 6002


def test_unreadable_inputs_stop_with_exit_2_naming_the_file(tmp_path, config, capsys):
    not_gzip = tmp_path / "accounts.csv.gz"
    not_gzip.write_bytes(b"user_id,group_id\nuser_1,hh_1\n")
    whole = gzip.compress("".join(f"user_{i},hh_{i}\n" for i in range(20_000)).encode())
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(gzip.compress(b"user_id,group_id\n") + whole[:len(whole) // 2])
    bad_jsonl = tmp_path / "events.jsonl.gz"
    bad_jsonl.write_bytes(b"\x1f\x8b garbage")
    header = tmp_path / "header.csv"
    header.write_bytes(b"user_id,group_id,caf\xe9\nuser_1,hh_1,x\n")
    errors = {}
    for path in (not_gzip, truncated, bad_jsonl, header):
        assert dry_run([str(path)], config, tmp_path / "out") == 2, path
        errors[path] = capsys.readouterr().err
        assert f"{path}: " in errors[path] and "Traceback" not in errors[path], errors[path]
    assert "the CSV header: line 1 is not UTF-8" in errors[header]
    assert count(not_gzip) == 0  # the progress bar's total never raises: the run reports the file


def test_a_csv_header_that_repeats_a_column_is_refused_before_anything_is_sent(tmp_path, config, capsys):
    good = write(tmp_path, "good.csv", "user_id,group_id\nuser_1,hh_1\n")
    twice = write(tmp_path, "twice.csv", "user_id,group_id, group_id,plan_type\nuser_1,hh_1,hh_2,basic\n")
    assert dry_run([good, twice], config, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert f"{twice}: the CSV header repeats 'group_id' (columns 2, 3)" in err
    assert not (tmp_path / "out" / "customerio.jsonl").exists()


def live_config(tmp_path: Path, cio, api_key: str | None = None, batch_size: int = 2) -> str:
    return write(tmp_path, "live.toml", CONTRACT + f"""
[quarantine]
path = "{tmp_path / 'quarantine.jsonl'}"
[customerio]
url = "{cio.url}"
site_id = "{cio.site_id}"
api_key = "{api_key or cio.api_key}"
batch_size = {batch_size}
max_retries = 1
retry_base = 0.001
retry_cap = 0.002
rate_limit = 100000
dead_letter = "{tmp_path / 'dead.jsonl'}"
""")


def live(inputs: list[str], config: str, tmp_path: Path, *extra: str) -> int:
    return main(["backfill", *inputs, "--config", config, "--checkpoint", str(tmp_path / "checkpoint.json"),
                 "--at", "2026-11-28T00:00:00Z", "--quiet", *extra])


def expected_ops(tmp_path: Path, inputs: list[str], config: str) -> list[dict]:
    assert dry_run(inputs, config, tmp_path / "dry") == 0
    return lines(tmp_path / "dry" / "customerio.jsonl")


def test_live_backfill_delivers_what_the_dry_run_shows(tmp_path, cio, capsys):
    config = live_config(tmp_path, cio)
    inputs = [write(tmp_path, "accounts.csv", CSV), jsonl(tmp_path)]
    want = expected_ops(tmp_path, inputs, config)
    capsys.readouterr()
    assert live(inputs, config, tmp_path) == 0
    assert cio.accepted == want
    summary = json.loads(capsys.readouterr().out)
    assert (summary["delivered"], summary["dead_lettered"], summary["operations"]) == (len(want), 0, len(want))
    assert len(lines(tmp_path / "quarantine.jsonl")) == 4  # the CSV's bad rows, in the configured quarantine
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert checkpoint["complete"] is True


def test_live_rerun_of_a_complete_backfill_sends_nothing(tmp_path, cio, capsys):
    config = live_config(tmp_path, cio)
    inputs = [jsonl(tmp_path)]
    assert live(inputs, config, tmp_path) == 0
    sent = len(cio.accepted)
    assert live(inputs, config, tmp_path) == 0
    assert len(cio.accepted) == sent
    assert "already complete" in capsys.readouterr().err


def test_exhausted_retries_midway_then_resume_delivers_the_rest_exactly_once(tmp_path, cio, capsys):
    config = live_config(tmp_path, cio)
    inputs = [write(tmp_path, "accounts.csv", CSV), jsonl(tmp_path)]
    want = expected_ops(tmp_path, inputs, config)
    cio.script(200, count=3)  # three batches go through, then Customer.io fails past the retries
    cio.script(503, count=2)
    assert live(inputs, config, tmp_path) == 1
    err = capsys.readouterr().err
    assert "HTTP 503 after 1 retries" in err and "rerun the same command to resume" in err
    assert cio.accepted == want[:6]
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (checkpoint["path"], checkpoint["complete"]) == (str(Path(inputs[1]).resolve()), False)
    assert live(inputs, config, tmp_path) == 0
    assert cio.accepted == want
    quarantined = lines(tmp_path / "quarantine.jsonl")
    assert len(quarantined) == len({json.dumps(r, sort_keys=True) for r in quarantined})  # none written twice


def test_interrupt_inside_a_multi_operation_record_then_resume(tmp_path, cio, monkeypatch, capsys):
    config = live_config(tmp_path, cio, batch_size=2)
    inputs = [jsonl(tmp_path)]
    want = expected_ops(tmp_path, inputs, config)
    # ops: row, event, event, envelope x3, row -> batches [0,1] [2,3] [4,5] [6]: batch 2 splits the envelope
    real_send, calls = Delivery.send, []

    def send(self, ops):
        calls.append(len(ops))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_send(self, ops)

    monkeypatch.setattr(Delivery, "send", send)
    assert live(inputs, config, tmp_path) == 130
    assert "interrupted" in capsys.readouterr().err
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (checkpoint["line"], checkpoint["ops"]) == (3, 1)  # 3 records done, 1 op of the envelope
    monkeypatch.setattr(Delivery, "send", real_send)
    assert live(inputs, config, tmp_path) == 0
    assert cio.accepted == want


def test_bad_credentials_stop_with_a_config_error(tmp_path, cio, capsys):
    config = live_config(tmp_path, cio, api_key="wrong")
    assert live([jsonl(tmp_path)], config, tmp_path) == 2
    assert "refused the credentials" in capsys.readouterr().err
    assert cio.accepted == []


def test_a_checkpoint_of_other_inputs_is_refused(tmp_path, cio, capsys):
    config = live_config(tmp_path, cio)
    assert live([jsonl(tmp_path)], config, tmp_path) == 0
    assert live([jsonl(tmp_path, "other.jsonl")], config, tmp_path) == 2
    assert "written for other inputs" in capsys.readouterr().err


def test_progress_bar_reads_no_totals_when_disabled():
    def total():
        raise AssertionError("the inputs were counted for a bar nobody sees")

    with progress_bar(total, enabled=False) as advance:
        advance(1)
    with progress_bar(total, enabled=True) as advance:  # stderr is not a terminal under pytest
        advance(1)


class FlakySink:
    """Accepts operations until `budget` of them were handled, then fails partway through a send."""

    def __init__(self, budget: int) -> None:
        self.budget, self.sent, self.quarantined = budget, [], []

    def send(self, ops):
        room = max(0, self.budget - len(self.sent))
        self.sent.extend(ops[:room])
        if room < len(ops):
            raise SendFailed("down", ops[room:], SendReport())

    def quarantine(self, records):
        self.quarantined.extend(records)


@settings(max_examples=examples(40), deadline=None)
@given(budget=st.integers(0, 12), batch_size=st.integers(1, 4), every=st.integers(1, 5))
def test_any_interruption_then_resume_sends_every_operation_once_in_order(budget, batch_size, every):
    config = parse_config({**tomllib.loads(CONTRACT), "customerio": {"batch_size": batch_size}})
    with tempfile.TemporaryDirectory() as tmp:
        inputs = [jsonl(Path(tmp)), write(Path(tmp), "rows.csv", CSV)]
        whole = FlakySink(10**6)
        Backfill(config, inputs, whole, at=0.0).run()
        checkpoint = Checkpoint(Path(tmp) / "c.json", inputs)
        first, second = FlakySink(budget), FlakySink(10**6)
        try:
            Backfill(config, inputs, first, at=0.0, checkpoint=checkpoint, every=every).run()
        except SendFailed:
            pass
        start, _ = checkpoint.load()
        Backfill(config, inputs, second, at=0.0, checkpoint=checkpoint, every=every).run(start)
        assert first.sent + second.sent == whole.sent
        assert first.quarantined + second.quarantined == whole.quarantined
        assert checkpoint.complete(checkpoint.load()[0])


def test_checkpoint_positions_order_and_completion(tmp_path):
    checkpoint = Checkpoint(tmp_path / "c.json", ["a.jsonl"])
    assert checkpoint.load() is None
    checkpoint.save(Position(0, 5, 2), 1_800_000_000.0)
    assert checkpoint.load() == (Position(0, 5, 2), 1_800_000_000.0)
    assert not checkpoint.complete(Position(0, 10**9)) and checkpoint.complete(Position(1, 1))
    (tmp_path / "c.json").write_text("{")
    with pytest.raises(ConfigError, match="not a readable backfill checkpoint"):
        checkpoint.load()


def interrupt_live(tmp_path: Path, cio, config: str, inputs: list[str], signals: list[int]) -> tuple[int, bytes]:
    """Run a live backfill in a subprocess; once its second batch is on its way, send `signals` (0.3 s apart)."""
    command = [sys.executable, "-m", "groupspec.plugin.cli", "backfill", *inputs, "--config", config,
               "--checkpoint", str(tmp_path / "checkpoint.json"), "--at", "2026-11-28T00:00:00Z"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while len(cio.accepted) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        for signum in signals:
            time.sleep(0.3)  # the second request is on its way (and two signals are not merged into one)
            process.send_signal(signum)
        _, err = process.communicate(timeout=20)
    finally:
        process.kill()
    return process.returncode, err


def test_sigterm_stops_like_ctrl_c_once_the_batch_in_flight_is_checkpointed(tmp_path, cio):
    config = live_config(tmp_path, cio)
    inputs = [jsonl(tmp_path)]
    want = expected_ops(tmp_path, inputs, config)
    cio.script(200, count=1)
    cio.script(200, hang=1.5)  # the second batch is answered late: the SIGTERM arrives while it is in flight
    returncode, err = interrupt_live(tmp_path, cio, config, inputs, [signal.SIGTERM])
    assert returncode == 130, err
    assert b"stopping once the batch in flight is delivered" in err and b"interrupted" in err
    assert cio.accepted == want[:4]  # the batch in flight went through ...
    checkpoint = json.loads((tmp_path / "checkpoint.json").read_text())
    assert (checkpoint["line"], checkpoint["ops"]) == (3, 1)  # ... and the checkpoint says so (1 op of record 4)
    assert live(inputs, config, tmp_path) == 0
    assert cio.accepted == want


def test_a_second_interrupt_stops_at_once_without_waiting_for_the_batch_in_flight(tmp_path, cio):
    config = live_config(tmp_path, cio)
    inputs = [jsonl(tmp_path)]
    want = expected_ops(tmp_path, inputs, config)
    cio.script(200, count=1)
    cio.script(503, hang=30)  # the second batch hangs until the process is told twice to stop
    started = time.monotonic()
    returncode, err = interrupt_live(tmp_path, cio, config, inputs, [signal.SIGTERM, signal.SIGINT])
    assert time.monotonic() - started < 15
    assert returncode == 130, err
    assert b"interrupted" in err
    assert json.loads((tmp_path / "checkpoint.json").read_text())["line"] == 2  # only what was answered
    assert live(inputs, config, tmp_path) == 0
    assert cio.accepted == want


def test_an_interrupt_during_a_send_stops_after_that_batch_is_checkpointed(tmp_path):
    config = parse_config({**tomllib.loads(CONTRACT), "customerio": {"batch_size": 2}})
    inputs = [jsonl(tmp_path)]
    interrupts = Interrupts()  # not installed: the sink calls its handler as a SIGINT would
    whole = FlakySink(10**6)
    Backfill(config, inputs, whole, at=0.0).run()

    class InterruptedSink(FlakySink):
        def send(self, ops):
            if len(self.sent) == 2:  # the second batch: Ctrl-C arrives while it is in flight
                interrupts.signal(signal.SIGINT, None)
            super().send(ops)

    checkpoint = Checkpoint(tmp_path / "c.json", inputs)
    first = InterruptedSink(10**6)
    with pytest.raises(KeyboardInterrupt):
        Backfill(config, inputs, first, at=0.0, checkpoint=checkpoint, every=1000, interrupts=interrupts).run()
    assert len(first.sent) == 4  # the batch in flight was sent, and no other after it
    assert not checkpoint.complete(checkpoint.load()[0])
    with pytest.raises(KeyboardInterrupt):  # a second one while a batch is in flight stops at once
        with interrupts.sending():
            interrupts.signal(signal.SIGINT, None)
    second = FlakySink(10**6)
    Backfill(config, inputs, second, at=0.0, checkpoint=checkpoint).run(checkpoint.load()[0])
    assert first.sent + second.sent == whole.sent  # the checkpoint covered the batch in flight: none sent twice


def test_the_checkpoint_is_saved_every_n_records_not_only_at_the_end(tmp_path):
    config = parse_config({**tomllib.loads(CONTRACT), "customerio": {"batch_size": 100}})
    inputs = [jsonl(tmp_path), write(tmp_path, "rows.csv", CSV)]
    saved: list[Position] = []

    class Recording(Checkpoint):
        def save(self, position, at):
            saved.append(position)
            super().save(position, at)

    Backfill(config, inputs, FlakySink(10**6), at=0.0, checkpoint=Recording(tmp_path / "c.json", inputs), every=2).run()
    assert len(saved) >= 6  # 13 records: at least one save per 2, though a batch of 100 never filled
    assert saved == sorted(saved) and saved[-1] == Position(2, 1)
    assert Position(0, 2) in saved  # the first save came after the first two records, not at the end


def test_a_backfilled_stream_sends_what_replay_writes_rollups_included(tmp_path):
    fixture = Path(__file__).resolve().parent.parent / "fixtures" / "household-suppression"
    assert dry_run([str(fixture / "stream.jsonl")], str(fixture / "groupspec.toml"), tmp_path) == 0
    assert (tmp_path / "customerio.jsonl").read_text() == (fixture / "expected" / "customerio.jsonl").read_text()


@pytest.mark.long  # issue 20: 16 backfill processes, over ~10 s alone (the in-process interruptions above stay)
def test_ctrl_c_while_batches_are_in_flight_never_sends_an_operation_twice(tmp_path, cio):
    """Issue 9 item 13: SIGINT at many moments of a live backfill, each run resumed to completion; every
    operation reaches Customer.io exactly once (each row's object op is distinct: its own group and person)."""
    config = live_config(tmp_path, cio, batch_size=25)
    rows = 1000
    inputs = [write(tmp_path, "many.csv", "user_id,group_id,seats\n" + "".join(
        f"user_{i},hh_{i},{i}\n" for i in range(rows)))]
    want = sorted(json.dumps(op, sort_keys=True) for op in expected_ops(tmp_path, inputs, config))
    assert len(set(want)) == rows
    interrupted = 0
    for attempt, delay in enumerate([0.0, 0.01, 0.025, 0.04, 0.06, 0.1, 0.15, 0.25]):
        cio.reset()
        cio.script(200, count=10**6, hang=0.02)  # each batch answers late: an interrupt lands while one is in flight
        checkpoint = tmp_path / f"checkpoint-{attempt}.json"
        command = [sys.executable, "-m", "groupspec.plugin.cli", "backfill", *inputs, "--config", config,
                   "--checkpoint", str(checkpoint), "--at", "2026-11-28T00:00:00Z", "--quiet"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while not cio.requests and process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.002)
            time.sleep(delay)
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=20)
        finally:
            process.kill()
        assert process.returncode in (0, 130), err
        interrupted += process.returncode == 130
        time.sleep(0.05)  # a batch the interrupted run left behind is answered (and counted) after its hang
        first = cio.accepted
        cio.reset()  # the rerun is answered at once
        rerun = subprocess.run(command, capture_output=True, timeout=30)
        assert rerun.returncode == 0, rerun.stderr
        accepted = sorted(json.dumps(op, sort_keys=True) for op in first + cio.accepted)
        duplicates = len(accepted) - len(set(accepted))
        assert duplicates == 0, f"interrupt after {delay}s: {duplicates} operations sent twice"
        assert accepted == want
    assert interrupted >= 6  # the interrupts did land in the middle of the runs


def test_a_dry_run_changes_no_store(tmp_path, config, capsys):
    """Issue 18, one store rule: a backfill (whose job is to change the production store) uses [store]; a dry
    run sends nothing and teaches the store nothing either (memory:// unless --store names one)."""
    service_db = tmp_path / "service.db"
    Path(config).write_text(Path(config).read_text() + f'[store]\nurl = "sqlite:///{service_db}"\n')
    assert dry_run([write(tmp_path, "accounts.csv", CSV)], config, tmp_path / "out") == 0
    assert not service_db.exists()


def test_a_user_deleted_in_a_live_backfill_erases_the_persons_quarantine_records(tmp_path, cio, capsys):
    """Issue 23: `User Deleted` (the default `[privacy] erase_on`) met by a backfill rewrites the configured files
    as the service does: none of the person's records stays in the quarantine, another person's do."""
    config = live_config(tmp_path, cio)
    def track(user: str, n: int, event: str, **extra) -> dict:
        return {"type": "track", "userId": user, "anonymousId": f"anon-{user}", "event": event,
                "messageId": f"{user}-{n}", "timestamp": f"2026-11-0{n}T10:00:00Z", **extra}
    stream = [track("zelda", 1, "Order Placed", context={"groupId": "NOT AN ID"}),  # quarantined: invalid_group_id
              track("yorick", 2, "Order Placed", context={"groupId": "NOT AN ID"}),
              track("zelda", 3, "User Deleted", properties={})]
    path = write(tmp_path, "deleted.jsonl", "".join(json.dumps(m) + "\n" for m in stream))
    assert live([path], config, tmp_path) == 0
    kept = (tmp_path / "quarantine.jsonl").read_text()
    assert "zelda" not in kept and "yorick" in kept
    assert [op["action"] for op in cio.accepted if op.get("identifiers") == {"id": "zelda"}] == ["delete"]
