"""`groupspec quarantine list|show` over the quarantine and the dead letter; `quarantine replay --deliver`."""

from __future__ import annotations

import orjson
import pytest
from groupspec.middleware.message import Message
from groupspec.middleware.quarantine import QuarantineFile
from groupspec.plugin.cli import main
from groupspec.plugin.sender import DeadLetterFile
from service_harness import write_config


def quarantined(original: dict | str, code: str, source: str | None = "web") -> Message:
    msg = Message(original, dict(original) if isinstance(original, dict) else None, source, 1_790_000_000.0)
    return msg.drop(code, "groupId", f"{code} for the test")


@pytest.fixture
def files(tmp_path, cio):
    config = write_config(tmp_path, cio)
    q = QuarantineFile(tmp_path / "quarantine.jsonl")
    q.add(quarantined({"type": "track", "userId": "u1", "event": "Order Placed", "messageId": "q1",
                       "properties": {"group_id": "acct_9"}, "timestamp": "2026-11-01T10:00:00Z"}, "invalid_group_id"))
    q.add(quarantined("not json at all", "malformed", None))
    DeadLetterFile(tmp_path / "dead-letter.jsonl").add(
        {"type": "person", "action": "event", "identifiers": {"id": "u9"}, "name": "X"},
        {"status": 207, "reason": "invalid", "field": "identifiers", "message": "bad"})
    return config


def test_list_prints_one_line_per_record(files, capsys):
    assert main(["quarantine", "list", "--config", str(files)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    index, when, source, codes = lines[0].split("\t")
    assert (index, when, source, codes) == ("1", "2026-09-21T14:13:20.000Z", "web", "invalid_group_id")
    assert lines[1].split("\t")[2:] == ["-", "malformed"]


def test_list_takes_a_file_too(files, capsys):
    assert main(["quarantine", "list", str(files.parent / "quarantine.jsonl")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_show_prints_the_whole_record(files, capsys):
    assert main(["quarantine", "show", "1", "--config", str(files)]) == 0
    record = orjson.loads(capsys.readouterr().out)
    assert record["message"]["messageId"] == "q1"
    assert record["violations"][0]["code"] == "invalid_group_id"
    assert main(["quarantine", "show", "3", "--config", str(files)]) == 2
    assert "no record 3 (it holds 2)" in capsys.readouterr().err


def test_dead_letter_list_and_show(files, capsys):
    assert main(["quarantine", "list", "--dead-letter", "--config", str(files)]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.split("\t")[2:] == ["person/event", "invalid (HTTP 207)"]
    assert main(["quarantine", "show", "1", "--dead-letter", "--config", str(files)]) == 0
    assert orjson.loads(capsys.readouterr().out)["operation"]["identifiers"] == {"id": "u9"}


def test_missing_file_is_a_usage_error(tmp_path, capsys):
    assert main(["quarantine", "list", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such quarantine file" in capsys.readouterr().err
    assert main(["quarantine", "list"]) == 2


def test_replay_deliver_reruns_records_through_the_fixed_contract_and_delivers(files, cio, tmp_path, capsys):
    fixed = files.read_text().replace('group_id_pattern = "^hh_[a-z0-9]+$"', 'group_id_pattern = "^(hh|acct)_[a-z0-9]+$"')
    files.write_text(fixed)
    out = tmp_path / "replayed"
    code = main(["quarantine", "replay", str(tmp_path / "quarantine.jsonl"), "--config", str(files),
                 "--out", str(out), "--deliver"])
    assert code == 0
    summary, delivered = (orjson.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (summary["forwarded"], summary["quarantined"]) == (1, 1)  # the non-JSON line stays quarantined
    assert delivered["delivered"] == 1
    (op,) = cio.accepted
    assert op["attributes"]["group_id"] == "acct_9"
    assert (tmp_path / "store.db").exists()  # resolved against the service's store, not memory://


def test_replay_deliver_stops_with_exit_1_when_customerio_keeps_failing(files, cio, tmp_path, capsys):
    files.write_text(files.read_text().replace('group_id_pattern = "^hh_[a-z0-9]+$"', ""))
    cio.script(503, count=100)
    code = main(["quarantine", "replay", str(tmp_path / "quarantine.jsonl"), "--config", str(files),
                 "--out", str(tmp_path / "out"), "--deliver"])
    assert code == 1
    assert "delivery stopped" in capsys.readouterr().err


def test_list_with_no_file_yet_lists_nothing(tmp_path, capsys):
    """Issue 18: nothing quarantined yet is an empty list (exit 0), not a config error."""
    config = write_config(tmp_path)
    assert main(["quarantine", "list", "--config", str(config)]) == 0
    assert capsys.readouterr().out == ""
    assert main(["quarantine", "list", "--dead-letter", "--config", str(config)]) == 0
    assert capsys.readouterr().out == ""


def test_config_paths_are_relative_to_the_working_directory(tmp_path, monkeypatch, capsys):
    """The documented rule: a relative path in the config (here [quarantine] path) is read from the directory
    the command runs in, not from the config file's."""
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "groupspec.toml"
    config.write_text('[quarantine]\npath = "q.jsonl"\n')
    QuarantineFile(tmp_path / "q.jsonl").add(quarantined({"type": "track", "userId": "u", "event": "E"}, "malformed"))
    monkeypatch.chdir(tmp_path)
    assert main(["quarantine", "list", "--config", "conf/groupspec.toml"]) == 0
    assert capsys.readouterr().out.split("\t")[0] == "1"
