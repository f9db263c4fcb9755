"""Offline replay: recorded JSONL streams in, the engine's outcomes out as four files. No network, no wall
clock (the engine runs on stream time), so the outputs repeat exactly."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from groupspec.middleware import Config, Engine, Outcome, open_store
from groupspec.middleware.counts import Counts
from groupspec.middleware.engine import TimedTaskFailed
from groupspec.middleware.errors import ConfigError
from groupspec.middleware.quarantine import Refused

from .customerio.mapping import CUSTOMERIO
from .migrate.plan import admit, plan, record
from .migrate.rows import Row, check

CHUNK = 1000
OUTPUTS = ("forwarded.jsonl", "customerio.jsonl", "quarantine.jsonl", "summary.json")


class Replay:
    """Feeds payloads to the engine, a chunk (one store transaction) at a time, and writes the four outputs
    into `out`. The store is `store_url`, memory:// without one (never `[store]` by itself). `keep_sources`:
    `forwarded_sources` lists the source of each forwarded line (to deliver them upstream under its key).
    `migrations` (rows of a migration map) are applied when the stream reaches each one's `at`."""

    def __init__(self, config: Config, out: str | Path, source: str | None = None, store_url: str | None = None,
                 keep_sources: bool = False, migrations: list[Row] = ()) -> None:
        self.source = source
        self.forwarded_sources: list[str | None] = []
        self._keep_sources = keep_sources
        self.engine = Engine(config, open_store(config.store_url("offline", store_url)), destination=CUSTOMERIO,
                             clock=None)
        self.out = Path(out)
        self.counts = Counts()
        for row in migrations:
            if row.at is None:
                raise ConfigError(f"{row.where}: no at: a replay applies each row at its own time "
                                  f"(add an ISO-8601 at column)")
            self.engine.at(row.at, lambda row=row: self._migrate(row))

    def _migrate(self, row: Row) -> list[dict[str, Any]]:
        """A migration map's row, checked against the store as the stream has built it, recorded, its operations."""
        store, config = self.engine.store, self.engine.config
        todo, done = check([row], store, config, None)
        migration = todo[0][1] if todo else next(m for m in store.map.rows if m[:2] == (row.object_type_id, row.old_id))
        migration = admit(store, migration)
        plans = plan(store, config, [(row.where, migration)], migration.at, before=migration.arrived)
        record(store, [migration])
        return plans[0].ops

    def run(self, payloads: Iterable[tuple[Any, str | None] | Refused]) -> dict[str, Any]:
        """Run `(payload, source)` pairs (a recorded stream) or quarantine records (`Refused`: with what their
        door supplied) and write the outputs; the summary."""
        self.out.mkdir(parents=True, exist_ok=True)
        forwarded, operations, quarantine = ((self.out / name).open("wb") for name in OUTPUTS[:3])
        payloads = iter(payloads)
        try:
            while chunk := list(islice(payloads, CHUNK)):
                with self.engine.transaction():
                    self.engine.prefetch((item[0], item[1] or self.source) for item in chunk)
                    outcome = Outcome(counts=self.counts)
                    for item in chunk:
                        if len(item) == 2:  # a recorded stream's (payload, source): nothing more from its door
                            self.engine.process(item[0], item[1] or self.source, receipt=False, into=outcome)
                            continue
                        payload, source, kind, received_at, receipt = Refused(*item)
                        self.engine.process(payload, source or self.source, kind=kind, received_at=received_at,
                                            receipt=receipt, into=outcome)
                self._write(outcome, forwarded, operations, quarantine)
                if self._keep_sources:
                    self.forwarded_sources += outcome.forwarded_sources
                self.engine.compact()  # with [store] retention, at stream time: outputs still repeat exactly
            with self.engine.transaction():
                self._write(self.engine.flush(), forwarded, operations, quarantine)
        except TimedTaskFailed as exc:  # a migration row the store refuses: the row's own error (exit 2)
            raise exc.__cause__ from None
        finally:
            for f in (forwarded, operations, quarantine):
                f.close()
            self.engine.store.close()
        summary = self.counts.summary()
        (self.out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
        return summary

    @staticmethod
    def _write(outcome: Outcome, forwarded: Any, operations: Any, quarantine: Any) -> None:
        if outcome.forwarded_lines:
            forwarded.write(b"\n".join(outcome.forwarded_lines) + b"\n")
        if outcome.op_lines:
            operations.write(b"\n".join(outcome.op_lines) + b"\n")
        for rec in outcome.quarantined:
            quarantine.write(orjson.dumps(rec) + b"\n")


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
