"""The bundled fixtures are product: each replays to exactly its stored expected outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from groupspec.plugin.cli import main

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STREAMS = sorted(p.parent for p in FIXTURES.glob("*/stream.jsonl"))
#: fixtures none of whose facts (group calls) arrive after an event they predate: replaying them again
#: against a store that already holds them must give byte-identical outputs
IN_ORDER = ["households", "wholesale", "cancellation-late-events", "bad-input"]


def replay(folder: Path, out: Path, *extra: str) -> int:
    return main(["replay", str(folder / "stream.jsonl"), "--config", str(folder / "groupspec.toml"),
                 "--out", str(out), "--expect", str(folder / "expected"), *extra])


@pytest.mark.parametrize("folder", STREAMS, ids=[p.name for p in STREAMS])
def test_fixture_replays_to_its_expected_outputs(folder, tmp_path, capsys):
    assert replay(folder, tmp_path) == 0, capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["received"] == summary["forwarded"] + summary["quarantined"]


@pytest.mark.parametrize("name", IN_ORDER)
def test_replaying_twice_on_a_persistent_store_gives_the_same_outputs(name, tmp_path, capsys):
    store = f"sqlite:///{tmp_path / 'groupspec.db'}"
    for run in ("first", "second"):
        assert replay(FIXTURES / name, tmp_path / run, "--store", store) == 0, capsys.readouterr().out


def test_every_fixture_is_listed_in_the_fixtures_readme():
    readme = (FIXTURES / "README.md").read_text()
    assert all(f"`{folder.name}/`" in readme for folder in STREAMS)


def test_household_shopper_who_did_not_order_still_carries_the_household(tmp_path):
    assert replay(FIXTURES / "households", tmp_path) == 0
    ops = [json.loads(line) for line in (tmp_path / "customerio.jsonl").read_text().splitlines()]
    jordan = [op for op in ops if op.get("identifiers") == {"id": "user_1043"} and op["action"] == "event"]
    assert jordan and all(op["attributes"]["group_id"] == "hh_8f3k2" for op in jordan)
    household = [op for op in ops if op["type"] == "object" and "last_order_at" in op["attributes"]]
    assert household[0]["cio_relationships"][0]["identifiers"] == {"id": "user_1042"}
