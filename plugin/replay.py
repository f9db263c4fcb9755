"""Offline replay: recorded JSONL streams in, forwarded messages, Customer.io operations, quarantine records
and a summary out. No network; deterministic (times come from the stream, not the wall clock)."""

from __future__ import annotations

import difflib
import gzip
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

import orjson
from groupspec.middleware import Config, Pipeline, open_store
from groupspec.middleware.quarantine import record

from .customerio.mapping import to_customerio
from .customerio.rollups import RollupUpdates

CHUNK = 1000
OUTPUTS = ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json")
RESOLUTIONS = ("explicit", "property", "membership", "unresolved")


def read_lines(path: str | Path) -> Iterator[bytes]:
    """The non-blank lines of a `.jsonl` or `.jsonl.gz` file, streamed."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as stream:
        for line in stream:
            if line.strip():
                yield line.rstrip(b"\r\n")


def quarantine_payloads(path: str | Path) -> Iterator[tuple[Any, str | None]]:
    """(payload, source) of each record of a quarantine file, to run them through the current contract."""
    for line in read_lines(path):
        try:
            rec = orjson.loads(line)
            yield rec["message"], rec.get("source")
        except (orjson.JSONDecodeError, KeyError, TypeError):
            yield line, None


class StreamClock:
    """Replay's notion of 'now': the time of the latest message seen, so outputs do not depend on the wall."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Replay:
    """Runs payloads through the chain and writes the four outputs into `out`."""

    def __init__(self, config: Config, out: str | Path, source: str | None = None, store_url: str | None = None) -> None:
        self.config = config
        self.source = source
        self.clock = StreamClock()
        self.store = open_store(store_url or config.store_url("memory://"))
        self.rollups = RollupUpdates(self.store)
        self.pipeline = Pipeline(config, self.store, extra=[to_customerio, self.rollups], clock=self.clock)
        self.out = Path(out)
        self.counts: Counter[str] = Counter()
        self.violations: Counter[str] = Counter()
        self.resolution: Counter[str] = Counter({name: 0 for name in RESOLUTIONS})

    def run(self, payloads: Iterable[tuple[Any, str | None]]) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        files = {name: (self.out / name).open("wb") for name in OUTPUTS[:3]}
        payloads = iter(payloads)
        try:
            while chunk := list(islice(payloads, CHUNK)):
                with self.store.transaction():  # one store commit per chunk of lines
                    for payload, source in chunk:
                        for msg in self.pipeline.run(payload, source or self.source):
                            self._write(msg, files)
            with self.store.transaction():
                for op in self.rollups.flush(self.config.contract):  # the rollup updates still pending at the end
                    files["customerio.jsonl"].write(orjson.dumps(op) + b"\n")
        finally:
            for f in files.values():
                f.close()
            self.store.close()
        summary = self.summary()
        (self.out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        return summary

    def _write(self, msg, files: dict[str, BinaryIO]) -> None:
        self.counts["received"] += 1
        self.clock.now = max(self.clock.now, msg.ts)
        for v in msg.violations:
            self.violations[v["code"]] += 1
        if msg.quarantined:
            msg.received_at = self.clock.now  # stream time, this message's own time included
            self.counts["quarantined"] += 1
            files["quarantine.jsonl"].write(orjson.dumps(record(msg)) + b"\n")
            return
        self.counts["forwarded"] += 1
        self.resolution[msg.resolution] += 1
        files["forwarded.jsonl"].write(orjson.dumps(msg.body) + b"\n")
        write_op = files["customerio.jsonl"].write
        for op in msg.ops:
            write_op(orjson.dumps(op) + b"\n")

    def summary(self) -> dict[str, Any]:
        return {
            "received": self.counts["received"],
            "forwarded": self.counts["forwarded"],
            "quarantined": self.counts["quarantined"],
            "violations": dict(sorted(self.violations.items())),
            "resolution": dict(self.resolution),
        }


def compare(out: str | Path, expected: str | Path, context: int = 2, limit: int = 60) -> list[str]:
    """Differences between two replay output folders, as unified-diff lines (empty when equal)."""
    lines: list[str] = []
    for name in OUTPUTS:
        got_path, want_path = Path(out) / name, Path(expected) / name
        want = want_path.read_text().splitlines() if want_path.exists() else None
        got = got_path.read_text().splitlines()
        if want is None:
            lines.append(f"missing expected file {want_path}")
            continue
        if got != want:
            diff = list(difflib.unified_diff(want, got, str(want_path), str(got_path), n=context, lineterm=""))
            lines.extend(diff[:limit])
            if len(diff) > limit:
                lines.append(f"... {len(diff) - limit} more diff lines in {name}")
    return lines
