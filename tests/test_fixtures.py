"""The bundled fixtures are product: each replays to exactly its stored expected outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from groupspec.middleware.stores.redis import RedisStore
from groupspec.plugin import replay as replaying
from groupspec.plugin.cli import main
from redis_support import REDIS_URL, RedisSandbox, needs_redis

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
STREAMS = sorted(p.parent for p in FIXTURES.glob("*/stream.jsonl"))


def replay(folder: Path, out: Path, *extra: str) -> int:
    """Replay a fixture against its expected outputs (with its `migrations.csv`, when it has one)."""
    migrations = ["--migrations", str(folder / "migrations.csv")] if (folder / "migrations.csv").exists() else []
    return main(["replay", str(folder / "stream.jsonl"), "--config", str(folder / "groupspec.toml"),
                 "--out", str(out), "--expect", str(folder / "expected"), *migrations, *extra])


@pytest.mark.parametrize("folder", STREAMS, ids=[p.name for p in STREAMS])
def test_fixture_replays_to_its_expected_outputs(folder, tmp_path, capsys):
    assert replay(folder, tmp_path) == 0, capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["received"] == summary["forwarded"] + summary["quarantined"]


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=needs_redis)])
def persistent_store(request, tmp_path, monkeypatch):
    """A `--store` url of an empty persistent store (Redis: the replay's keys under a unique prefix)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'groupspec.db'}"
        return
    sandbox = RedisSandbox()
    monkeypatch.setattr(replaying, "open_store", lambda url: RedisStore(url, prefix=sandbox.prefix))
    yield REDIS_URL
    sandbox.clean()


@pytest.mark.parametrize("folder", STREAMS, ids=[p.name for p in STREAMS])
def test_replaying_twice_on_a_persistent_store_gives_the_same_outputs(folder, persistent_store, tmp_path, capsys):
    # late facts included: each store remembers the order in which it first saw each message
    for run in ("first", "second"):
        assert replay(folder, tmp_path / run, "--store", persistent_store) == 0, capsys.readouterr().out


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
