"""A streaming door keeps few objects alive: no `Message` outlives its chunk's outcome, and groupspec's own
processes (replay, backfill, the service's delivery process) set the garbage collector for streaming
(`plugin/collector.py`), and put it back as it was."""

from __future__ import annotations

import gc
import weakref

import orjson
from core_support import Chain, group, track, unix
from groupspec.plugin import replay as replay_module
from groupspec.plugin.cli import main
from groupspec.plugin.collector import YOUNG, streaming


def test_an_outcome_keeps_no_message_alive():
    chain = Chain('[contract]\nversion = "s"\n')
    engine = chain.pipeline
    seen = []
    through = engine.through
    engine.through = lambda msg, received=False: (seen.append(weakref.ref(msg)), through(msg, received))[1]
    out = engine.process(orjson.dumps({"batch": [group("u1", "hh_1", name="One"), track("u1", days=1, messageId="m2"),
                                                 {"type": "nonsense"}]}))
    assert len(out.forwarded) == 2 and len(out.quarantined) == 1 and len(seen) == 3
    assert [ref() for ref in seen] == [None, None, None]  # freed by reference counting, while the outcome lives
    assert out.op_times == [unix(0), unix(1)]  # each operation with its message's event time (freshness.py)


def test_streaming_raises_the_young_threshold_and_restores_it():
    before = gc.get_threshold()
    with streaming():
        assert gc.get_threshold()[0] == YOUNG
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_replay_runs_with_the_collector_set_for_streaming(tmp_path, monkeypatch):
    (tmp_path / "in.jsonl").write_bytes(orjson.dumps(track("u1", days=1)) + b"\n")
    (tmp_path / "c.toml").write_text('[contract]\nversion = "s"\n')
    during = []
    run = replay_module.Replay.run
    monkeypatch.setattr(replay_module.Replay, "run", lambda self, payloads: (during.append(gc.get_threshold()),
                                                                              run(self, payloads))[1])
    before = gc.get_threshold()
    assert main(["replay", str(tmp_path / "in.jsonl"), "--config", str(tmp_path / "c.toml"),
                 "--out", str(tmp_path / "out")]) == 0
    assert during[0][0] == YOUNG and gc.get_threshold() == before
